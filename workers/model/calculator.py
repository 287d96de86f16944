"""ASE calculator over a catal checkpoint, plus batched evaluation of many structures."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from workers.model.graph import collate
from workers.model.potential import Potential, load_checkpoint
from workers.model.training import DTYPES, resolve_device


def predict(model: Potential, structures: list[Atoms], batch_size: int = 256) -> list[dict]:
    """Model predictions for many structures, ``batch_size`` per model call.

    Each dict has ``energy`` (eV), ``forces`` [n_atoms, 3] (eV/Å), ``embedding`` [F], and
    for the categorical head ``energy_entropy`` (nats), ``energy_std`` (eV: the histogram's
    spread, the model's error bar), ``energy_std_per_atom`` (eV/atom, comparable across
    sizes) and ``energy_excess_entropy`` (nats beyond the HL-Gauss floor).
    """
    param = next(model.parameters())
    results: list[dict] = []
    for start in range(0, len(structures), batch_size):
        chunk = structures[start : start + batch_size]
        batch = collate(chunk).to(param.device, param.dtype)
        out = model(batch, forces=True)
        forces = out["forces"].detach().cpu().double().numpy()
        energy = out["energy"].detach().cpu().numpy()
        bounds = np.concatenate([[0], np.cumsum(batch.n_atoms.cpu().numpy())])
        for k in range(len(chunk)):
            r = {
                "energy": float(energy[k]),
                "forces": forces[bounds[k] : bounds[k + 1]],
                "embedding": out["embedding"][k].cpu().double().numpy(),
            }
            if "entropy" in out:
                r["energy_entropy"] = float(out["entropy"][k])
                r["energy_std"] = float(out["energy_std"][k])
                r["energy_std_per_atom"] = float(out["energy_std_per_atom"][k])
                r["energy_excess_entropy"] = float(out["excess_entropy"][k])
            results.append(r)
    return results


class CatalCalculator(Calculator):
    """ASE calculator: energy/free_energy (eV) and forces (eV/Å) from a catal potential.

    ``results`` also carries ``energy_entropy`` (nats) and ``energy_std`` (eV) for the
    categorical head: the model's own uncertainty about this structure's energy.
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, model: Potential, **kwargs):
        super().__init__(**kwargs)
        self.model = model.eval()

    @classmethod
    def from_checkpoint(cls, path, device: str = "auto", dtype: str = "float64", **kwargs):
        model, _ = load_checkpoint(path, map_location="cpu")
        model = model.to(device=resolve_device(device), dtype=DTYPES[dtype])
        return cls(model, **kwargs)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        r = predict(self.model, [self.atoms])[0]
        self.results = {
            "energy": r["energy"],
            "free_energy": r["energy"],
            "forces": r["forces"],
        }
        for key in ("energy_entropy", "energy_std", "energy_std_per_atom", "energy_excess_entropy"):
            if key in r:
                self.results[key] = r[key]

    def predict_many(self, structures: list[Atoms], batch_size: int = 256) -> list[dict]:
        """Batched evaluation: one model call per ``batch_size`` structures."""
        return predict(self.model, structures, batch_size)
