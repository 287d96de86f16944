"""Out-of-distribution set: one bond of each frame stretched beyond what MD visits, DFT-labelled.

    python benchmarks/make_stretched.py [--source benchmarks/data/ethanol_id_hf_sto3g.extxyz]
        [--trajectory 4] [--frames 40] [--min-factor 1.25] [--max-factor 1.6]
        [--split test] [--out benchmarks/data/ethanol_stretched_hf_sto3g.extxyz]

For each of ``--frames`` frames of one trajectory of ``--source`` (the in-distribution
test trajectory: no training or calibration frame is stretched), one bonded pair ``(i, j)``
(``d < 1.2 (r_cov,i + r_cov,j)``), chosen at random, is pulled apart along its axis to
``factor`` x its length, ``factor`` uniform in ``[min, max]``: atom ``j`` and the atoms on its
side of the bond (those it reaches without crossing the bond) move together, so only that
bond is stretched. Labels: PySCF RHF/STO-3G (``workers.dft.label``, ``mf.converged``
checked); a structure whose SCF fails is left out and counted. Each frame's ``info``:
``stretched_bond`` ("i,j"), ``stretch_factor``, ``source_trajectory``, ``source_step``.
"""

from __future__ import annotations

import argparse
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import covalent_radii
from ase.io import read, write

from workers.dft import DFTConfig, Status, label, labelled_atoms

DATA = Path(__file__).parent / "data"


def bonds(atoms: Atoms, factor: float = 1.2) -> list[tuple[int, int]]:
    """Bonded pairs ``i < j``: closer than ``factor`` x the sum of covalent radii."""
    d = atoms.get_all_distances()
    r = covalent_radii[atoms.numbers]
    n = len(atoms)
    return [(i, j) for i in range(n) for j in range(i + 1, n) if d[i, j] < factor * (r[i] + r[j])]


def side_of(atoms: Atoms, i: int, j: int) -> list[int]:
    """Atoms reached from ``j`` over bonds without crossing ``(i, j)`` (``j`` included)."""
    graph: dict[int, set[int]] = {k: set() for k in range(len(atoms))}
    for a, b in bonds(atoms):
        if {a, b} != {i, j}:
            graph[a].add(b)
            graph[b].add(a)
    seen, todo = {j}, [j]
    while todo:
        for nb in graph[todo.pop()]:
            if nb not in seen and nb != i:
                seen.add(nb)
                todo.append(nb)
    return sorted(seen)


def stretch(atoms: Atoms, i: int, j: int, factor: float) -> Atoms:
    """A copy with bond ``(i, j)`` at ``factor`` x its length (``j``'s side moved rigidly)."""
    out = atoms.copy()
    vec = out.positions[j] - out.positions[i]
    moving = side_of(out, i, j)
    if i in moving:  # a ring: only j moves
        moving = [j]
    out.positions[moving] += (factor - 1.0) * vec
    return out


def label_one(atoms: Atoms) -> Atoms | None:
    result = label(atoms, DFTConfig(method="hf", basis="sto-3g", threads=1))
    return labelled_atoms(atoms, result) if result.status is Status.OK else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, default=DATA / "ethanol_id_hf_sto3g.extxyz")
    p.add_argument("--trajectory", type=int, default=4, help="info['trajectory'] of the frames to stretch")
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--min-factor", type=float, default=1.25)
    p.add_argument("--max-factor", type=float, default=1.6)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--split", default="test", help="info['split'] of the frames written (test; dev: a development set)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=DATA / "ethanol_stretched_hf_sto3g.extxyz")
    args = p.parse_args()
    source = [a for a in read(args.source, index=":") if a.info.get("trajectory") == args.trajectory]
    if not source:
        p.error(f"{args.source}: no frame with info['trajectory'] == {args.trajectory}")
    rng = np.random.default_rng(args.seed)
    picks = rng.choice(len(source), size=min(args.frames, len(source)), replace=len(source) < args.frames)
    todo = []
    for k in picks:
        frame = source[int(k)]
        pairs = bonds(frame)
        i, j = pairs[int(rng.integers(len(pairs)))]
        factor = float(rng.uniform(args.min_factor, args.max_factor))
        a = stretch(Atoms(numbers=frame.numbers, positions=frame.positions), i, j, factor)
        a.info.update(
            {
                "stretched_bond": f"{i},{j}",
                "stretch_factor": factor,
                "source_trajectory": args.trajectory,
                "source_step": frame.info.get("step", -1),
                "temperature_k": frame.info.get("temperature_k", -1),
                "split": args.split,
            }
        )
        todo.append(a)
    with Pool(args.workers) as pool:
        labelled = pool.map(label_one, todo)
    kept = [a for a in labelled if a is not None]
    for a, src in zip(labelled, todo, strict=True):
        if a is not None:
            a.info.update(src.info)
    write(args.out, kept, format="extxyz")
    print(f"wrote {len(kept)} stretched frames to {args.out} ({len(todo) - len(kept)} SCF failures left out)")


if __name__ == "__main__":
    main()
