"""Durable campaign state (``state.json``, rewritten atomically) and the round-0 structures."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from orchestrator.config import CampaignConfig, StopConfig
from workers.structures import rattled_copies


@dataclass
class CampaignState:
    round: int = 0  # the round in progress (0 = initial labelling)
    phase: str = "start"  # within the round: start -> trained -> selected -> labelled
    parent_run_id: str | None = None
    round_run_id: str | None = None
    round_info: dict = field(default_factory=dict)  # selection stats and phase times so far
    history: list[dict] = field(default_factory=list)  # logged metrics of finished rounds
    stop_reason: str = ""  # set when a stop rule fires; the final model comes next
    finished: bool = False  # the final model is trained and logged


def state_path(out_dir: Path) -> Path:
    return out_dir / "state.json"


def save_state(out_dir: Path, state: CampaignState) -> None:
    tmp = state_path(out_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=1))
    os.replace(tmp, state_path(out_dir))


def load_state(out_dir: Path) -> CampaignState:
    return CampaignState(**json.loads(state_path(out_dir).read_text()))


def initial_items(cfg: CampaignConfig, seeds: list) -> list[tuple]:
    """Round 0: seeds + rattled copies (origin seed), and the hold-out (drawn once from the
    same displacement range with its own seeds, never trained on)."""
    n_rattled = max(cfg.system.initial_labels - len(seeds), 0)
    lo, hi = cfg.system.rattle_a

    def copy_of(k: int, stdev: tuple, seed: int):
        return rattled_copies(seeds[k % len(seeds)], 1, stdev, seed=seed)[0]

    initial = seeds[: cfg.system.initial_labels] + [
        copy_of(k, (lo, hi), cfg.system.seed * 7919 + k) for k in range(n_rattled)
    ]
    holdout = [copy_of(k, (lo, hi), 10_000_019 + cfg.system.seed * 7919 + k) for k in range(cfg.budget.holdout_labels)]
    return [(a, "seed") for a in initial] + [(a, "holdout") for a in holdout]


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
