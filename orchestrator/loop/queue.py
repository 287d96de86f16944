"""The asynchronous campaign's label queue (pure: no Ray, no store).

Candidates wait in a priority queue: frames sampled by the newest model's MD first (best
score first among them; those of older models' MD, re-scored, only when none wait, so DFT
labels what the newest model explores, as a round would, yet never waits for it). Each
dispatch reserves a budget slot in the ledger first (no slot, no dispatch), so charged +
reserved never exceeds a limit whatever order results come back in. A structure (content
key) is queued, in flight or done, never two of these at once, and once done it is never
dispatched again. A job whose worker died goes back to the queue with its reservation
released; a new model re-scores what is queued (``rescore``), and whatever it now deems
accurate falls out (``drop_below``).
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field

from ase import Atoms

from orchestrator.records.budget import Ledger

TOP = math.inf  # score of candidates served before any model-ranked pick (hold-out, audit frames)
FILLER = -math.inf  # score of candidates served only when nothing else waits


@dataclass
class Candidate:
    key: str  # content key (structure + DFT settings)
    atoms: Atoms
    score: float  # the newest model's uncertainty; higher is served first
    origin: str  # md / audit / holdout / seed (filler drawn like the initial set)
    generation: int  # the model that ranked it; its label is stored with this round
    source: int = -1  # the model whose MD sampled it (default: ``generation``); newer first

    def __post_init__(self):
        if self.source < 0:
            self.source = self.generation

    def priority(self) -> tuple:
        """Heap order (smallest first): TOP, then newer MD source, then higher score, FILLER last."""
        tier = math.inf if self.score == TOP else -math.inf if self.score == FILLER else self.source
        return (-tier, -self.score)


@dataclass
class LabelQueue:
    ledger: Ledger
    capacity: int  # model-ranked candidates kept (the best by score); TOP/FILLER ones always kept
    done: set[str] = field(default_factory=set)  # keys with a stored label (never dispatched again)
    pending: dict[str, Candidate] = field(default_factory=dict)
    in_flight: dict[str, tuple[int, Candidate]] = field(default_factory=dict)  # key -> (token, candidate)
    _heap: list = field(default_factory=list)  # (*priority, tie, key, score); stale ones skipped on pop
    _tie: itertools.count = field(default_factory=itertools.count)

    def __len__(self) -> int:
        return len(self.pending)

    def ranked(self, source: int = 0) -> int:
        """Model-ranked candidates queued (not TOP / FILLER) sampled by model ``source`` or newer."""
        return sum(1 for c in self.pending.values() if c.score not in (TOP, FILLER) and c.source >= source)

    def known(self, key: str) -> bool:
        return key in self.done or key in self.pending or key in self.in_flight

    def offer(self, candidates: list[Candidate]) -> int:
        """Queue candidates not yet known (queued, in flight or done); returns how many joined.
        The queue is then trimmed to ``capacity`` model-ranked candidates."""
        added = 0
        for c in candidates:
            if self.known(c.key) or c.score != c.score:  # NaN: no score, no rank
                continue
            self.pending[c.key] = c
            heapq.heappush(self._heap, (*c.priority(), next(self._tie), c.key, c.score))
            added += 1
        self._trim()
        return added

    def rescore(self, scores: dict[str, float], generation: int) -> None:
        """The newest model's scores of queued candidates (missing or NaN: dropped); TOP and
        FILLER candidates keep their place."""
        for key, c in list(self.pending.items()):
            if c.score in (TOP, FILLER):
                continue
            s = scores.get(key, math.nan)
            if s != s:
                del self.pending[key]
                continue
            c.score, c.generation = s, generation
        self._rebuild()

    def drop_below(self, threshold: float) -> int:
        """Drop model-ranked candidates the newest model scores below ``threshold`` (accurate
        now: stale picks); returns how many fell out."""
        stale = [k for k, c in self.pending.items() if c.score not in (TOP, FILLER) and c.score < threshold]
        for k in stale:
            del self.pending[k]
        if stale:
            self._rebuild()
        return len(stale)

    def dispatch(self) -> tuple[int, Candidate] | None:
        """The best queued candidate with a fresh reservation, or None (queue empty, or the
        ledger refused: the budget is spent or all of it is in flight)."""
        while self._heap and self._heap[0][3] not in self.pending:
            heapq.heappop(self._heap)  # stale entry (dropped, dispatched or re-scored)
        if not self._heap:
            return None
        top = self._heap[0]
        c = self.pending[top[3]]
        if top[4] != c.score:  # an entry from before a re-score: rebuilt lazily
            self._rebuild()
            return self.dispatch()
        token = self.ledger.reserve(c.generation, per_round_limit=False)
        if token is None:
            return None
        heapq.heappop(self._heap)
        del self.pending[c.key]
        self.in_flight[c.key] = (token, c)
        return token, c

    def complete(self, key: str) -> tuple[int, Candidate]:
        """A result arrived for ``key``: ``(token, candidate)`` to settle; ``key`` is done."""
        token, c = self.in_flight.pop(key)
        self.done.add(key)
        return token, c

    def lost(self, key: str) -> None:
        """The worker labelling ``key`` died: give its slot back and queue it again (trimmed to
        ``capacity`` like any offer: it stays if it still ranks among the best)."""
        token, c = self.in_flight.pop(key)
        self.ledger.release(token)
        self.pending[key] = c
        heapq.heappush(self._heap, (*c.priority(), next(self._tie), key, c.score))
        self._trim()

    def release_all(self) -> None:
        """Campaign stopping: reservations of jobs never finished go back to the ledger."""
        for token, _ in self.in_flight.values():
            self.ledger.release(token)
        self.in_flight.clear()

    def _rebuild(self) -> None:
        self._heap = [(*c.priority(), next(self._tie), k, c.score) for k, c in self.pending.items()]
        heapq.heapify(self._heap)
        self._trim()

    def _trim(self) -> None:
        if self.ranked() <= self.capacity:
            return
        ranked = [c for c in self.pending.values() if c.score not in (TOP, FILLER)]
        ranked.sort(key=Candidate.priority)  # the freshest, best-scored stay
        for c in ranked[self.capacity :]:
            del self.pending[c.key]


def stale(new_labels: int, epochs_run: int, retrain_every: int, epochs: int, share: float) -> bool:
    """Whether a warm generation should end now: ``retrain_every`` new labels have arrived
    since it started and it has run ``share`` of its ``epochs`` (``share`` 1: never cut)."""
    return share < 1.0 and new_labels >= retrain_every and epochs_run >= math.ceil(share * epochs)
