"""Recalibration of the model's error bars on labelled structures it did not train on.

Split-conformal scaling (Vovk et al. 2005; Angelopoulos & Bates 2021), per quantity:
``scale`` makes the raw std ``s`` an error bar ``scale * s`` that covers 68.27% of the
calibration errors (a Gaussian's one sigma), and ``k95`` is how many of those error bars
cover 95% (1.96 for a Gaussian; larger for the heavier tails real errors have). Energies
are judged per structure (|E error| vs ``energy_std``), forces per Cartesian component
(|F_ic error| vs ``forces_std_i``). Pure numpy; no torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

ONE_SIGMA = 0.6827  # the coverage of a Gaussian's +-1 sigma
NINETY_FIVE = 0.95


@dataclass(frozen=True)
class Calibration:
    """Scales for the raw stds: calibrated std = ``scale * raw``; 95% interval = +-``k95 * std``."""

    energy_scale: float = 1.0
    energy_k95: float = 1.96
    forces_scale: float = 1.0
    forces_k95: float = 1.96
    n_structures: int = 0  # structures it was fitted on (0: identity, never fitted)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> Calibration:
        return cls(**d) if d else cls()


def conformal_quantile(ratios: np.ndarray, level: float) -> float:
    """The split-conformal ``level`` quantile of ``|error| / std`` ratios ``[n]``: the
    ``ceil((n + 1) level)``-th smallest (the largest when that passes n)."""
    r = np.sort(np.asarray(ratios, dtype=float)[np.isfinite(ratios)])
    if r.size == 0:
        raise ValueError("conformal_quantile needs at least one finite ratio")
    k = min(math.ceil((r.size + 1) * level), r.size)
    return float(r[k - 1])


def _scales(abs_err: np.ndarray, std: np.ndarray) -> tuple[float, float]:
    ratio = np.abs(abs_err) / np.maximum(std, 1e-12)
    q68 = max(conformal_quantile(ratio, ONE_SIGMA), 1e-6)
    q95 = conformal_quantile(ratio, NINETY_FIVE)
    return q68, max(q95 / q68, 1.0)


def fit_calibration(
    energy_err_ev: np.ndarray, energy_std_ev: np.ndarray, forces_err_ev_a: np.ndarray, forces_std_ev_a: np.ndarray
) -> Calibration:
    """Scales from raw stds and the errors they should bound.

    ``energy_err_ev [n]`` and ``energy_std_ev [n]`` per structure; ``forces_err_ev_a
    [n_atoms_total, 3]`` and ``forces_std_ev_a [n_atoms_total]`` per atom (all structures'
    atoms stacked)."""
    if len(energy_err_ev) < 2:
        raise ValueError(f"calibration needs at least 2 labelled structures, got {len(energy_err_ev)}")
    e_scale, e_k95 = _scales(np.asarray(energy_err_ev), np.asarray(energy_std_ev))
    f_err = np.asarray(forces_err_ev_a).reshape(-1, 3)
    f_std = np.repeat(np.asarray(forces_std_ev_a).reshape(-1, 1), 3, axis=1)
    f_scale, f_k95 = _scales(f_err.reshape(-1), f_std.reshape(-1))
    return Calibration(e_scale, e_k95, f_scale, f_k95, int(len(energy_err_ev)))


def coverage(abs_err: np.ndarray, std: np.ndarray, k: float = 1.0) -> float:
    """Fraction of ``|error| <= k * std`` (elementwise; ``std`` broadcast against ``abs_err``)."""
    abs_err = np.abs(np.asarray(abs_err, dtype=float))
    std = np.broadcast_to(np.asarray(std, dtype=float), abs_err.shape)
    return float(np.mean(abs_err <= k * std))


def gaussian_nll(abs_err: np.ndarray, std: np.ndarray) -> float:
    """Mean Gaussian negative log-likelihood of errors under ``N(0, std^2)`` (nats)."""
    err = np.asarray(abs_err, dtype=float)
    s = np.maximum(np.broadcast_to(np.asarray(std, dtype=float), err.shape), 1e-12)
    return float(np.mean(0.5 * np.log(2 * np.pi * s**2) + 0.5 * (err / s) ** 2))


def miscalibration_area(abs_err: np.ndarray, std: np.ndarray, levels: int = 99) -> float:
    """Area between observed and expected coverage of Gaussian intervals over ``levels``
    confidence levels in (0, 1) (Tan et al. 2023; 0 = perfectly calibrated, 0.5 worst)."""
    from statistics import NormalDist

    err = np.abs(np.asarray(abs_err, dtype=float))
    s = np.maximum(np.broadcast_to(np.asarray(std, dtype=float), err.shape), 1e-12)
    ps = np.linspace(0.01, 0.99, levels)
    z = np.array([NormalDist().inv_cdf(0.5 + p / 2) for p in ps])
    observed = np.array([np.mean(err <= zk * s) for zk in z])
    return float(np.mean(np.abs(observed - ps)))
