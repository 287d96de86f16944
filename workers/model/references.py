"""Per-element reference energies and the per-atom targets a potential regresses (numpy).

fairchem's convention: references fitted by least squares on composition, so the model learns
only the referenced residual ``(E - sum_i ref[Z_i]) / n_atoms`` (eV/atom).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from workers.model.backbone import MAX_Z


def per_atom_targets(structures: list[Atoms], refs: np.ndarray) -> np.ndarray:
    """``(E - sum_i ref[Z_i]) / n_atoms`` (eV/atom) for labelled structures ``[n]``."""
    return np.array([(a.get_potential_energy() - refs[a.numbers].sum()) / len(a) for a in structures])


def fit_element_refs(structures: list[Atoms]) -> np.ndarray:
    """Per-element reference energies ``[MAX_Z + 1]`` (eV) by least squares on composition.

    Rank-deficient compositions (e.g. every structure is ethanol) get the minimum-norm
    solution, which is fine: only the referenced residual is learned.
    """
    counts = np.zeros((len(structures), MAX_Z + 1))
    for k, a in enumerate(structures):
        np.add.at(counts[k], a.numbers, 1.0)
    energies = np.array([a.get_potential_energy() for a in structures])
    present = counts.sum(axis=0) > 0
    sol, *_ = np.linalg.lstsq(counts[:, present], energies, rcond=None)
    refs = np.zeros(MAX_Z + 1)
    refs[present] = sol
    return refs
