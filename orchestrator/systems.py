"""The systems of a campaign: one potential for several molecules (``system.structures`` as a
list), each with its seeds, charge and spin, and its share of the labels, MD replicas and
picks (pure: ASE + numpy).

Every structure a campaign makes carries its system in ``info``: ``system`` (the entry's
name), ``charge`` and ``spin`` (what its DFT label is computed with, ``workers.dft``). The
tags travel from the seeds to the initial set and hold-out, to MD starts and their frames,
to the picks' extxyz and the label store (``system`` is a row key), so every per-system
figure is read off the structures themselves. A campaign of one system is tagged alike and
labels, selects and reports exactly as before systems existed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from orchestrator.sections import SystemConfig, SystemEntry
from workers.structures import load_seed_structures

SYSTEM_INFO = ("system", "charge", "spin")  # the tags every structure of a campaign carries


@dataclass(frozen=True)
class System:
    name: str
    charge: int
    spin: int
    weight: float
    first: int  # index of its first seed in the campaign's seed list
    n_seeds: int

    @property
    def seed_indices(self) -> range:
        return range(self.first, self.first + self.n_seeds)


def entry_structures(entry: SystemEntry, seed: int = 0) -> list[Atoms]:
    """An entry's seed structures: a molecule name or file, or RDKit conformers of its SMILES."""
    if entry.smiles is not None:
        from workers.conformers import smiles_conformers

        return smiles_conformers(entry.smiles, entry.conformers, seed)
    return load_seed_structures(entry.structures)


def tag(atoms: Atoms, system: System) -> Atoms:
    """``atoms`` with its system's tags in ``info`` (in place; returned for chaining)."""
    atoms.info.update(system=system.name, charge=system.charge, spin=system.spin)
    return atoms


def load_systems(cfg: SystemConfig) -> tuple[list[System], list[Atoms]]:
    """``(systems, seeds)``: every entry's seeds, tagged, in entry order. A bad entry raises
    the one-line error its loader gives (``ValueError`` / ``FileNotFoundError``)."""
    entries = cfg.entries()
    return make_systems(entries, [entry_structures(e, cfg.seed) for e in entries])


def make_systems(entries: list[SystemEntry], frames: list[list[Atoms]]) -> tuple[list[System], list[Atoms]]:
    """``(systems, seeds)`` from each entry's loaded structures (``frames[k]`` for entry k)."""
    systems, seeds = [], []
    for entry, structures in zip(entries, frames, strict=True):
        system = System(entry.label, entry.charge, entry.spin, entry.weight, len(seeds), len(structures))
        seeds += [tag(a.copy(), system) for a in structures]
        systems.append(system)
    return systems, seeds


def apportion(total: int, weights: list[float], floor: int = 0) -> list[int]:
    """``total`` shared out in proportion to ``weights`` (largest remainders), each share at
    least ``floor`` where ``total`` allows; the shares sum to ``total``."""
    n = len(weights)
    if n == 0:
        return []
    floor = min(floor, total // n)
    w = np.asarray(weights, dtype=float)
    exact = floor + (total - floor * n) * w / w.sum()
    shares = np.floor(exact).astype(int)
    for k in np.argsort(-(exact - shares), kind="stable")[: total - int(shares.sum())]:
        shares[k] += 1
    return [int(s) for s in shares]


def shares(cfg: SystemConfig, total: int) -> dict[str, int]:
    """``{system: its share of total}`` by the entries' weights, at least one each."""
    entries = cfg.entries()
    return dict(zip([e.label for e in entries], apportion(total, [e.weight for e in entries], 1), strict=True))


def system_of(atoms: Atoms, default: str = "") -> str:
    return str(atoms.info.get("system", default))


def by_system(structures: list[Atoms], systems: list[System]) -> dict[str, list[Atoms]]:
    """``{name: its structures}`` in ``systems``' order (untagged ones go to the first)."""
    out = {s.name: [] for s in systems}
    first = systems[0].name
    for a in structures:
        out.setdefault(system_of(a, first), []).append(a)
    return out


def pick_quotas(quota: int, weights: list[float], need: list[float], by_need: float = 0.5) -> list[int]:
    """A round's picks shared among systems: ``1 - by_need`` of them by weight alone (no
    system starves), the rest by weight x need (each system's typical uncertainty, e.g. the
    median of its frames' scores: the systems the model knows least get more). Systems with
    no candidates (need nan) get none of the share by need."""
    need = np.nan_to_num(np.asarray(need, dtype=float), nan=0.0, posinf=0.0)
    n_need = int(math.floor(quota * by_need)) if need.sum() > 0 else 0
    base = apportion(quota - n_need, weights, floor=1)
    extra = apportion(n_need, list(np.asarray(weights) * need)) if n_need else [0] * len(weights)
    return [b + e for b, e in zip(base, extra, strict=True)]
