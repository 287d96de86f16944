"""Batches of structures as flat tensors, and the radius graph over them (pure torch).

A batch stacks the atoms of ``n_structures`` structures: ``numbers [n_atoms]``,
``positions [n_atoms, 3]`` (Å), ``structure [n_atoms]`` (which structure each atom is in).
Molecules: candidate pairs are all ordered intra-molecule pairs; they depend only on the
molecule sizes, so MD reuses them every step and only the cutoff mask is recomputed.
Periodic structures (``pbc`` all true) carry their ``cell [n_structures, 3, 3]`` (Å, rows
the lattice vectors); their edges, periodic images included, come from a neighbour list
(vesin) at every call, and a strain ``[n_structures, 3, 3]`` applied to positions and cell
gives the stress by autograd (``batch_edges``).
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
    cell: torch.Tensor | None = None  # [n_structures, 3, 3] Å, rows = lattice vectors (zeros: molecule)
    periodic: torch.Tensor | None = None  # [n_structures] bool; None: every structure a molecule
    stress_ev_a3: torch.Tensor | None = None  # [n_structures, 3, 3] labels (zeros where none)
    has_stress: torch.Tensor | None = None  # [n_structures] bool: which carry a stress label

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
            cell=move(self.cell, True),
            periodic=move(self.periodic, False),
            stress_ev_a3=move(self.stress_ev_a3, True),
            has_stress=move(self.has_stress, False),
        )

    @property
    def any_periodic(self) -> bool:
        return self.periodic is not None and bool(self.periodic.any())


def intra_pairs(n_atoms: list[int] | np.ndarray, skip=None) -> tuple[torch.Tensor, torch.Tensor]:
    """All ordered pairs ``(i, j), i != j`` inside each molecule of a batch (none for the
    structures ``skip [n_structures]`` marks: periodic ones take a neighbour list instead)."""
    pi, pj, offset = [], [], 0
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for k, n in enumerate(n_atoms):
        n = int(n)
        if skip is not None and skip[k]:
            offset += n
            continue
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


def is_periodic(atoms: Atoms) -> bool:
    """Periodic in all three directions (a bulk cell); ``check_structure`` refuses partial pbc."""
    return bool(atoms.pbc.all())


def check_structure(atoms: Atoms) -> None:
    """Raise a one-line ``ValueError`` for structures the model cannot take."""
    if len(atoms) == 0:
        raise ValueError("empty structure (0 atoms)")
    if atoms.pbc.any() and not atoms.pbc.all():
        raise ValueError(
            f"{atoms.get_chemical_formula()} is periodic in some directions only (pbc={atoms.pbc.tolist()}): "
            "catal takes molecules (no pbc) or bulk cells (pbc in all three); give a slab vacuum and full pbc"
        )
    if atoms.pbc.all() and abs(atoms.cell.volume) < 1e-6:
        raise ValueError(f"{atoms.get_chemical_formula()} has pbc but no cell (volume 0)")


def collate(structures: list[Atoms], with_labels: bool = False) -> Batch:
    """Stack ASE ``Atoms`` into one ``Batch`` (float64 positions; cast with ``.to``).

    With ``with_labels`` the energy (eV) and forces (eV/Å) attached to each ``Atoms``
    (its calculator's results, as ``ase.io.read`` of an extxyz gives them) are stacked too.
    """
    if not structures:
        raise ValueError("cannot collate zero structures")
    for a in structures:
        check_structure(a)
    n_atoms = np.array([len(a) for a in structures], dtype=np.int64)
    periodic = np.array([is_periodic(a) for a in structures])
    pair_i, pair_j = intra_pairs(n_atoms, skip=periodic)
    batch = Batch(
        numbers=torch.from_numpy(np.concatenate([a.numbers for a in structures])).long(),
        positions=torch.from_numpy(np.concatenate([a.positions for a in structures])).double(),
        structure=torch.repeat_interleave(torch.arange(len(structures)), torch.from_numpy(n_atoms)),
        n_atoms=torch.from_numpy(n_atoms),
        pair_i=pair_i,
        pair_j=pair_j,
    )
    if periodic.any():
        batch.periodic = torch.from_numpy(periodic)
        cells = [a.cell.array if p else np.zeros((3, 3)) for a, p in zip(structures, periodic, strict=True)]
        batch.cell = torch.from_numpy(np.stack(cells)).double()
    if with_labels:
        energies, forces, stress, has_stress = [], [], [], []
        for k, a in enumerate(structures):
            if a.calc is None:
                raise ValueError(f"structure {k} ({a.get_chemical_formula()}) has no energy label")
            energies.append(a.get_potential_energy())
            forces.append(a.get_forces())
            s = a.calc.results.get("stress") if periodic[k] else None
            has_stress.append(s is not None)
            stress.append(voigt_to_matrix(s) if s is not None else np.zeros((3, 3)))
        batch.energy_ev = torch.tensor(energies, dtype=torch.float64)
        batch.forces_ev_a = torch.from_numpy(np.concatenate(forces)).double()
        if any(has_stress):
            batch.stress_ev_a3 = torch.from_numpy(np.stack(stress)).double()
            batch.has_stress = torch.tensor(has_stress)
    return batch


def voigt_to_matrix(stress) -> np.ndarray:
    """ASE's stress (Voigt ``[xx, yy, zz, yz, xz, xy]`` or a 3 x 3 matrix) as ``[3, 3]``."""
    s = np.asarray(stress, dtype=np.float64)
    if s.shape == (3, 3):
        return s
    xx, yy, zz, yz, xz, xy = s
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


def matrix_to_voigt(stress) -> np.ndarray:
    """``[..., 3, 3]`` stress as ASE's Voigt ``[..., 6]``: xx, yy, zz, yz, xz, xy."""
    s = np.asarray(stress)
    return np.stack([s[..., 0, 0], s[..., 1, 1], s[..., 2, 2], s[..., 1, 2], s[..., 0, 2], s[..., 0, 1]], -1)


def periodic_neighbours(positions: np.ndarray, cell: np.ndarray, cutoff: float) -> tuple[np.ndarray, ...]:
    """``(i, j, shift)`` of every ordered pair closer than ``cutoff`` (Å) in one periodic cell,
    images included: ``r_j - r_i + shift @ cell`` is the pair's vector (``shift [n_pairs, 3]``
    integer image counts). vesin's cell list; positions may lie outside the cell."""
    from vesin import NeighborList

    i, j, shift = NeighborList(cutoff=cutoff, full_list=True).compute(
        points=positions, box=cell, periodic=True, quantities="ijS"
    )
    return i.astype(np.int64), j.astype(np.int64), shift.astype(np.int64)


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


def batch_edges(
    batch: Batch, positions: torch.Tensor, cutoff: float, strain: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every edge of the batch within ``cutoff`` (Å): ``(i, j, vec [n_edges, 3])``, molecules'
    from their candidate pairs, periodic structures' from a neighbour list with images.

    ``strain [n_structures, 3, 3]`` (zeros, requiring grad) deforms positions and cells as
    ``x -> x (1 + strain)``: the energy's gradient with respect to it is the virial (stress x
    volume). ``vec`` stays differentiable with respect to ``positions`` and ``strain``.
    """
    cell = batch.cell
    if strain is not None:
        positions = positions + torch.einsum("ni,nij->nj", positions, strain[batch.structure])
        cell = None if cell is None else cell.to(positions.dtype) + cell.to(positions.dtype) @ strain
    i, j, vec = edges_within_cutoff(positions, batch.pair_i, batch.pair_j, cutoff)
    if not batch.any_periodic:
        return i, j, vec
    bounds = np.concatenate([[0], np.cumsum(batch.n_atoms.cpu().numpy())])
    x = positions.detach().cpu().double().numpy()
    cells = batch.cell.detach().cpu().double().numpy()
    pi, pj, ps = [i], [j], []
    for s in np.flatnonzero(batch.periodic.cpu().numpy()):
        lo, hi = bounds[s], bounds[s + 1]
        a, b, shift = periodic_neighbours(x[lo:hi], cells[s], cutoff)
        pi.append(torch.from_numpy(a + lo).to(i.device))
        pj.append(torch.from_numpy(b + lo).to(i.device))
        ps.append(torch.from_numpy(shift).to(positions) @ cell[s].to(positions))
    pi_t, pj_t = torch.cat(pi), torch.cat(pj)
    offsets = torch.cat([torch.zeros_like(vec), *ps]) if ps else torch.zeros_like(vec)
    n_mol = len(i)
    vec_p = positions.index_select(0, pj_t[n_mol:]) - positions.index_select(0, pi_t[n_mol:]) + offsets[n_mol:]
    return pi_t, pj_t, torch.cat([vec, vec_p])


def zero_strain(batch: Batch, positions: torch.Tensor) -> torch.Tensor | None:
    """A zero strain ``[n_structures, 3, 3]`` requiring grad for ``batch_edges``; None without cells."""
    return positions.new_zeros(batch.n_structures, 3, 3, requires_grad=True) if batch.any_periodic else None


def stress_from_strain(energy: torch.Tensor, strain: torch.Tensor, batch: Batch, create_graph: bool) -> torch.Tensor:
    """``[n_structures, 3, 3]`` stress (eV/Å^3, ASE's sign) = dE/dstrain / volume, symmetrised,
    zeros for molecules; ``strain`` as given to ``batch_edges``. One backward pass of its own,
    the graph kept for the forces' after it."""
    (virial,) = torch.autograd.grad(energy.sum(), strain, create_graph=create_graph, retain_graph=True)
    periodic = batch.periodic.to(virial.device)
    volume = torch.where(periodic, torch.linalg.det(batch.cell.to(virial.dtype)).abs(), 1.0)
    sym = 0.5 * (virial + virial.transpose(1, 2))
    return torch.where(periodic[:, None, None], sym / volume[:, None, None], torch.zeros_like(sym))
