"""Periodic structures: boxes of liquid water (pure numpy + ASE).

``water_box`` places molecules on an fcc lattice (4 k^3 molecules: 4, 32, 108, ...) or a
simple cubic one (any other count) in a cubic cell at a given density, each turned to a random
orientation: O-O distances start at the lattice spacing (3.5 Å for 32 molecules at 1 g/cm^3),
so short MD melts it without overlaps.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import molecule

WATER_G_MOL = 18.015
AVOGADRO = 6.02214076e23


def water_box(n_molecules: int = 32, density_g_cm3: float = 1.0, seed: int = 0) -> Atoms:
    """``n_molecules`` randomly oriented waters in a periodic cubic cell at ``density_g_cm3``."""
    if n_molecules < 1:
        raise ValueError(f"a water box needs at least one molecule, got {n_molecules}")
    volume_a3 = n_molecules * WATER_G_MOL / AVOGADRO / density_g_cm3 * 1e24
    length_a = volume_a3 ** (1 / 3)
    k = round((n_molecules / 4) ** (1 / 3))
    if 4 * k**3 == n_molecules:  # fcc: four sites per cubic sub-cell
        basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
        cells = np.array([[i, j, m] for i in range(k) for j in range(k) for m in range(k)])
        sites = (cells[:, None, :] + basis[None]).reshape(-1, 3) / k
    else:
        k = int(np.ceil(n_molecules ** (1 / 3)))
        sites = np.array([[i, j, m] for i in range(k) for j in range(k) for m in range(k)])[:n_molecules] / k
    rng = np.random.default_rng(seed)
    water = molecule("H2O")
    water.positions -= water.get_center_of_mass()
    box = Atoms(cell=[length_a] * 3, pbc=True)
    for site in sites:
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))  # a random orthogonal matrix
        m = water.copy()
        m.positions = m.positions @ q.T + (site + 0.25 / k) * length_a
        box += m
    return box
