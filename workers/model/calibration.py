"""Recalibration of the model's error bars on labelled structures it did not train on.

Per quantity, the raw std ``s`` becomes the error bar ``scale * s**power``:

* ``power`` (>= 1): how fast errors grow with the raw std, by maximum Gaussian likelihood on
  the calibration errors (a power-law variance model). Kept only when a likelihood-ratio test
  prefers it to 1 (chi^2, 1 dof, p < 0.05, counting structures, not force components); a
  calibration set whose raw stds span a narrow range, or whose errors grow in proportion,
  keeps 1, a plain scale. Monotone: rankings (AUROC, Spearman, picks) never change.
* forces only, where the model measures each atom's latent distance (its features' distance
  from the training atoms', ``workers/model/latent.py``): ``forces_distance_power`` ``c``
  (>= 0), the force error bar ``scale * s**power * d**c``, fitted jointly with ``power`` by likelihood
  (no test: see ``power_law``). The posterior's std says how much the
  last layer's weights are pinned down along an atom's features; the distance, how far those
  features lie from any the model was trained on, which a linear posterior under-weights far out
  (docs/results.md section 1: chosen on the development families). With ``c > 0`` the ranking
  of atoms is by the product, no longer by ``s`` alone.
* ``scale``, split-conformal (Vovk et al. 2005; Angelopoulos & Bates 2021): the error bar
  covers 68.27% of the calibration errors (a Gaussian's one sigma), and ``k95`` is how many
  of those error bars cover 95% (1.96 for a Gaussian; more for heavier tails) in the smaller
  and in the larger half of the error bars alike (Mondrian conformal: the larger of the two
  halves' quantiles), so a few large, heavy-tailed errors on unfamiliar frames do not set
  the interval of the familiar ones, nor the reverse.

Energies are judged per structure (|E error| vs ``energy_std``), forces per Cartesian
component (|F_ic error| vs ``forces_std_i``). Pure numpy; no torch (``Calibration.energy``
and ``.forces`` map numpy arrays and torch tensors alike).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

ONE_SIGMA = 0.6827  # the coverage of a Gaussian's +-1 sigma
NINETY_FIVE = 0.95
POWERS = np.round(np.arange(1.0, 3.0001, 0.05), 2)  # the exponents tried
DISTANCE_POWERS = np.round(np.arange(0.0, 3.0001, 0.05), 2)  # the latent distance's exponents tried
TINY_DISTANCE = 1e-9  # added to a latent distance before its power (an atom on a training atom)
LR_CHI2_95 = 3.841  # chi^2 (1 dof) 95% point: the likelihood ratio a power != 1 must beat


@dataclass(frozen=True)
class Calibration:
    """Maps for the raw stds: calibrated std = ``scale * raw**power``; 95% interval = +-``k95 * std``."""

    energy_scale: float = 1.0  # eV^(1 - energy_power)
    energy_k95: float = 1.96
    forces_scale: float = 1.0  # (eV/Å)^(1 - forces_power)
    forces_k95: float = 1.96
    n_structures: int = 0  # structures it was fitted on (0: identity, never fitted)
    energy_power: float = 1.0  # 1: errors grow in proportion to the raw std
    forces_power: float = 1.0
    forces_distance_power: float = 0.0  # c: force error bars also grow as latent_distance**c (0: no part)

    def energy(self, raw):
        """Calibrated energy std (eV) from raw ``[n]`` (numpy or torch)."""
        return self.energy_scale * (raw if self.energy_power == 1.0 else raw**self.energy_power)

    def energies(self, raw_atoms, raw_structure):
        """Per-atom energy stds (eV): each atom's share of its structure's calibrated std,
        ``energy(raw_structure) / raw_structure * raw_atoms`` (``raw_structure`` broadcast to
        the atoms; no division: ``scale * raw_structure**(power - 1)``)."""
        if self.energy_power == 1.0:
            return self.energy_scale * raw_atoms
        return self.energy_scale * raw_structure ** (self.energy_power - 1.0) * raw_atoms

    def forces(self, raw, distance=None):
        """Calibrated force std (eV/Å) from raw ``[n_atoms]`` and, where ``forces_distance_power``
        is not 0, the atoms' latent distances ``[n_atoms]`` (numpy or torch alike)."""
        out = self.forces_scale * (raw if self.forces_power == 1.0 else raw**self.forces_power)
        if self.forces_distance_power == 0.0:
            return out
        if distance is None:
            raise ValueError("this calibration scales force error bars by the latent distance: the model has none")
        return out * (distance + TINY_DISTANCE) ** self.forces_distance_power

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


def power_law(abs_err: np.ndarray, std: np.ndarray, n_structures: int, distance: np.ndarray | None = None):
    """The exponent ``b`` of ``sigma = a * std**b`` (``a`` profiled out) with the largest
    Gaussian likelihood of ``abs_err``, or 1 unless it beats ``b = 1`` by the likelihood-ratio
    test on ``n_structures`` independent structures (values of one structure correlate).

    With ``distance`` (as ``std``, each value's latent distance): ``(b, c)`` of ``sigma = a *
    std**b * distance**c`` by maximum likelihood, with no test for ``c``: a hold-out holds few
    structures far from the training data, so the likelihood gain of ``c`` on it is small (not
    significant on section 1's 90 calibration structures) while what it buys shows out of
    distribution (docs/results.md section 1's development families); the conformal scale keeps
    the in-distribution coverage whatever ``c`` is, and a spurious ``c`` only widens the error
    bars of atoms far from the training atoms (over-covering, the safe side)."""
    err = np.abs(np.asarray(abs_err, dtype=float)).reshape(-1)
    logs = [np.log(np.maximum(np.asarray(x, dtype=float).reshape(-1), 1e-12)) for x in (std, distance) if x is not None]
    ok = np.isfinite(err) & np.all([np.isfinite(x) for x in logs], axis=0)
    err, logs = err[ok], [x[ok] - x[ok].mean() for x in logs]  # centred: s**b stays in range

    def mean_nll(log_sigma: np.ndarray) -> float:  # per value, a at its optimum
        return 0.5 * math.log(max(float(np.mean(err**2 * np.exp(-2.0 * log_sigma))), 1e-300)) + float(log_sigma.mean())

    cs = DISTANCE_POWERS if distance is not None else DISTANCE_POWERS[:1]  # DISTANCE_POWERS[0] == 0
    grid = np.array([[mean_nll(b * logs[0] + (c * logs[1] if c else 0.0)) for c in cs] for b in POWERS])
    nll = grid[:, 0]  # the distance left out
    best = int(np.argmin(nll))
    b = float(POWERS[best]) if 2.0 * n_structures * (nll[0] - nll[best]) > LR_CHI2_95 else 1.0  # POWERS[0] == 1
    if distance is None:
        return b
    i, j = np.unravel_index(int(np.argmin(grid)), grid.shape)
    if DISTANCE_POWERS[j] > 0:  # no test: a spurious c only widens error bars far from the data
        return float(POWERS[i]), float(DISTANCE_POWERS[j])
    return b, 0.0


K95_GROUPS = 2  # Mondrian groups of the k95: halves by error-bar size


def mondrian_quantile(ratios: np.ndarray, std: np.ndarray, level: float, groups: int = K95_GROUPS) -> float:
    """The largest of the split-conformal ``level`` quantiles of ``ratios [n]`` within
    ``groups`` equal-count groups by ``std [n]``: ``level`` coverage in each group, not just
    on average over them (Vovk et al. 2005, Mondrian conformal prediction)."""
    order = np.argsort(np.asarray(std, dtype=float), kind="stable")
    ratios = np.asarray(ratios, dtype=float)
    parts = [ratios[g] for g in np.array_split(order, groups) if np.isfinite(ratios[g]).any()]
    return max(conformal_quantile(r, level) for r in parts) if parts else conformal_quantile(ratios, level)


def _scales(abs_err: np.ndarray, shape: np.ndarray) -> tuple[float, float]:
    """``(scale, k95)`` for error bars ``scale * shape`` (``shape``: the map's power terms, [n])."""
    shape = np.maximum(shape, 1e-300)
    ratio = np.abs(abs_err) / shape
    q68 = max(conformal_quantile(ratio, ONE_SIGMA), 1e-300)
    q95 = mondrian_quantile(ratio, shape, NINETY_FIVE)
    return q68, max(q95 / q68, 1.0)


def fit_calibration(
    energy_err_ev: np.ndarray,
    energy_std_ev: np.ndarray,
    forces_err_ev_a: np.ndarray,
    forces_std_ev_a: np.ndarray,
    power_law_fit: bool = True,
    latent_distance: np.ndarray | None = None,
) -> Calibration:
    """Maps from raw stds and the errors they should bound.

    ``energy_err_ev [n]`` and ``energy_std_ev [n]`` per structure; ``forces_err_ev_a
    [n_atoms_total, 3]``, ``forces_std_ev_a [n_atoms_total]`` and the atoms' ``latent_distance
    [n_atoms_total]`` (None: the model has none) per atom (all structures' atoms stacked).
    ``power_law_fit=False``: powers stay 1 and the distance plays no part (a plain
    split-conformal scale)."""
    n = len(energy_err_ev)
    if n < 2:
        raise ValueError(f"calibration needs at least 2 labelled structures, got {n}")
    e_err, e_std = np.asarray(energy_err_ev), np.asarray(energy_std_ev)
    e_power = power_law(e_err, e_std, n) if power_law_fit else 1.0
    f_err = np.asarray(forces_err_ev_a).reshape(-1)

    def per_component(x: np.ndarray) -> np.ndarray:  # [n_atoms] -> [3 n_atoms], as f_err
        return np.repeat(np.asarray(x, dtype=float).reshape(-1, 1), 3, axis=1).reshape(-1)

    f_std = per_component(forces_std_ev_a)
    f_dist = None if latent_distance is None else per_component(latent_distance)
    f_power, d_power = 1.0, 0.0
    if power_law_fit:
        fit = power_law(f_err, f_std, n, f_dist)
        f_power, d_power = fit if f_dist is not None else (fit, 0.0)
    shape = Calibration(energy_power=e_power, forces_power=f_power, forces_distance_power=d_power)  # scales 1
    e_scale, e_k95 = _scales(e_err, shape.energy(np.maximum(e_std, 1e-12)))
    f_scale, f_k95 = _scales(f_err, shape.forces(np.maximum(f_std, 1e-12), f_dist))
    return Calibration(e_scale, e_k95, f_scale, f_k95, n, e_power, f_power, d_power)


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
