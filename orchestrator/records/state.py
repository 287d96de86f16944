"""Durable campaign state (``state.json``, rewritten atomically)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from orchestrator.records.rundir import RunDir
from workers.errors import DamagedFile, first_line
from workers.files import write_atomic


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


def backup_path(out_dir: Path) -> Path:
    """The state before the last save: a valid place to resume from (as after a crash just
    before that save), kept for a ``state.json`` damaged outside catal."""
    return RunDir(out_dir).state_backup


def save_state(out_dir: Path, state: CampaignState) -> None:
    """Written whole (``write_atomic``); the state it replaces kept as ``state.json.bak``."""
    path = state_path(out_dir)
    text = json.dumps(asdict(state), indent=1)
    if path.exists():
        os.replace(path, backup_path(out_dir))
    write_atomic(path, text)


def read_state(path: Path) -> CampaignState:
    """One state file; ``DamagedFile`` when it does not read back as a campaign's state."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise TypeError(f"a JSON {type(data).__name__}, not an object")
        return CampaignState(**data)
    except (ValueError, TypeError) as err:  # JSON / UTF-8 errors are ValueErrors; unknown or missing keys
        fix = "restore it from a copy (catal keeps the one before as state.json.bak)"
        raise DamagedFile(path, first_line(err), fix) from None


def load_state(out_dir: Path, say: Callable[[str], None] | None = None) -> CampaignState:
    """The campaign's state; a damaged ``state.json`` falls back to the one saved before it
    (said through ``say``), which a resume goes on from as after a crash."""
    path, backup = state_path(out_dir), backup_path(out_dir)
    try:
        if path.exists() or not backup.exists():
            return read_state(path)
        why = "is missing"  # deleted, or a crash between the two renames of ``save_state``
    except DamagedFile as damaged:
        if not backup.exists():
            raise
        why = f"is damaged ({damaged.reason})"
    state = read_state(backup)
    if say is not None:
        say(f"[yellow]{path.name} {why}[/]: going on from {backup.name}, the state saved before it")
    return state
