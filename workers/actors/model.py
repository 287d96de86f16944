"""Training and sampling actors: a trainer fed labels while it trains, samplers running MD."""

from __future__ import annotations

import concurrent.futures
import os
import queue
import threading

import ray

from workers.actors.threads import limit_threads


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
        self._torch.submit(limit_threads, threads).result()
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
        limit_threads(threads)
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
