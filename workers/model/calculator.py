"""ASE calculator over a catal checkpoint, plus batched evaluation of many structures."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from workers.model.calibration import Calibration, fit_calibration
from workers.model.checkpoint import load_checkpoint
from workers.model.device import DTYPES, resolve_device
from workers.model.graph import collate, matrix_to_voigt
from workers.model.potential import Potential

# per structure (floats) and per atom (arrays) uncertainty, named as the model names them
STRUCTURE_KEYS = (
    "energy_std",
    "energy_std_per_atom",
    "forces_std_max",
    "forces_std_atom",
    "energy_entropy",
    "energy_mutual_information",
    "energy_excess_entropy",
    "latent_distance_max",
)
ATOM_KEYS = ("forces_std", "energies_std", "latent_distance")


def predict(
    model: Potential, structures: list[Atoms], batch_size: int = 256, uncertainty: bool = True, bare: bool = False
) -> list[dict]:
    """Model predictions for many structures, ``batch_size`` per model call.

    Each dict has ``energy`` (eV), ``forces`` [n_atoms, 3] (eV/Å), ``embedding`` [F], and
    the uncertainty the model has, calibrated (``Potential.forward``): ``energy_std`` (eV),
    ``energy_std_per_atom`` (eV/atom), ``forces_std`` [n_atoms] and ``forces_std_max``
    (eV/Å; with ``uncertainty``: the posterior's, or the heads' spread before one is fitted)
    with ``forces_std_atom`` (the index of the atom that has it),
    ``energies_std`` [n_atoms] (eV), and for the categorical head ``energy_entropy``, ``energy_mutual_information`` and
    ``energy_excess_entropy`` (nats), ``latent_distance`` [n_atoms] and ``latent_distance_max``
    (training-feature stds: how far from the training atoms); a periodic structure adds ``stress`` (eV/Å^3, ASE's
    Voigt order ``[xx, yy, zz, yz, xz, xy]``). ``bare``: energy, forces, embedding and stress
    alone, no uncertainty of any kind (``Potential.forward``; what MD that reads none needs).
    """
    param = next(model.parameters())
    results: list[dict] = []
    for start in range(0, len(structures), batch_size):
        chunk = structures[start : start + batch_size]
        batch = collate(chunk).to(param.device, param.dtype)
        out = model(batch, forces=True, uncertainty=uncertainty and not bare, stress=True, bare=bare)
        forces = out["forces"].detach().cpu().double().numpy()
        stress = matrix_to_voigt(out["stress"].detach().cpu().double().numpy()) if "stress" in out else None
        energy = out["energy"].detach().cpu().numpy()
        bounds = np.concatenate([[0], np.cumsum(batch.n_atoms.cpu().numpy())])
        per_atom = {key: out[key].detach().cpu().double().numpy() for key in ATOM_KEYS if key in out}
        for k in range(len(chunk)):
            r = {
                "energy": float(energy[k]),
                "forces": forces[bounds[k] : bounds[k + 1]],
                "embedding": out["embedding"][k].cpu().double().numpy(),
            }
            if stress is not None and bool(batch.periodic[k]):
                r["stress"] = stress[k]
            r.update({key: float(out[key][k]) for key in STRUCTURE_KEYS if key in out})
            if "forces_std_atom" in r:  # an atom's index
                r["forces_std_atom"] = int(r["forces_std_atom"])
            r.update({key: v[bounds[k] : bounds[k + 1]] for key, v in per_atom.items()})
            results.append(r)
    return results


def recalibrate(model: Potential, structures: list[Atoms]) -> Calibration:
    """The model's error bars rescaled on labelled ``structures`` it did not train on
    (``workers.model.calibration``): sets and returns ``model.calibration``. With fewer than
    2 structures, or a model without a spread (one head, no fitted posterior), it is left as it is."""
    if len(structures) < 2 or not (model.cfg.heads > 1 or model.posterior_fitted):
        return model.calibration
    kept, model.calibration = model.calibration, Calibration()  # raw stds
    try:
        preds = predict(model, structures)
    finally:
        model.calibration = kept
    e_err = np.array([p["energy"] - a.get_potential_energy() for p, a in zip(preds, structures, strict=True)])
    f_err = np.concatenate([p["forces"] - a.get_forces() for p, a in zip(preds, structures, strict=True)])
    e_std = np.array([p["energy_std"] for p in preds])
    f_std = np.concatenate([p["forces_std"] for p in preds])
    use_distance = model.cfg.error_bar_distance and "latent_distance" in preds[0]
    distance = np.concatenate([p["latent_distance"] for p in preds]) if use_distance else None
    model.calibration = fit_calibration(e_err, e_std, f_err, f_std, latent_distance=distance)
    return model.calibration


class CatalCalculator(Calculator):
    """ASE calculator: energy/free_energy (eV), forces (eV/Å) and, for periodic cells, stress
    (eV/Å^3, Voigt) from a catal potential.

    ``results`` also carries the model's calibrated uncertainty: ``energy_std`` (eV),
    ``forces_std`` [n_atoms] and ``forces_std_max`` (eV/Å), ``energies_std`` [n_atoms] (eV),
    and the histograms' raw ``energy_entropy`` / ``energy_mutual_information`` (nats).
    ``calibration`` (``workers.model.calibration.Calibration``) holds the scales and the
    95% interval's width in stds (``energy_k95``, ``forces_k95``). ``uncertainty=False``: energy,
    forces and stress alone (no error bars), the same numbers at about a fifth of the cost of a
    call with ``forces_std``: for MD and optimisations that read no error bar.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model: Potential, uncertainty: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.model = model.eval()
        self.uncertainty = uncertainty

    @classmethod
    def from_checkpoint(cls, path, device: str = "auto", dtype: str = "float64", **kwargs):
        model, _ = load_checkpoint(path, map_location="cpu")
        model = model.to(device=resolve_device(device), dtype=DTYPES[dtype])
        return cls(model, **kwargs)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        r = predict(self.model, [self.atoms], bare=not self.uncertainty)[0]
        self.results = {
            "energy": r["energy"],
            "free_energy": r["energy"],
            "forces": r["forces"],
        }
        if "stress" in r:
            self.results["stress"] = r["stress"]
        for key in (*STRUCTURE_KEYS, *ATOM_KEYS):
            if key in r:
                self.results[key] = r[key]

    @property
    def calibration(self):
        return self.model.calibration

    def predict_many(self, structures: list[Atoms], batch_size: int = 256) -> list[dict]:
        """Batched evaluation: one model call per ``batch_size`` structures."""
        return predict(self.model, structures, batch_size)
