"""Batches of molecules as flat tensors, and the radius graph over them (pure torch).

A batch stacks the atoms of ``n_structures`` molecules: ``numbers [n_atoms]``,
``positions [n_atoms, 3]`` (Å), ``structure [n_atoms]`` (which molecule each atom is in).
Candidate pairs are all ordered intra-molecule pairs; they depend only on the molecule
sizes, so MD reuses them every step and only the cutoff mask is recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms


@dataclass
class Batch:
    numbers: torch.Tensor  # [n_atoms] int64 atomic numbers
    positions: torch.Tensor  # [n_atoms, 3] Å
    structure: torch.Tensor  # [n_atoms] int64 index of each atom's molecule
    n_atoms: torch.Tensor  # [n_structures] int64
    pair_i: torch.Tensor  # [n_pairs] int64 receiving atom of each candidate pair
    pair_j: torch.Tensor  # [n_pairs] int64 sending atom
    energy_ev: torch.Tensor | None = None  # [n_structures] labels, when known
    forces_ev_a: torch.Tensor | None = None  # [n_atoms, 3] labels, when known

    @property
    def n_structures(self) -> int:
        return int(self.n_atoms.shape[0])

    def to(self, device=None, dtype: torch.dtype | None = None) -> Batch:
        def move(t, floating):
            if t is None:
                return None
            return t.to(device=device, dtype=dtype if (floating and dtype) else None)

        return Batch(
            numbers=move(self.numbers, False),
            positions=move(self.positions, True),
            structure=move(self.structure, False),
            n_atoms=move(self.n_atoms, False),
            pair_i=move(self.pair_i, False),
            pair_j=move(self.pair_j, False),
            energy_ev=move(self.energy_ev, False),  # totals stay float64
            forces_ev_a=move(self.forces_ev_a, True),
        )


def intra_pairs(n_atoms: list[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """All ordered pairs ``(i, j), i != j`` inside each molecule of a batch."""
    pi, pj, offset = [], [], 0
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for n in n_atoms:
        n = int(n)
        if n not in cache:
            ii, jj = np.nonzero(~np.eye(n, dtype=bool))
            cache[n] = (ii, jj)
        ii, jj = cache[n]
        pi.append(ii + offset)
        pj.append(jj + offset)
        offset += n
    return (
        torch.from_numpy(np.concatenate(pi)).long() if pi else torch.zeros(0, dtype=torch.long),
        torch.from_numpy(np.concatenate(pj)).long() if pj else torch.zeros(0, dtype=torch.long),
    )


def check_molecule(atoms: Atoms) -> None:
    """Raise a one-line ``ValueError`` for structures the model cannot take."""
    if atoms.pbc.any():
        raise ValueError(
            "catal models molecules (PySCF molecular DFT); got a periodic structure "
            f"{atoms.get_chemical_formula()} with pbc={atoms.pbc.tolist()}"
        )
    if len(atoms) == 0:
        raise ValueError("empty structure (0 atoms)")


def collate(structures: list[Atoms], with_labels: bool = False) -> Batch:
    """Stack ASE ``Atoms`` into one ``Batch`` (float64 positions; cast with ``.to``).

    With ``with_labels`` the energy (eV) and forces (eV/Å) attached to each ``Atoms``
    (its calculator's results, as ``ase.io.read`` of an extxyz gives them) are stacked too.
    """
    if not structures:
        raise ValueError("cannot collate zero structures")
    for a in structures:
        check_molecule(a)
    n_atoms = np.array([len(a) for a in structures], dtype=np.int64)
    pair_i, pair_j = intra_pairs(n_atoms)
    batch = Batch(
        numbers=torch.from_numpy(np.concatenate([a.numbers for a in structures])).long(),
        positions=torch.from_numpy(np.concatenate([a.positions for a in structures])).double(),
        structure=torch.repeat_interleave(torch.arange(len(structures)), torch.from_numpy(n_atoms)),
        n_atoms=torch.from_numpy(n_atoms),
        pair_i=pair_i,
        pair_j=pair_j,
    )
    if with_labels:
        energies, forces = [], []
        for k, a in enumerate(structures):
            if a.calc is None:
                raise ValueError(f"structure {k} ({a.get_chemical_formula()}) has no energy label")
            energies.append(a.get_potential_energy())
            forces.append(a.get_forces())
        batch.energy_ev = torch.tensor(energies, dtype=torch.float64)
        batch.forces_ev_a = torch.from_numpy(np.concatenate(forces)).double()
    return batch


def edges_within_cutoff(
    positions: torch.Tensor, pair_i: torch.Tensor, pair_j: torch.Tensor, cutoff: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Edges with ``|r_j - r_i| < cutoff``: ``(i [n_edges], j [n_edges], vec [n_edges, 3])``.

    ``vec = r_j - r_i`` stays differentiable with respect to ``positions`` (forces).
    """
    with torch.no_grad():
        d = (positions[pair_j] - positions[pair_i]).norm(dim=-1)
        keep = d < cutoff
    i, j = pair_i[keep], pair_j[keep]
    return i, j, positions.index_select(0, j) - positions.index_select(0, i)
