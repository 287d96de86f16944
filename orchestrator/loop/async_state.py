"""The asynchronous loop's state: one explicit dataclass that its steps
(``asynchronous``, ``generations``, ``exploration``) take and change; nothing else is shared."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ase import Atoms

from orchestrator.loop.queue import LabelQueue
from orchestrator.records.state import CampaignState
from orchestrator.session import Session

if TYPE_CHECKING:
    from orchestrator.cluster.held import HeldActors
    from workers.actors import DFTPool

FRAC_KEYS = ("frac_accurate", "frac_candidate", "frac_failed")  # selection stats summed over MD runs


@dataclass
class AsyncRun:
    s: Session
    state: CampaignState  # the durable state (round = newest generation while labelling)
    queue: LabelQueue
    modes: list  # the seeds' normal modes (round 0's draws and the fillers), [] without
    gen: int  # the newest model (0: none yet)
    pool: DFTPool | None = None  # the held DFT pool
    held: HeldActors | None = None  # the held trainer and samplers
    model: Any = None  # the newest generation's Potential
    payload: Any = None  # ... shared in the object store for the samplers
    labelled_emb: Any = None  # [n, F] the labelled set's embeddings by the newest model
    md_from: list[Atoms] = field(default_factory=list)  # MD starts besides the seeds (see adopt)
    walkers: dict[int, Atoms] = field(default_factory=dict)  # replica -> where its last MD run ended
    train_ref: Any = None  # the training in flight (its ref), None when the trainer is idle
    train_t0: float = 0.0
    new_labels: int = 0  # labels back since the generation in training started
    train_n: int = 0  # labels the generation in training trained on
    train_n_prev: int = 0  # ... and those the newest one did
    md: dict = field(default_factory=dict)  # ref -> (sampler index, generation, start time, running model or None)
    runs: int = 0  # MD runs started this session (seeds them)
    md_wall_s: float | None = None  # recent MD run wall time (moving average)
    label_wall_s: float | None = None  # recent label wall time (moving average)
    picks: dict[int, list] = field(default_factory=dict)  # generation -> its dispatched picks (pick metrics)
    info: dict = field(default_factory=dict)  # the newest generation's selection stats and times
    fillers: int = 0  # pre-model fillers queued
    cutting: bool = False  # the generation in training was told to end (see queue.stale)
    finishing: bool = False  # labelling over: no generation starts (the final model may be training)
    refused: bool = False  # the ledger refused a dispatch (budget spent or in flight)


def moving_average(mean: float | None, x: float, weight: float = 0.3) -> float:
    """Exponential moving average (the first value as is)."""
    return x if mean is None else (1 - weight) * mean + weight * x
