"""Label a batch of structures: store first, ledger-gated dispatch, durable results.

For each structure: if the store already holds its label, reuse it (no DFT); otherwise
reserve a budget slot (stop when the ledger says no), dispatch to the pool, and on the
result write the store row (with ``charged``) before settling the ledger. The store is the
ledger's durable state, so a crash between the two loses nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms

from orchestrator.records.budget import Ledger
from orchestrator.records.store import LabelStore, StoredLabel, content_key
from workers import labeller
from workers.dft import DFTConfig, LabelResult, Status


@dataclass
class LabelReport:
    stored: list[StoredLabel] = field(default_factory=list)  # new labels, completion order
    reused: list[StoredLabel] = field(default_factory=list)  # found in the store, no DFT
    budget_exhausted: bool = False  # the ledger refused a reservation
    dft_seconds: float = 0.0  # wall seconds of the new labels
    wall_s: float = 0.0
    utilisation: float = 0.0
    resubmitted: int = 0  # DFT jobs sent again after their worker (or its node) was lost

    @property
    def failures(self) -> int:
        return sum(1 for s in self.stored if s.status is not Status.OK)

    @property
    def all_labels(self) -> list[StoredLabel]:
        return self.reused + self.stored


@dataclass
class DFTClock:
    """DFT utilisation over a campaign: label wall seconds / (span x workers), the span running
    from a session's first DFT dispatch to its last label; earlier sessions' sums carried in."""

    workers: int
    busy_before_s: float = 0.0  # from earlier sessions (the campaign state)
    capacity_before_s: float = 0.0
    busy_s: float = 0.0
    t_first: float | None = None
    t_last: float | None = None

    def started(self) -> None:
        if self.t_first is None:
            self.t_first = time.perf_counter()

    def labelled(self, wall_s: float) -> None:
        self.busy_s += wall_s
        self.t_last = time.perf_counter()

    @property
    def span_s(self) -> float:
        return (self.t_last - self.t_first) if self.t_first is not None and self.t_last is not None else 0.0

    def totals(self) -> tuple[float, float]:
        """``(busy_s, capacity_s)`` of the whole campaign so far."""
        return self.busy_before_s + self.busy_s, self.capacity_before_s + self.span_s * self.workers

    @property
    def utilisation(self) -> float:
        return utilisation(*self.totals())


def utilisation(busy_s: float, capacity_s: float) -> float:
    """DFT busy seconds / worker-seconds on offer (wall x workers); nan when none was on
    offer. The pool's own per-phase figure is ``workers.actors.PoolStats.utilisation``."""
    return busy_s / capacity_s if capacity_s > 0 else float("nan")


# a label back from DFT, to be stored: (ledger token, content key, structure, result, round, origin)
Arrived = tuple[int, str, Atoms, LabelResult, int, str]


def store_and_settle(store: LabelStore, ledger: Ledger, batch: list[Arrived]) -> list[StoredLabel]:
    """Write a batch of labels, commit once (durable first: one fsync per batch), then settle
    each in the ledger; returns them as stored. A crash before the commit loses only labels
    the ledger never charged."""
    stored = [
        store.put(key, atoms, result, rnd, origin, ledger.would_charge(result.status.value), commit=False)
        for _, key, atoms, result, rnd, origin in batch
    ]
    store.commit()
    for token, _, _, result, _, _ in batch:
        ledger.settle(token, result.status.value, result.cost_s)
    return stored


class SerialPool:
    """In-process labelling, one structure at a time (no Ray): same ``run`` as ``DFTPool``."""

    def __init__(self, cfg: DFTConfig):
        self.cfg = cfg

    def run(self, jobs, on_result, on_dispatch=None, on_batch=None):
        for key, atoms in jobs:
            if on_dispatch is not None:
                on_dispatch(key)
            on_result(key, atoms, labeller.label(atoms, self.cfg))
            if on_batch is not None:
                on_batch()

    def shutdown(self) -> None:
        pass


def label_structures(
    items: Iterable[tuple[Atoms, str]],
    rnd: int,
    pool,
    store: LabelStore,
    ledger: Ledger,
    cfg: DFTConfig,
    per_round_limit: bool = True,
    on_label: Callable[[StoredLabel], None] | None = None,
) -> LabelReport:
    """Label ``(atoms, origin)`` items within the ledger; returns what was stored and reused."""
    report = LabelReport()
    tokens: dict[str, tuple[int, str]] = {}
    t0 = time.perf_counter()

    def jobs():
        seen = set()
        for atoms, origin in items:
            key = content_key(atoms, cfg)
            if key in seen:
                continue
            seen.add(key)
            if store.has(key):  # a set lookup; the row is read only when it is there
                report.reused.append(store.get(key))
                continue
            token = ledger.reserve(rnd, per_round_limit=per_round_limit)
            if token is None:
                report.budget_exhausted = True
                return
            tokens[key] = (token, origin)
            yield key, atoms

    arrived: list[Arrived] = []  # this ray.wait's results, stored together in on_batch

    def on_result(key: str, atoms: Atoms, result: LabelResult) -> None:
        token, origin = tokens.pop(key)
        arrived.append((token, key, atoms, result, rnd, origin))

    def on_batch() -> None:
        for (*_, result, _, _), stored in zip(arrived, store_and_settle(store, ledger, arrived), strict=True):
            report.stored.append(stored)
            report.dft_seconds += result.wall_s
            if on_label is not None:
                on_label(stored)
        arrived.clear()

    stats = pool.run(jobs(), on_result, on_batch=on_batch)
    for token, _ in tokens.values():  # never dispatched or lost: give the slots back
        ledger.release(token)
    report.wall_s = time.perf_counter() - t0
    report.utilisation = getattr(stats, "utilisation", 1.0) if stats is not None else 1.0
    report.resubmitted = getattr(stats, "resubmitted", 0) if stats is not None else 0
    return report


def round0_failure_summary(labels: list, usable: int, initial: int) -> str:
    """One line: how many round-0 labels failed and why, grouped (``SCF not converged x26``)."""
    reasons: dict[str, int] = {}
    for s in labels:
        if s.round == 0 and s.status is not Status.OK:
            why = "SCF not converged" if s.status is Status.FAILED else f"rejected ({s.reason.split(' (')[0]})"
            reasons[why] = reasons.get(why, 0) + 1
    n0 = sum(1 for s in labels if s.round == 0)
    grouped = ", ".join(f"{why} x{n}" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    return (
        f"round 0: {sum(reasons.values())}/{n0} labels failed ({grouped or 'no failures'}); {usable} usable "
        f"training labels, need at least half of system.initial_labels ({initial}): check system and dft settings"
    )


def pick_errors(picks: list, store: LabelStore, dft_cfg: DFTConfig, score_key: str) -> dict:
    """Of a round's labelled picks: ``entropy``, the strategy's ``score`` (``score_key`` in
    each frame's info), and ``error`` = |E_model - E_DFT| / n_atoms (eV/atom)."""
    out = {"entropy": [], "score": [], "error": []}
    for a in picks:
        stored = store.get(content_key(a, dft_cfg))
        if stored is not None and stored.status is Status.OK:
            out["entropy"].append(a.info.get("energy_entropy", np.nan))
            out["score"].append(a.info.get(score_key, np.nan))
            out["error"].append(abs(a.info["model_energy"] - stored.atoms.get_potential_energy()) / len(a))
    return {k: np.asarray(v, dtype=float) for k, v in out.items()}
