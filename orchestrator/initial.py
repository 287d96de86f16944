"""Round 0's structures: the initial set, the hold-out, and an asynchronous campaign's fillers,
drawn as ``system.initial`` says (normal modes of the seeds' DFT minima, rattled seeds, or a
file), each with a random stream of its own (``orchestrator.seeds``)."""

from __future__ import annotations

import math

import numpy as np

from orchestrator.config import CampaignConfig
from orchestrator.seeds import filler_seed, holdout_seed, initial_seed
from orchestrator.systems import SYSTEM_INFO, shares, system_of
from workers.normal_modes import NormalModes, sample_structures
from workers.structures import rattled_copies, read_frames
from workers.torsions import rotatable_bonds, turn_torsions


def read_initial_frames(path: str, first: int, count: int) -> list:
    frames = read_frames(path)
    out = [a.copy() for a in frames[first : first + count]]
    for a in out:
        a.calc = None  # relabelled at the campaign's DFT level
    return out


def normal_mode_draws(
    modes: list[NormalModes], n: int, temperature_k: float, seed: int, torsions: float = 0.0, start: int = 0
) -> list:
    """``n`` structures, round-robin over the seeds' minima, displaced along their modes; a
    share ``torsions`` of them (spread evenly) with their rotatable bonds turned too.
    ``start``: the first draw's number (a later batch of the same sequence)."""
    out = []
    for k in range(start, start + n):
        nm = modes[k % len(modes)]
        a = sample_structures(nm, temperature_k, 1, seed + k)[0]
        if math.floor((k + 1) * torsions) > math.floor(k * torsions):
            a = turn_torsions(a, rotatable_bonds(nm.atoms), np.random.default_rng([seed, k]))
        out.append(tag_like(a, nm.atoms))
    return out


SYSTEM_STRIDE = 1_000_003  # system j's draws: its own stream, system 0's as a lone system's


def per_system(cfg: CampaignConfig, seeds: list, modes: list[NormalModes] | None) -> list[tuple[list, list | None]]:
    """``[(seeds, modes)]`` of each system, in the entries' order (tags: ``orchestrator.systems``)."""
    names = [e.label for e in cfg.system.entries()]
    out = []
    for name in names:
        mine = [a for a in seeds if system_of(a, names[0]) == name]
        own = [m for m in modes if system_of(m.atoms, names[0]) == name] if modes else None
        out.append((mine, own))
    return out


def initial_items(cfg: CampaignConfig, seeds: list, modes: list[NormalModes] | None = None) -> list[tuple]:
    """Round 0: the initial set (origin seed) and the hold-out (origin holdout, never trained
    on), drawn as ``system.initial`` says, each system its share of both (by weight, at least
    one each) from its own seeds; ``modes`` are the seeds' normal modes for ``normal_modes``.
    The hold-out is drawn where the model will run: normal modes at the sampling
    temperature, or the user's ``holdout_file``, with seeds of its own."""
    n_initial = shares(cfg.system, cfg.system.initial_labels)
    n_holdout = shares(cfg.system, cfg.budget.holdout_labels)
    initial, holdout = [], []
    for j, (name, (mine, own)) in enumerate(zip(n_initial, per_system(cfg, seeds, modes), strict=True)):
        a, b = system_items(cfg, mine, own, n_initial[name], n_holdout[name], j * SYSTEM_STRIDE)
        initial += a
        holdout += b
    return [(a, "seed") for a in initial] + [(a, "holdout") for a in holdout]


def system_items(cfg: CampaignConfig, seeds: list, modes: list[NormalModes] | None, n_initial: int, n_holdout: int,
                 offset: int) -> tuple[list, list]:  # fmt: skip
    """One system's ``(initial set, hold-out)``; ``offset`` moves its random streams."""
    sys_cfg = cfg.system
    t_md = cfg.sampling.temperature_k
    lo, hi = sys_cfg.rattle_a

    def rattled(k: int, seed: int):
        return rattled_copies(seeds[k % len(seeds)], 1, (lo, hi), seed=seed)[0]

    if sys_cfg.initial == "normal_modes":
        if not modes:
            raise ValueError("initial: normal_modes needs the seeds' normal modes")
        minima = [m.atoms.copy() for m in modes][:n_initial]
        t_init = sys_cfg.initial_temperature_k or t_md
        n_draws = max(n_initial - len(minima), 0)
        initial = minima + normal_mode_draws(modes, n_draws, t_init, initial_seed(cfg) + offset, sys_cfg.torsions)
    elif sys_cfg.initial == "file":
        initial = [tag_like(a, seeds[0]) for a in read_initial_frames(sys_cfg.initial_file, 0, n_initial)]
    else:
        n_rattled = max(n_initial - len(seeds), 0)
        initial = seeds[:n_initial] + [rattled(k, initial_seed(cfg) + offset + k) for k in range(n_rattled)]

    h_seed = holdout_seed(cfg) + offset
    if sys_cfg.holdout_file:
        holdout = [tag_like(a, seeds[0]) for a in read_initial_frames(sys_cfg.holdout_file, 0, n_holdout)]
    elif modes:
        t_holdout = sys_cfg.holdout_temperature_k or t_md
        holdout = normal_mode_draws(modes, n_holdout, t_holdout, h_seed, sys_cfg.torsions)
    elif sys_cfg.initial == "file":  # the file's frames after the initial set
        holdout = [tag_like(a, seeds[0]) for a in read_initial_frames(sys_cfg.initial_file, n_initial, n_holdout)]
    else:
        holdout = [rattled(k, h_seed + k) for k in range(n_holdout)]
    return initial, holdout


def tag_like(atoms, seed):
    """``atoms`` with ``seed``'s system tags (a file's frames belong to the campaign's one system)."""
    atoms.info.update({k: seed.info[k] for k in SYSTEM_INFO if k in seed.info})
    return atoms


def async_round0(items: list[tuple]) -> list[tuple]:
    """What an asynchronous campaign labels before its first model trains: the first half
    of the initial set. The rest of it, then the hold-out, head the queue while that model
    trains, and the initial set's join the training as they arrive."""
    initial = [it for it in items if it[1] != "holdout"]
    return initial[: math.ceil(len(initial) / 2)]


def filler_structures(cfg: CampaignConfig, seeds: list, modes: list[NormalModes] | None, start: int, n: int) -> list:
    """``n`` more structures drawn like the initial set (normal modes at its temperature, or
    rattled seeds), numbered from ``start`` with seeds of their own, the systems in turn; []
    for ``initial: file``. An asynchronous campaign labels these while its first model trains."""
    groups = per_system(cfg, seeds, modes)
    out = []
    for number in range(start, start + n):
        j, k = number % len(groups), number // len(groups)
        out += system_fillers(cfg, *groups[j], k, j * SYSTEM_STRIDE)
    return out


def system_fillers(cfg: CampaignConfig, seeds: list, modes: list[NormalModes] | None, k: int, offset: int) -> list:
    """One system's filler number ``k`` (a list of one; [] for ``initial: file``)."""
    sys_cfg = cfg.system
    if modes:
        t_init = sys_cfg.initial_temperature_k or cfg.sampling.temperature_k
        return normal_mode_draws(modes, 1, t_init, filler_seed(cfg) + offset, sys_cfg.torsions, k)
    if sys_cfg.initial == "rattle":
        lo, hi = sys_cfg.rattle_a
        return [rattled_copies(seeds[k % len(seeds)], 1, (lo, hi), seed=filler_seed(cfg) + offset + k)[0]]
    return []
