"""Round 0's structures: the initial set, the hold-out, and an asynchronous campaign's fillers,
drawn as ``system.initial`` says (normal modes of the seeds' DFT minima, rattled seeds, or a
file), each with a random stream of its own (``orchestrator.seeds``)."""

from __future__ import annotations

import math

import numpy as np

from orchestrator.config import CampaignConfig
from orchestrator.seeds import filler_seed, holdout_seed, initial_seed
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
        out.append(a)
    return out


def initial_items(cfg: CampaignConfig, seeds: list, modes: list[NormalModes] | None = None) -> list[tuple]:
    """Round 0: the initial set (origin seed) and the hold-out (origin holdout, never trained
    on), drawn as ``system.initial`` says; ``modes`` are the seeds' normal modes for
    ``normal_modes``. The hold-out is drawn where the model will run: normal modes at the
    sampling temperature, or the user's ``holdout_file``, with seeds of its own."""
    sys_cfg, n_holdout = cfg.system, cfg.budget.holdout_labels
    t_md = cfg.sampling.temperature_k
    lo, hi = sys_cfg.rattle_a

    def rattled(k: int, seed: int):
        return rattled_copies(seeds[k % len(seeds)], 1, (lo, hi), seed=seed)[0]

    if sys_cfg.initial == "normal_modes":
        if not modes:
            raise ValueError("initial: normal_modes needs the seeds' normal modes")
        minima = [m.atoms.copy() for m in modes][: sys_cfg.initial_labels]
        t_init = sys_cfg.initial_temperature_k or t_md
        n_draws = max(sys_cfg.initial_labels - len(minima), 0)
        initial = minima + normal_mode_draws(modes, n_draws, t_init, initial_seed(cfg), sys_cfg.torsions)
    elif sys_cfg.initial == "file":
        initial = read_initial_frames(sys_cfg.initial_file, 0, sys_cfg.initial_labels)
    else:
        n_rattled = max(sys_cfg.initial_labels - len(seeds), 0)
        initial = seeds[: sys_cfg.initial_labels] + [rattled(k, initial_seed(cfg) + k) for k in range(n_rattled)]

    h_seed = holdout_seed(cfg)
    if sys_cfg.holdout_file:
        holdout = read_initial_frames(sys_cfg.holdout_file, 0, n_holdout)
    elif modes:
        t_holdout = sys_cfg.holdout_temperature_k or t_md
        holdout = normal_mode_draws(modes, n_holdout, t_holdout, h_seed, sys_cfg.torsions)
    elif sys_cfg.initial == "file":  # the file's frames after the initial set
        holdout = read_initial_frames(sys_cfg.initial_file, sys_cfg.initial_labels, n_holdout)
    else:
        holdout = [rattled(k, h_seed + k) for k in range(n_holdout)]
    return [(a, "seed") for a in initial] + [(a, "holdout") for a in holdout]


def async_round0(items: list[tuple]) -> list[tuple]:
    """What an asynchronous campaign labels before its first model trains: the first half
    of the initial set. The rest of it, then the hold-out, head the queue while that model
    trains, and the initial set's join the training as they arrive."""
    initial = [it for it in items if it[1] != "holdout"]
    return initial[: math.ceil(len(initial) / 2)]


def filler_structures(cfg: CampaignConfig, seeds: list, modes: list[NormalModes] | None, start: int, n: int) -> list:
    """``n`` more structures drawn like the initial set (normal modes at its temperature, or
    rattled seeds), numbered from ``start`` with seeds of their own; [] for ``initial: file``.
    An asynchronous campaign labels these while its first model trains."""
    sys_cfg = cfg.system
    seed = filler_seed(cfg) + start
    if modes:
        t_init = sys_cfg.initial_temperature_k or cfg.sampling.temperature_k
        return normal_mode_draws(modes, n, t_init, filler_seed(cfg), sys_cfg.torsions, start)
    if sys_cfg.initial == "rattle":
        lo, hi = sys_cfg.rattle_a
        return [rattled_copies(seeds[(start + k) % len(seeds)], 1, (lo, hi), seed=seed + k)[0] for k in range(n)]
    return []
