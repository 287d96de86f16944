"""The DFT workers and the pool that keeps them busy (Ray actors around ``workers.labeller``)."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import ray
from ase import Atoms

from workers import labeller
from workers.actors.threads import limit_threads
from workers.dft import DFTConfig, LabelResult
from workers.harmonic import HarmonicReference, harmonic_reference


@ray.remote
class DFTWorker:
    """Labels structures (``workers.labeller``); reserves ``cfg.threads`` CPUs (GPU: gpu4pyscf)."""

    def __init__(self, cfg: dict):
        self.cfg = DFTConfig.from_dict(cfg)
        limit_threads(self.cfg.threads)

    def label(self, atoms: Atoms) -> LabelResult:
        result = labeller.label(atoms, self.cfg)
        delay = self.cfg.emulated_latency_s
        if delay:  # benchmarks only: a slower, remote DFT node (timed and charged as DFT)
            time.sleep(delay)
            result.wall_s += delay
        return result

    def harmonic(self, atoms: Atoms) -> HarmonicReference:
        return harmonic_reference(atoms, self.cfg)

    def pid(self) -> int:
        return os.getpid()


def dft_worker_options(cfg: DFTConfig) -> dict:
    """Resources of one DFT actor. ``backend: gpu`` asks Ray for a GPU node (the driver may
    have none); the worker checks gpu4pyscf + CUDA on its own node when it labels."""
    gpus = 1 if cfg.backend == "gpu" else 0
    return {"num_cpus": cfg.threads, "num_gpus": gpus, "max_restarts": 0}


@dataclass
class PoolStats:
    labels: int = 0
    resubmitted: int = 0  # jobs re-sent after their worker died
    workers_replaced: int = 0
    wall_s: float = 0.0
    busy_s: float = 0.0  # sum of label wall times across workers
    n_workers: int = 1
    per_worker_busy_s: dict = field(default_factory=dict)

    @property
    def utilisation(self) -> float:
        """Busy time / (wall x workers): 1.0 means no worker ever waited for work."""
        return self.busy_s / max(self.wall_s * self.n_workers, 1e-9)

    @property
    def overhead_ms_per_label(self) -> float:
        """Idle worker time per label (dispatch, transfer, bookkeeping), in ms."""
        idle = max(self.wall_s * self.n_workers - self.busy_s, 0.0)
        return 1e3 * idle / max(self.labels, 1)


Job = tuple[str, Atoms]  # (content key, structure)


class DFTPool:
    """Keeps every DFT worker busy: bounded in-flight work, results in completion order.

    ``run`` pulls jobs lazily from an iterator (so the caller can reserve budget just
    before each dispatch) and keeps ``in_flight_per_worker`` tasks queued on each actor,
    so a worker starts its next label the moment it finishes one. If an actor dies
    mid-label (its process or its node), its unfinished jobs go to the workers left and it
    is replaced when ``can_replace()`` says there is room (else the pool shrinks; with no
    worker left, one replacement waits for room): each job yields exactly one result.
    """

    def __init__(
        self,
        cfg: DFTConfig,
        n_workers: int,
        in_flight_per_worker: int = 2,
        can_replace: Callable[[], bool] | None = None,
    ):
        if n_workers < 1:
            raise ValueError(f"a DFT pool needs at least one worker, got {n_workers}")
        self.cfg = cfg
        self.in_flight_per_worker = in_flight_per_worker
        self.can_replace = can_replace or (lambda: True)
        self._options = dft_worker_options(cfg)
        self.workers = [self._spawn() for _ in range(n_workers)]

    def _spawn(self):
        return DFTWorker.options(**self._options).remote(self.cfg.to_dict())

    def warm_up(self) -> None:
        """Wait until every actor is constructed (keeps start-up out of timings)."""
        ray.get([w.pid.remote() for w in self.workers])

    def shutdown(self) -> None:
        for w in self.workers:
            ray.kill(w)
        self.workers = []

    def harmonics(self, structures: list[Atoms]) -> list[HarmonicReference]:
        """Several seeds' DFT minima + Hessians, one per worker at a time (in order); one whose
        worker dies is done again through ``harmonic`` (moved to another worker)."""
        out: list[HarmonicReference] = []
        for start in range(0, len(structures), len(self.workers)):
            batch = structures[start : start + len(self.workers)]
            refs = [w.harmonic.remote(a) for w, a in zip(self.workers, batch, strict=False)]
            for atoms, ref in zip(batch, refs, strict=True):
                try:
                    out.append(ray.get(ref))
                except ray.exceptions.RayActorError:
                    out.append(self.harmonic(atoms))
        return out

    def harmonic(self, atoms: Atoms, attempts: int = 3) -> HarmonicReference:
        """A seed's DFT minimum + Hessian on one worker (moved to another if it dies, at most
        ``attempts`` times: a worker that dies on every try is out of memory, not unlucky)."""
        for attempt in range(attempts):
            try:
                return ray.get(self.workers[0].harmonic.remote(atoms))
            except ray.exceptions.RayActorError:
                if attempt == attempts - 1:
                    raise
                self._replace(self.workers[0], PoolStats())
        raise AssertionError("unreachable")

    def _replace(self, dead, stats: PoolStats) -> None:
        """Drop a dead worker; start a replacement when there is room or none is left."""
        if dead not in self.workers:
            return
        self.workers.remove(dead)
        if self.can_replace() or not self.workers:
            self.workers.append(self._spawn())
            stats.workers_replaced += 1

    # -- non-blocking use (the asynchronous campaign waits on these refs with others) ------
    def start(self) -> PoolStats:
        """Begin a stretch of work: the stats ``submit`` and ``collect`` update."""
        self._pending: dict = {}  # ObjectRef -> (job, worker)
        self._loads: dict = {}  # worker -> jobs in flight on it
        self.stats = PoolStats(n_workers=len(self.workers))
        self._t0 = time.perf_counter()
        return self.stats

    def has_room(self) -> bool:
        """Whether some worker has fewer than ``in_flight_per_worker`` jobs queued on it."""
        return any(self._loads.get(w, 0) < self.in_flight_per_worker for w in self.workers)

    def submit(self, job: Job) -> None:
        """Queue ``job`` on the least-loaded worker (call only when ``has_room``)."""
        w = min(self.workers, key=lambda w: self._loads.get(w, 0))
        self._pending[w.label.remote(job[1])] = (job, w)
        self._loads[w] = self._loads.get(w, 0) + 1

    def refs(self) -> list:
        """The labels in flight, to ``ray.wait`` on."""
        return list(self._pending)

    def in_flight(self) -> int:
        return len(self._pending)

    def collect(self, ready: list) -> tuple[list[tuple[Job, LabelResult]], list[Job]]:
        """Finished refs (from ``ray.wait``) as ``(done, lost)``: labelled jobs, and jobs whose
        worker died mid-label (to send again; the dead worker is replaced when there is room)."""
        done, lost = [], []
        for ref in ready:
            if ref not in self._pending:
                continue
            job, w = self._pending.pop(ref)
            self._loads[w] -= 1
            try:
                result: LabelResult = ray.get(ref)
            except ray.exceptions.RayActorError:
                self.stats.resubmitted += 1
                lost.append(job)
                if w in self.workers and self._is_dead(w):
                    self._replace(w, self.stats)
                continue
            self.stats.labels += 1
            self.stats.busy_s += result.wall_s
            key = self.workers.index(w) if w in self.workers else -1
            self.stats.per_worker_busy_s[key] = self.stats.per_worker_busy_s.get(key, 0.0) + result.wall_s
            done.append((job, result))
        self.stats.wall_s = time.perf_counter() - self._t0
        return done, lost

    def run(
        self,
        jobs: Iterable[Job],
        on_result: Callable[[str, Atoms, LabelResult], None],
        on_dispatch: Callable[[str], None] | None = None,
        on_batch: Callable[[], None] | None = None,
    ) -> PoolStats:
        """Label every job (pulled lazily, so the caller reserves budget just before each
        dispatch); ``on_result`` is called in completion order, once per job, and
        ``on_batch`` after the results that one ``ray.wait`` returned (e.g. one commit)."""
        stats = self.start()
        source: Iterator[Job] = iter(jobs)
        retry: deque[Job] = deque()
        exhausted = False

        def next_job() -> Job | None:
            nonlocal exhausted
            if retry:
                return retry.popleft()
            if exhausted:
                return None
            try:
                return next(source)
            except StopIteration:
                exhausted = True
                return None

        while True:
            while self.workers and self.has_room():  # every worker up to its in-flight bound
                job = next_job()
                if job is None:
                    break
                self.submit(job)
                if on_dispatch is not None:
                    on_dispatch(job[0])
            if not self._pending:
                break
            # block for one result, then take every other one already finished (one
            # ray.wait per batch, not per label: the head's dispatch rate with many workers)
            done, lost = self.collect(ready_now(self.refs()))
            retry.extend(lost)
            for job, result in done:
                on_result(job[0], job[1], result)
            if done and on_batch is not None:
                on_batch()
        stats.wall_s = time.perf_counter() - self._t0
        return stats

    def _is_dead(self, w) -> bool:
        try:
            ray.get(w.pid.remote(), timeout=30)
            return False
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            return True


def ready_now(refs: list, timeout: float | None = None) -> list:
    """Block until one of ``refs`` is done (or ``timeout``), then return every one done."""
    first, rest = ray.wait(refs, num_returns=1, timeout=timeout)
    if not first:
        return []
    more, _ = ray.wait(rest, num_returns=len(rest), timeout=0) if rest else ([], [])
    return [*first, *more]
