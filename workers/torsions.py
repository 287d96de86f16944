"""Rotatable bonds and random turns about them (pure numpy + ASE).

Normal modes at a minimum displace atoms along straight lines: a hindered rotor (an OH or
a methyl group) stays in the conformer the minimum is in. A model trained only there has no
data on the other conformers and, in ethanol, put a spurious 0.6 eV wall in the HOCC
torsion where DFT has 0.1 eV, so MD at 600 K with it never reached the gauche conformers a
500 K trajectory spends half its time in (measured on an earlier build). Turning rotatable
bonds to random angles before labelling gives the model those conformers from round 0.

A bond is rotatable when it lies outside any ring, its two atoms each have another
neighbour (so it carries a dihedral), and it is not conjugated: not between two atoms with
fewer neighbours than their valence (C=C-C=C, biphenyl), nor between such an atom and an
N, O or S (amide C-N, acid C-OH: barriers of 0.5-0.8 eV, conformers MD would not visit).
The smaller side turns about it.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.data import covalent_radii

BOND_SCALE = 1.2  # bonded when closer than 1.2 x the sum of covalent radii
CLASH_SCALE = 0.75  # a turn is refused if two atoms not bonded come closer than this x radii
TRIES = 20  # angle draws per structure before it is left unturned


def bond_graph(atoms: Atoms) -> list[set[int]]:
    """Neighbours of each atom: pairs closer than ``BOND_SCALE`` x their covalent radii."""
    r = covalent_radii[atoms.numbers]
    d = atoms.get_all_distances()
    bonded = (d < BOND_SCALE * (r[:, None] + r[None, :])) & ~np.eye(len(atoms), dtype=bool)
    return [set(np.flatnonzero(row).tolist()) for row in bonded]


def _side(graph: list[set[int]], start: int, cut: tuple[int, int]) -> set[int]:
    """Atoms reached from ``start`` without crossing the bond ``cut``."""
    seen, todo = {start}, [start]
    while todo:
        a = todo.pop()
        for b in graph[a]:
            if {a, b} == set(cut) or b in seen:
                continue
            seen.add(b)
            todo.append(b)
    return seen


VALENCE = {5: 3, 6: 4, 7: 3, 8: 2, 14: 4, 15: 3, 16: 2}  # B C N O Si P S: neighbours when saturated
DONORS = {7, 8, 16}  # N O S: lone pairs that conjugate with an unsaturated neighbour


def _conjugated(numbers: np.ndarray, graph: list[set[int]], i: int, j: int) -> bool:
    unsat = [len(graph[k]) < VALENCE.get(int(numbers[k]), 0) for k in (i, j)]
    donor = [int(numbers[k]) in DONORS for k in (i, j)]
    return (unsat[0] and unsat[1]) or (unsat[0] and donor[1]) or (unsat[1] and donor[0])


def rotatable_bonds(atoms: Atoms) -> list[tuple[int, int, np.ndarray]]:
    """``[(i, j, moving)]``: rotatable bonds i-j and the atoms (j's side, the smaller one)
    that turn about them; [] for a rigid molecule."""
    graph = bond_graph(atoms)
    out = []
    for i in range(len(atoms)):
        for j in sorted(graph[i]):
            if j < i or len(graph[i]) < 2 or len(graph[j]) < 2 or _conjugated(atoms.numbers, graph, i, j):
                continue
            side_j = _side(graph, j, (i, j))
            if i in side_j:  # in a ring
                continue
            side_i = _side(graph, i, (i, j))
            a, b, moving = (i, j, side_j) if len(side_j) <= len(side_i) else (j, i, side_i)
            out.append((a, b, np.array(sorted(moving))))
    return out


def _rotate(positions: np.ndarray, axis_from: int, axis_to: int, moving: np.ndarray, angle: float) -> np.ndarray:
    """``positions`` [n, 3] with ``moving`` turned by ``angle`` (rad) about the bond axis."""
    origin = positions[axis_to]
    u = positions[axis_to] - positions[axis_from]
    u = u / np.linalg.norm(u)
    x = positions[moving] - origin
    cos, sin = np.cos(angle), np.sin(angle)
    turned = x * cos + np.cross(u, x) * sin + np.outer(x @ u, u) * (1 - cos)  # Rodrigues
    out = positions.copy()
    out[moving] = turned + origin
    return out


def _clashes(positions: np.ndarray, numbers: np.ndarray, graph: list[set[int]]) -> bool:
    r = covalent_radii[numbers]
    d = np.linalg.norm(positions[:, None] - positions[None, :], axis=-1)
    close = d < CLASH_SCALE * (r[:, None] + r[None, :])
    np.fill_diagonal(close, False)
    return any(b not in graph[a] for a, b in zip(*np.nonzero(close), strict=True))


def turn_torsions(atoms: Atoms, bonds: list, rng: np.random.Generator) -> Atoms:
    """A copy of ``atoms`` with every bond of ``bonds`` (``rotatable_bonds`` of the
    structure's minimum) turned by a uniform random angle, redrawn while two atoms clash;
    unturned after ``TRIES`` draws."""
    out = atoms.copy()
    if not bonds:
        return out
    graph = bond_graph(atoms)
    for _ in range(TRIES):
        pos = atoms.positions.copy()
        for a, b, moving in bonds:
            pos = _rotate(pos, a, b, moving, rng.uniform(0.0, 2 * np.pi))
        if not _clashes(pos, atoms.numbers, graph):
            out.positions = pos
            return out
    return out


def torsion_quads(atoms: Atoms) -> list[tuple[int, int, int, int]]:
    """``[(k, i, j, l)]``: one dihedral per rotatable bond i-j whose turn is visible, each end's
    outer atom its lowest-numbered heavy neighbour, or its one neighbour where it has a single
    one (a hydroxyl H); a bond with a symmetric rotor on one end (a methyl's three H) is left
    out, since its angle repeats every 120 degrees."""
    graph = bond_graph(atoms)
    heavy = atoms.numbers > 1

    def outer(end: int, other: int) -> int | None:
        rest = sorted(graph[end] - {other})
        heavies = [n for n in rest if heavy[n]]
        return heavies[0] if heavies else (rest[0] if len(rest) == 1 else None)

    quads = []
    for a, b, _ in rotatable_bonds(atoms):
        i, j = min(a, b), max(a, b)
        k, m = outer(i, j), outer(j, i)
        if k is not None and m is not None:
            quads.append((k, i, j, m))
    return quads


def torsion_angles(frames: list[Atoms], quads: list[tuple[int, int, int, int]]) -> np.ndarray:
    """``[n_frames, n_quads]`` dihedral angles (degrees, 0-360) of each frame."""
    return np.array([[a.get_dihedral(*q) for q in quads] for a in frames], dtype=float).reshape(len(frames), len(quads))


def angle_diff_deg(a, b) -> np.ndarray:
    """``|a - b|`` on the circle (degrees, 0-180), broadcast."""
    return np.abs((np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0)


def torsion_gaps(angles: np.ndarray, known: np.ndarray | None) -> np.ndarray:
    """``[n_frames]`` degrees: for each frame's torsions (``angles`` [n_frames, n_quads], from
    ``torsion_angles``), how far they are from the nearest ``known`` structure's ([n_known,
    n_quads]): the largest circular difference over the bonds, minimised over the known
    structures; 0 where some known structure has every torsion alike, 180 at most.
    ``known=None``: each frame against the other frames (how far apart a set's own members sit)."""
    x = np.asarray(angles, dtype=float)
    if not x.shape[1]:
        return np.zeros(len(x))
    y = x if known is None else np.asarray(known, dtype=float)
    if len(y) < (2 if known is None else 1):  # nothing (else) known: as far as can be
        return np.full(len(x), 180.0)
    diff = angle_diff_deg(x[:, None, :], y[None, :, :]).max(axis=2)  # [frames, known]
    if known is None:
        np.fill_diagonal(diff, np.inf)
    return diff.min(axis=1)
