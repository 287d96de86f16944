"""The uncertainty benchmark's analysis of predictions (pure numpy): errors, the committee's
mean and deviation, recalibration maps applied as the model applies them, summaries."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from workers.model.calibration import fit_calibration

COMMITTEE = 4  # one-head models in the committee


def errors(pred: dict, frames: list) -> dict:
    """Per structure |E error| (eV), force MAE (eV/Å); per atom force errors [n_atoms, 3]."""
    e_err = np.abs(pred["energy"] - np.array([a.get_potential_energy() for a in frames]))
    f_err = [f - a.get_forces() for f, a in zip(pred["forces"], frames, strict=True)]
    return {"energy": e_err, "force_mae": np.array([np.abs(f).mean() for f in f_err]), "forces": f_err}


def committee(members: list[dict], name: str) -> dict:
    """Mean energy/forces of the one-head members; per-atom force std; DP-GEN max_devi_f."""
    sets = [m["sets"][name] for m in members]
    energies = np.stack([s["energy"] for s in sets])
    forces, f_std, devi = [], [], []
    for k in range(energies.shape[1]):
        f = np.stack([s["forces"][k] for s in sets])  # [M, n_atoms, 3]
        mean = f.mean(0)
        forces.append(mean)
        f_std.append(np.sqrt(((f - mean) ** 2).mean(axis=(0, 2))))
        devi.append(float(np.sqrt(((f - mean) ** 2).sum(-1).mean(0)).max()))
    return {"energy": energies.mean(0), "energy_std": energies.std(0), "forces": forces, "forces_std": f_std,
            "max_devi_f": np.array(devi)}  # fmt: skip


def calibrate(pred: dict, frames: list, power_law_fit: bool = True):
    err = errors(pred, frames)
    return fit_calibration(err["energy"], pred["energy_std"], np.concatenate(err["forces"]),
                           np.concatenate(pred["forces_std"]), power_law_fit)  # fmt: skip


def calibrated(raw: dict, cal) -> dict:
    """A model's raw predictions with its error bars mapped by ``cal`` (as the model reports
    them: per-atom energies take their structure's factor, ``Potential.forward``)."""
    out = dict(raw)
    out["energy_std"] = cal.energy(raw["energy_std"])
    distances = raw.get("latent_distance") or [None] * len(raw["forces_std"])
    out["forces_std"] = [cal.forces(f, d) for f, d in zip(raw["forces_std"], distances, strict=True)]
    if "energies_std" in raw:
        out["energies_std"] = [cal.energies(e, s) for e, s in zip(raw["energies_std"], raw["energy_std"], strict=True)]
    return out


def as_error_bars(raw: dict) -> dict:
    """A model's raw predictions with the latent distance (per atom, and its per-structure
    maximum) in place of the posterior's stds, for ``calibrate``/``calibrated`` to map into eV/Å
    and eV by the same power law and conformal scale."""
    out = {k: v for k, v in raw.items() if k != "energies_std"}
    return {**out, "energy_std": raw["latent_distance_max"], "forces_std": raw["latent_distance"]}


def stretched_bond(atoms) -> tuple[int, int]:
    """The stretched pair ``(i, j)`` (extxyz reads the "i,j" string back as an int array)."""
    v = atoms.info["stretched_bond"]
    i, j = (int(x) for x in (v.split(",") if isinstance(v, str) else np.asarray(v).reshape(-1)))
    return i, j


def mean_sd(values: list[float], digits: int = 2, scale: float = 1.0) -> str:
    v = [scale * x for x in values if np.isfinite(x)]
    if not v:
        return "nan"
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{statistics.mean(v):.{digits}f}±{sd:.{digits}f}"


def signals(ens: dict, raw: dict, one: dict, com: dict, variants: dict, posterior: dict) -> dict:
    """Per-structure signals on one set: name -> [n] (calibrated ones as the model gives them;
    ``raw``: the default's predictions before any recalibration; ``variants``: label -> the
    default's posterior with ``VARIANTS``' weight perturbations, calibrated; ``posterior``: the
    default's recalibrated without the latent distance's term)."""
    return {
        "forces_std (default, max atom)": np.array([s.max() for s in ens["forces_std"]]),
        "forces_std, no distance term": np.array([s.max() for s in posterior["forces_std"]]),
        **{
            f"forces_std, {label} (max atom)": np.array([x.max() for x in v["forces_std"]])
            for label, v in variants.items()
        },  # fmt: skip
        "energy_std (default)": ens["energy_std"],
        "forces_std raw (posterior)": np.array([s.max() for s in raw["forces_std"]]),
        "energy_std raw (posterior)": raw["energy_std"],
        "heads' force spread (max atom)": np.array([s.max() for s in ens["forces_std_heads"]]),
        "heads' energy_std": ens["energy_std_heads"],
        "energy_entropy (heads)": ens["energy_entropy"],
        "mutual information (heads)": ens["energy_mutual_information"],
        "latent_distance_max (kNN)": ens["latent_distance_max"],
        "one head: histogram width": one["energy_std_heads"],
        "one head: LLPR forces_std": np.array([s.max() for s in one["forces_std"]]),
        f"committee x{COMMITTEE} max_devi_f": com["max_devi_f"],
        "trivial: mean |F|": np.array([np.abs(f).mean() for f in ens["forces"]]),
    }


def write_arrays(path: Path, per_seed: list[dict], raw: list[tuple[dict, dict]]) -> None:
    """``seed/set/key`` -> the default model's raw per-atom ``forces_std``, ``latent_distance``,
    force errors ``[n_atoms, 3]`` (atoms of all structures stacked), ``n_atoms`` per structure,
    raw ``energy_std``, ``latent_distance_max`` and |energy error|: for analyses after the run."""
    out = {}
    for (job, sets), res in zip(raw, per_seed, strict=True):
        for name, err in res["err"].items():
            pred, key = sets[name], f"{job['seed']}/{name}"
            out[f"{key}/n_atoms"] = np.array([len(f) for f in pred["forces"]])
            out[f"{key}/forces_err"] = np.concatenate(err["heads"]["forces"])
            out[f"{key}/energy_err"] = err["heads"]["energy"]
            for k in ("forces_std", "latent_distance"):
                out[f"{key}/{k}"] = np.concatenate(pred[k])
            for k in ("energy_std", "latent_distance_max"):
                out[f"{key}/{k}"] = pred[k]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **out)
    print(f"arrays: {path}")
