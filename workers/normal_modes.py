"""Normal modes of a molecule and Boltzmann sampling along them (pure numpy + ASE units).

From a Cartesian Hessian ``[3N, 3N]`` (eV/Å²) at a minimum: mass-weight it, project out
the rigid translations and rotations, and diagonalise. Each vibrational mode ``k`` has a
force constant ``lambda_k`` (eV / (Å² amu)) in mass-weighted coordinates ``Q`` (Å amu^½)
and a frequency ``omega_k = sqrt(lambda_k)``. A classical harmonic oscillator at
temperature T has ``Q_k ~ N(0, kT / lambda_k)``, so each mode holds ``kT / 2`` of potential
energy on average (equipartition): the displacements a 300-600 K MD visits, not the
arbitrary ones of a rattle. ANI's normal-mode sampling draws along the same modes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms, units

# frequencies below this (cm^-1) are treated as this when sampling: a near-zero or imaginary
# mode (a soft torsion, an imperfect minimum) would otherwise get an unbounded amplitude
MIN_SAMPLING_CM = 100.0


def _cm_per_sqrt_lambda() -> float:
    """cm^-1 per sqrt(eV / (Å² amu)): omega / (2 pi c)."""
    omega_per_s = np.sqrt(units._e / (1e-20 * units._amu))  # rad/s for lambda = 1
    return float(omega_per_s / (2.0 * np.pi * units._c * 100.0))


@dataclass(frozen=True)
class NormalModes:
    """Vibrational modes of ``atoms`` at its minimum.

    ``force_constants`` [n_modes] eV/(Å² amu) (negative = imaginary), ``modes``
    [n_modes, 3N] orthonormal mass-weighted eigenvectors, ``masses`` [N] amu.
    """

    atoms: Atoms
    force_constants: np.ndarray
    modes: np.ndarray
    masses: np.ndarray

    @property
    def frequencies_cm(self) -> np.ndarray:
        """Harmonic wavenumbers [n_modes] in cm^-1; imaginary modes are negative."""
        lam = self.force_constants
        return np.sign(lam) * np.sqrt(np.abs(lam)) * _cm_per_sqrt_lambda()

    @property
    def n_imaginary(self) -> int:
        return int((self.frequencies_cm < -20.0).sum())  # below -20 cm^-1: numerical noise above


def rigid_body_basis(positions_a: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Orthonormal mass-weighted translations and rotations ``[5 or 6, 3N]``."""
    sqrt_m = np.sqrt(masses)
    com = (masses[:, None] * positions_a).sum(0) / masses.sum()
    r = positions_a - com
    vectors = []
    for axis in range(3):
        t = np.zeros_like(r)
        t[:, axis] = 1.0
        vectors.append((t * sqrt_m[:, None]).ravel())
        rot = np.cross(np.eye(3)[axis], r)
        vectors.append((rot * sqrt_m[:, None]).ravel())
    # Gram-Schmidt by SVD; a linear molecule has one rotation fewer (a zero singular value)
    u, s, _ = np.linalg.svd(np.array(vectors).T, full_matrices=False)
    return u[:, s > 1e-6 * s.max()].T


def finite_difference_hessian(forces_ev_a, atoms: Atoms, step_a: float) -> np.ndarray:
    """Cartesian Hessian ``[3N, 3N]`` (eV/Å²) by central differences of ``forces_ev_a(atoms)
    -> [N, 3]`` (eV/Å), symmetrised; 6N force calls."""
    n3 = 3 * len(atoms)
    h = np.zeros((n3, n3))
    for k in range(n3):
        f = []
        for sign in (1.0, -1.0):
            a = atoms.copy()
            a.positions.reshape(-1)[k] += sign * step_a
            f.append(np.asarray(forces_ev_a(a)).reshape(-1))
        h[:, k] = -(f[0] - f[1]) / (2.0 * step_a)
    return 0.5 * (h + h.T)


def normal_modes(atoms: Atoms, hessian_ev_a2: np.ndarray) -> NormalModes:
    """Vibrational normal modes from a Cartesian Hessian ``[3N, 3N]`` (eV/Å²)."""
    n3 = 3 * len(atoms)
    h = np.asarray(hessian_ev_a2, dtype=float)
    if h.shape != (n3, n3):
        raise ValueError(f"Hessian shape {h.shape} does not match {len(atoms)} atoms ({n3}, {n3})")
    masses = atoms.get_masses()
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(masses), 3)
    hm = 0.5 * (h + h.T) * inv_sqrt_m[:, None] * inv_sqrt_m[None, :]
    rigid = rigid_body_basis(atoms.positions, masses)
    proj = np.eye(n3) - rigid.T @ rigid
    lam, vec = np.linalg.eigh(proj @ hm @ proj)
    # the rigid-body directions are exact zeros of the projected matrix: drop the eigenvectors
    # that lie in that space, keep the 3N-6 (3N-5) vibrations
    overlap = ((rigid @ vec) ** 2).sum(0)
    keep = np.argsort(overlap)[: n3 - len(rigid)]
    keep = keep[np.argsort(lam[keep])]
    return NormalModes(atoms.copy(), lam[keep], vec[:, keep].T, masses)


def sample_displacements(
    nm: NormalModes, temperature_k: float, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` Cartesian displacements ``[n, N, 3]`` (Å) with Boltzmann amplitudes at T, and the
    harmonic energy of each mode ``[n, n_modes]`` (eV; mean kT/2 per mode)."""
    kt = units.kB * temperature_k
    floor = (MIN_SAMPLING_CM / _cm_per_sqrt_lambda()) ** 2
    lam = np.maximum(np.abs(nm.force_constants), floor)
    q = rng.normal(size=(n, len(lam))) * np.sqrt(kt / lam)  # [n, n_modes], Å amu^½
    dx = (q @ nm.modes) / np.repeat(np.sqrt(nm.masses), 3)  # [n, 3N], Å
    return dx.reshape(n, len(nm.atoms), 3), 0.5 * lam * q**2


def sample_structures(nm: NormalModes, temperature_k: float, n: int, seed: int) -> list[Atoms]:
    """``n`` copies of the minimum displaced along the normal modes at ``temperature_k``."""
    dx, _ = sample_displacements(nm, temperature_k, n, np.random.default_rng(seed))
    out = []
    for k in range(n):
        a = nm.atoms.copy()
        a.calc = None
        a.positions = a.positions + dx[k]
        a.info = {"sampled_k": float(temperature_k)}
        out.append(a)
    return out
