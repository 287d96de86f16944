"""Ray bindings: thin actors around pure functions, and the DFT worker pool.

The only module under ``workers/`` that imports ray. Each actor method is a few lines
calling a tested pure function; threads are sized to the CPUs the actor reserves. torch is
imported where a method needs it: DFT workers never load it.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import ray
from ase import Atoms

from workers import labeller
from workers.dft import DFTConfig, LabelResult
from workers.harmonic import HarmonicReference, harmonic_reference


def _limit_threads(n: int) -> None:
    """Pin torch/OpenMP threads to what the actor reserved (oversubscribing 2 cores is 10x slower)."""
    n = max(1, int(n))
    os.environ["OMP_NUM_THREADS"] = str(n)
    import torch

    torch.set_num_threads(n)


@ray.remote
class DFTWorker:
    """Labels structures (``workers.labeller``); reserves ``cfg.threads`` CPUs (GPU: gpu4pyscf)."""

    def __init__(self, cfg: dict):
        self.cfg = DFTConfig.from_dict(cfg)
        _limit_threads(self.cfg.threads)

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


# -- training and sampling actors ----------------------------------------------------------
def compute_options(cpus: int, gpus: float) -> dict:
    return {"num_cpus": cpus, "num_gpus": gpus}


@ray.remote(max_concurrency=2)  # ``add``, ``stop`` and ``latest`` are served while ``train`` runs
class TrainerActor:
    """Trains the potential (warm start from the last round's payload) on its own CPUs/GPU;
    labels passed to ``add`` while it trains join the running training at its next epoch,
    ``stop`` ends it after the current one, and ``latest`` gives the running training's
    model as of its last epoch (what an asynchronous campaign's MD runs on)."""

    def __init__(self, threads: int = 1):
        # every training runs on this one thread, whichever of the actor's threads the call
        # came in on: each new caller thread got an OpenMP team of its own, and from the
        # second training on the idle team's spinning made 2-thread training 2.6x slower
        self._torch = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="train")
        self._torch.submit(_limit_threads, threads).result()
        self._arrived: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._snap: tuple | None = None  # (the running training's model payload, its last epoch's row)
        self._snap_lock = threading.Lock()

    def ready(self) -> int:
        return os.getpid()

    def add(self, structures: list) -> int:
        """Labelled structures for the running (or next) training; ones it has are skipped."""
        for a in structures:
            self._arrived.put(a)
        return len(structures)

    def stop(self) -> bool:
        """End the running training after its current epoch (a stop sent before it starts is lost)."""
        self._stop.set()
        return True

    def latest(self, model: bool = True) -> tuple[dict | None, dict] | None:
        """``(model payload, epoch row)`` of the running training as of its last epoch, or
        None (no training running, or none has finished an epoch yet); ``model`` False: the
        row only (payload None), nothing shipped but the row."""
        with self._snap_lock:
            snap = self._snap
        return snap if snap is None or model else (None, snap[1])

    def _keep(self, model, row: dict) -> None:
        """After each epoch: a copy of the model the running training would return."""
        from workers.model.checkpoint import model_payload

        snap = (model_payload(model, copy=True), dict(row))
        with self._snap_lock:
            self._snap = snap

    def _take(self) -> list:
        out = []
        while not self._arrived.empty():
            out.append(self._arrived.get_nowait())
        return out

    def train(self, train_cfg: dict, model_cfg: dict, structures: list, warm: dict | None, opt_state):
        """One training on the actor's torch thread (trainings never overlap on one actor)."""
        return self._torch.submit(self._train, train_cfg, model_cfg, structures, warm, opt_state).result()

    def _train(self, train_cfg: dict, model_cfg: dict, structures: list, warm: dict | None, opt_state):
        from workers.model.checkpoint import model_from_payload, model_payload
        from workers.model.potential import ModelConfig
        from workers.model.training import TrainConfig, train

        cfg = TrainConfig.from_dict(train_cfg)
        model = model_from_payload(warm, cfg.device, cfg.dtype) if warm is not None else None
        self._stop.clear()  # a stop meant for an earlier training
        try:
            result = train(
                cfg,
                structures,
                model=model,
                model_cfg=ModelConfig.from_dict(model_cfg),
                optimizer_state=opt_state,
                more=self._take,
                stop=self._stop.is_set,
                snapshot=self._keep,
            )
        finally:
            with self._snap_lock:
                self._snap = None
        return {
            "payload": model_payload(result.model),
            "history": result.history,
            "best_epoch": result.best_epoch,
            "support_clamped": result.support_clamped,
            "structures_per_s": result.structures_per_s,
            "val_metrics": result.val_metrics,
            "optimizer": result.optimizer_state,
        }


@ray.remote
class SamplerActor:
    """Holds a model copy (set once per round) and runs MD for its share of replicas."""

    def __init__(self, threads: int = 1, device: str = "auto"):
        _limit_threads(threads)
        self.device = device
        self.model = None

    def ready(self) -> int:
        return os.getpid()

    def set_model(self, payload: dict) -> bool:
        from workers.model.checkpoint import model_from_payload

        self.model = model_from_payload(payload, self.device)
        return True

    def run(self, seeds: list, md_cfg: dict, replica_offset: int) -> list:
        from workers.sampling import MDConfig, run_md

        if self.model is None:
            raise RuntimeError("SamplerActor.run called before set_model")
        return run_md(self.model, seeds, MDConfig.from_dict(md_cfg), replica_offset)


def sample_with_actors(samplers: list, payload_ref, seeds: list, md_cfg) -> list:
    """Ship the model once (object store), run every actor's share, gather frames."""
    from workers.sampling import replica_shares

    ray.get([s.set_model.remote(payload_ref) for s in samplers])
    tasks = [
        s.run.remote(seeds, md_cfg.model_copy(update={"replicas": count}).to_dict(), offset)
        for s, (offset, count) in zip(samplers, replica_shares(md_cfg.replicas, len(samplers)), strict=False)
    ]
    frames = []
    for part in ray.get(tasks):
        frames.extend(part)
    return frames
