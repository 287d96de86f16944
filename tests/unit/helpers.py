"""Small labelled structures the unit tests share."""

import numpy as np
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator


def rattled_molecules(name: str, n: int, energy_ev: float, step_ev: float = 0.1) -> list:
    """``n`` copies of ``ase.build.molecule(name)`` rattled (0.05 Å, seeds 0..n-1) with made-up
    labels: energies ``energy_ev + step_ev * k``, zero forces."""
    out = []
    for k in range(n):
        a = molecule(name)
        a.rattle(0.05, seed=k)
        a.calc = SinglePointCalculator(a, energy=energy_ev + step_ev * k, forces=np.zeros((len(a), 3)))
        out.append(a)
    return out


def rattled_ethanols(n: int = 4) -> list:
    """``n`` rattled ethanol molecules with made-up labels (energies 0.1 eV apart, zero forces)."""
    return rattled_molecules("CH3CH2OH", n, -4139.0)
