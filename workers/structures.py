"""Starting structures: named molecules, files, and perturbed copies (pure, numpy + ASE)."""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import molecule
from ase.collections import g2


def read_frames(path: str | Path) -> list[Atoms]:
    """Every frame of an ASE-readable file; any failure is one ``ValueError`` line naming
    the file and the cause (the original exception chained, for ``--debug``)."""
    from ase.io import read

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    try:
        frames = read(str(path), index=":")
    # ASE's many readers raise whatever their parser hits (KeyError for an unknown element,
    # StopIteration, IndexError, UnicodeDecodeError ...): all are "cannot read this file"
    except Exception as err:  # noqa: BLE001 - the cause is kept in the message and chained
        cause = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(f"{path}: cannot read it with ASE ({type(err).__name__}: {cause})") from err
    frames = [frames] if isinstance(frames, Atoms) else list(frames)
    if not frames:
        raise ValueError(f"{path}: no structures in the file")
    return frames


def load_seed_structures(spec: str) -> list[Atoms]:
    """An ``ase.build.molecule`` name (``CH3CH2OH``) or any ASE-readable file path."""
    path = Path(spec)
    if path.suffix and path.exists():
        return read_frames(path)
    if spec in g2.names:
        return [molecule(spec)]
    if path.suffix:
        raise FileNotFoundError(f"structure file not found: {spec}")
    close = difflib.get_close_matches(spec, g2.names, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ValueError(
        f"unknown molecule {spec!r}: not an ase.build.molecule name nor a file{hint}; "
        "any molecule by SMILES: system.structures: {smiles: CN}"
    )


def rattled_copies(atoms: Atoms, n: int, stdev_a: tuple[float, float] = (0.02, 0.1), seed: int = 0) -> list[Atoms]:
    """``n`` copies with Gaussian displacements, stdev drawn uniformly in ``stdev_a`` (Å)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = atoms.copy()
        a.calc = None
        a.positions = a.positions + rng.normal(0.0, rng.uniform(*stdev_a), a.positions.shape)
        out.append(a)
    return out


def thermalize(atoms: Atoms, temperature_k: float, rng: np.random.Generator) -> None:
    """Maxwell-Boltzmann momenta at ``temperature_k``, no net momentum (nor rotation, for a
    molecule: a periodic cell has no rotation to remove)."""
    from ase.md import velocitydistribution as vd

    if hasattr(vd, "thermalize_momenta"):  # ASE >= 3.29
        vd.thermalize_momenta(atoms, temperature_K=temperature_k, rng=rng)
    else:
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_k, rng=rng)
    vd.Stationary(atoms)
    if not atoms.pbc.any():
        vd.ZeroRotation(atoms)


def split_by_info(frames: list[Atoms], seed: int = 2026) -> tuple[list[Atoms], list[Atoms]]:
    """``(train + val, test)`` from each frame's ``info["split"]``; else a seeded 80/20 split."""
    if frames and all("split" in f.info for f in frames):
        pool = [f for f in frames if f.info["split"] in ("train", "val")]
        return pool, [f for f in frames if f.info["split"] == "test"]
    order = np.random.default_rng(seed).permutation(len(frames))
    n_test = max(2, len(frames) // 5)
    return [frames[i] for i in order[n_test:]], [frames[i] for i in order[:n_test]]
