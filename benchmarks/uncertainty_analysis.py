"""The uncertainty benchmark's analysis of predictions (pure numpy): errors, the committee's
mean and deviation, recalibration maps applied as the model applies them, summaries."""

from __future__ import annotations

import statistics

import numpy as np

from workers.model.calibration import fit_calibration


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
    out["forces_std"] = [cal.forces(f) for f in raw["forces_std"]]
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
