"""The steps both campaign loops share, as functions of what they read: a
training job and its warm start, a trained model's checkpoint, MD's config and starts, the
labelled set's embeddings, what a pick keeps, and when to stop."""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from ase import Atoms

from orchestrator.config import CampaignConfig, StopConfig
from orchestrator.records.rundir import RunDir
from orchestrator.records.store import LabelStore
from orchestrator.references import seed_minima
from orchestrator.seeds import retry_seed, training_seed
from orchestrator.selection import SCORE_KEYS, SelectionConfig, frame_scores, select
from orchestrator.systems import System, apportion, by_system, tag
from workers.errors import DamagedFile
from workers.model.calculator import predict, recalibrate
from workers.model.checkpoint import load_checkpoint, model_from_payload, model_payload, save_checkpoint
from workers.model.checks import minimum_flaw
from workers.model.scans import probes
from workers.sampling import CARRIED_INFO, UNCERTAINTY_KEYS, MDConfig, last_frames

# what a pick's extxyz keeps of its MD frame's info (one name each, as the model names them)
PICK_INFO = ("model_energy", *UNCERTAINTY_KEYS, "committee_force_dev", "bias_energy", "replica", "step", "probe",
             *CARRIED_INFO)  # fmt: skip
T = TypeVar("T")
TRAINED_KEYS = ("optimizer", "history", "best_epoch", "support_clamped", "structures_per_s")


@dataclass
class TrainingJob:
    """What a trainer needs for one model (``Runtime.train`` / ``start_training``)."""

    structures: list[Atoms]  # labelled, hold-out excluded, in a fixed order
    warm_payload: dict | None  # the model to continue from (None: a cold start)
    optimizer_state: dict | None
    epochs: int
    seed: int


def score_key(cfg: CampaignConfig) -> str:
    """The frame info key holding the selection strategy's score."""
    return SCORE_KEYS.get(cfg.selection.strategy, "energy_entropy")


def score_frames(model, frames: list) -> None:
    """``model``'s energy, uncertainty and embedding into each frame's info (as MD frames have them)."""
    if not frames:
        return
    for a, p in zip(frames, predict(model, frames), strict=True):
        a.info["model_energy"], a.info["embedding"] = p["energy"], p["embedding"]
        for key in UNCERTAINTY_KEYS:
            a.info[key] = p.get(key, math.nan)


def probe_frames(model, frames: list, paths: tuple[str, ...]) -> list[Atoms]:
    """``scans.probes`` of the last frame of each replica no stop rule ended: the structures
    past each turn of ``model``'s energy along the ``paths`` (``selection.probe_paths``), scored
    as MD frames are."""
    last = last_frames([f for f in frames if not f.info.get("stop_reason")])
    found = probes(lambda s: np.array([p["energy"] for p in predict(model, s, bare=True)]), list(last.values()),
                   kinds=paths)  # fmt: skip
    score_frames(model, found)
    return found


def draw_probes(found: list[Atoms], cfg: SelectionConfig, n: int, labelled_emb, rng) -> list[Atoms]:
    """Up to ``n`` of the scored probes ``found`` (``probe_frames``), drawn as picks are
    (``select``) but with no quantile ceiling: every probe is a candidate (a committee's:
    uniformly, as probes carry no committee deviation)."""
    if not found or n <= 0:
        return []
    emb = np.stack([f.info["embedding"] for f in found])
    uniform = {"strategy": "random"} if cfg.strategy == "committee" else {}
    whole = cfg.model_copy(update={"window_mode": "quantile", "window_lo": 0.0, "window_hi": 1.0, **uniform})
    physical = np.zeros(len(found), dtype=bool)  # no stop rule ends a probe
    sel = select(frame_scores(found, whole.strategy), emb, physical, whole, n, labelled_emb, rng)
    return [found[int(i)] for i in sel.picked]


def trimmed(frame: Atoms) -> Atoms:
    """An MD frame with only the ``PICK_INFO`` keys in its info (what the extxyz keeps)."""
    keep = {k: frame.info[k] for k in PICK_INFO if k in frame.info}
    frame.info.clear()
    frame.info.update(keep)
    return frame


def warm_start(cfg: CampaignConfig, prev: Path) -> tuple[dict | None, dict | None, int]:
    """``(model payload, optimizer state, epochs)`` to continue from checkpoint ``prev``, or
    a cold start (``training.epochs``) when it does not exist or is damaged (said on stderr)."""
    if not prev.exists():
        return None, None, cfg.training.epochs
    try:
        model, ckpt = load_checkpoint(prev)
    except DamagedFile as err:
        print(f"catal: {err}: this round starts cold instead", file=sys.stderr)
        return None, None, cfg.training.epochs
    return model_payload(model), ckpt.get("optimizer"), cfg.warm_start_epochs or cfg.training.epochs


def training_job(cfg: CampaignConfig, run: RunDir, store: LabelStore, rnd: int, final: bool = False,
                 member: int = 0, scratch: bool = True) -> TrainingJob:  # fmt: skip
    """Round ``rnd``'s model (``final``: on every label), warm-started from the round before;
    the final one from scratch where ``campaign.final_scratch_epochs`` says so (and ``scratch``:
    False is the warm final a campaign falls back on, ``sound_training``)."""
    scratch = cfg.campaign.final_scratch_epochs if final and scratch else None
    warm, opt_state, epochs = (None, None, scratch) if scratch else warm_start(cfg, run.checkpoint(rnd - 1, member))
    data = store.training_structures(rnd + 1 if final else rnd)
    return TrainingJob(data, warm, opt_state, epochs, training_seed(cfg, member))


def sound_training(
    train: Callable[[int], T],
    calc_of: Callable[[T], object],
    seed: int,
    tries: int,
    references: list,
    on_flaw: Callable[[int, str], None] | None = None,
    md: Callable[[object, list], str] | None = None,
) -> tuple[T | None, int]:
    """The first of up to ``tries`` trainings ``train(training seed)`` (``seed``, then
    ``retry_seed(seed, 1)``, ...) whose potential (``calc_of``: its ASE calculator) has no ``minimum_flaw`` at
    ``references`` (``minimum_references``; none: the first is kept unchecked) and, with ``md``
    (calculator, references -> a flaw or '': ``md_flaw``), none there either; or None when every one
    has one; and how many were trained. ``on_flaw(training, flaw)`` hears each flaw."""
    for attempt in range(tries):
        out = train(retry_seed(seed, attempt))
        flaw = ""
        if references:
            calc = calc_of(out)
            flaw = minimum_flaw(calc, references) or (md(calc, references) if md is not None else "")
        if not flaw:
            return out, attempt + 1
        if on_flaw is not None:
            on_flaw(attempt + 1, flaw)
    return None, tries


def save_trained(path: Path, out: dict, rnd: int, holdout: list[Atoms]) -> Path:
    """A trainer's result (``Runtime.train``) written as a checkpoint, its error bars
    recalibrated on the hold-out labels (never trained on; ``recalibrate``)."""
    model = model_from_payload(out["payload"], "cpu")
    recalibrate(model, holdout)
    extra = {k: out[k] for k in TRAINED_KEYS}
    save_checkpoint(path, model, {**extra, "round": rnd, "epoch": len(out["history"])})
    return path


def md_config(cfg: CampaignConfig, seed: int) -> MDConfig:
    """The sampling section with this run's seed (and the trust window as an MD stop)."""
    md_cfg = cfg.sampling.model_copy(update={"seed": seed})
    if cfg.selection.window_mode == "absolute" and cfg.selection.strategy == "entropy":
        stops = md_cfg.stops.model_copy(update={"max_entropy": cfg.selection.window_hi})
        md_cfg = md_cfg.model_copy(update={"stops": stops})
    return md_cfg


def md_starts(seeds: list[Atoms], reference_paths: list[Path], labelled: list[Atoms], n: int,
              systems: list[System] | None = None) -> list[Atoms]:  # fmt: skip
    """MD starts: the seeds at their DFT minimum (where normal-mode sampling stored one;
    else as given) and the ``n`` most recent labelled structures (no calculator). With
    several ``systems``: exactly ``n`` starts, each system its share by weight (at least
    one), from its own minima then its own newest labels, tagged with it."""
    minima = seed_minima(seeds, reference_paths)
    if not systems or len(systems) == 1:
        return minima + [untied(a) for a in labelled[-n:]] if n else minima
    starts = []
    groups = by_system(labelled, systems)
    for system, count in zip(systems, apportion(n, [s.weight for s in systems], floor=1), strict=True):
        own = [minima[k] for k in system.seed_indices] + [untied(a) for a in groups[system.name][-count:]]
        starts += [tag(own[r % len(own)].copy(), system) for r in range(count)]
    return starts


def untied(atoms: Atoms) -> Atoms:
    """A copy with no calculator (a label is never mistaken for a prediction, nor MD for DFT)."""
    a = atoms.copy()
    a.calc = None
    return a


def picks_line(picks: list[Atoms]) -> str:
    """What the picks are, for the console: per system (where there are several) and the
    element of each pick's most uncertain atom (``forces_std_atom``); "" when neither."""

    def counted(values) -> str:
        return ", ".join(f"{k} {n}" for k, n in Counter(values).most_common())

    parts = []
    systems = [a.info["system"] for a in picks if "system" in a.info]
    if len(set(systems)) > 1:
        parts.append(f"per system: {counted(systems)}")
    atoms = [a.get_chemical_symbols()[a.info["forces_std_atom"]] for a in picks
             if isinstance(a.info.get("forces_std_atom"), int)]  # fmt: skip
    if atoms:
        parts.append(f"most uncertain atoms: {counted(atoms)}")
    return "; ".join(parts)


def labelled_embeddings(model, structures: list[Atoms]) -> np.ndarray | None:
    """``[n, F]`` pooled features of the labelled set by ``model`` (None when empty): what
    selection keeps new picks away from."""
    return np.stack([r["embedding"] for r in predict(model, structures)]) if structures else None


def stop_reason(last: dict, stop: StopConfig, labels_left: int) -> str:
    """Why the campaign stops after a round with metrics ``last`` ("" = go on)."""
    if labels_left <= 0 or last.get("budget_refused"):
        return "budget exhausted"
    if stop.target_force_mae is not None and last["holdout_force_mae"] <= stop.target_force_mae:
        return f"hold-out force MAE {last['holdout_force_mae']:.4f} <= target {stop.target_force_mae}"
    if stop.converged_candidate_fraction is not None and last["frac_candidate"] <= stop.converged_candidate_fraction:
        return f"converged: {last['frac_candidate']:.3f} of frames are candidates"
    if last["round"] >= stop.max_rounds:
        return f"max rounds ({stop.max_rounds}) reached"
    return ""
