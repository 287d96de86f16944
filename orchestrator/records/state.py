"""Durable campaign state (``state.json``, rewritten atomically)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from orchestrator.records.rundir import RunDir


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
    # DFT utilisation over the campaign: label wall seconds, and worker-seconds on offer
    # (from each session's first DFT dispatch to its last label, x the pool's workers)
    dft_busy_s: float = 0.0
    dft_capacity_s: float = 0.0


def state_path(out_dir: Path) -> Path:
    return RunDir(out_dir).state


def save_state(out_dir: Path, state: CampaignState) -> None:
    tmp = state_path(out_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=1))
    os.replace(tmp, state_path(out_dir))


def load_state(out_dir: Path) -> CampaignState:
    return CampaignState(**json.loads(state_path(out_dir).read_text()))
