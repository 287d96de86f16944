"""Small labelled structures the unit tests share."""

import numpy as np
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator


def rattled_ethanols(n: int = 4) -> list:
    """``n`` rattled ethanol molecules with made-up labels (energies 0.1 eV apart, zero forces)."""
    out = []
    for k in range(n):
        a = molecule("CH3CH2OH")
        a.rattle(0.05, seed=k)
        a.calc = SinglePointCalculator(a, energy=-4139.0 + 0.1 * k, forces=np.zeros((9, 3)))
        out.append(a)
    return out
