"""The campaign's Ray side: connect, start the actors once, and run each phase on them.

Locally the phases run one after another, so actors hold logical CPUs for their lifetime
and the local Ray is given enough logical CPUs for all of them, while each actor's
threads match what it reserved. On a cluster, actors request real resources: the
trainer and samplers a GPU when the cluster has one, DFT workers ``dft.threads`` CPUs.
"""

from __future__ import annotations

import os
import signal
import threading

import ray

from orchestrator.config import CampaignConfig
from workers.actors import (
    DFTPool,
    SamplerActor,
    TrainerActor,
    compute_options,
    model_payload,
    sample_with_actors,
)


def logical_cpus(cfg: CampaignConfig) -> int:
    r = cfg.ray
    return r.dft_workers * cfg.dft.threads + r.trainer_cpus + r.samplers * r.sampler_cpus


def connect(cfg: CampaignConfig) -> None:
    """Join the configured cluster, the job's cluster (RAY_ADDRESS), or start a new local Ray
    (``address="local"``: never a stale cluster that an earlier ``ray start`` left on record)."""
    if ray.is_initialized():
        return
    handler = signal.getsignal(signal.SIGTERM)
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        cpus = max(logical_cpus(cfg), os.cpu_count() or 1)
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    # ray.init installs a SIGTERM handler that aborts the process; keep the caller's (the CLI
    # saves state and marks the MLflow runs KILLED on SIGTERM)
    if callable(handler) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


class Runtime:
    def __init__(self, cfg: CampaignConfig):
        connect(cfg)
        self.cfg = cfg
        has_gpu = ray.cluster_resources().get("GPU", 0) >= 1
        gpus = 1 if (has_gpu and cfg.ray.gpus == "auto") else 0
        self.device = "cuda" if gpus else "cpu"
        # DFT workers start first: PySCF imports overlap with the first training
        self.pool = DFTPool(cfg.dft_config(), cfg.ray.dft_workers)
        self.trainer = TrainerActor.options(**compute_options(cfg.ray.trainer_cpus, gpus)).remote(cfg.ray.trainer_cpus)
        sampler_gpus = gpus / cfg.ray.samplers if gpus else 0
        self.samplers = [
            SamplerActor.options(**compute_options(cfg.ray.sampler_cpus, sampler_gpus)).remote(
                cfg.ray.sampler_cpus, self.device
            )
            for _ in range(cfg.ray.samplers)
        ]

    def train(self, structures: list, warm_payload: dict | None, optimizer_state, epochs: int, seed: int) -> dict:
        cfg = self.cfg.training.model_copy(update={"epochs": epochs, "device": self.device, "seed": seed})
        task = self.trainer.train.remote(
            cfg.to_dict(), self.cfg.model.to_dict(), structures, warm_payload, optimizer_state
        )
        return ray.get(task)

    def harmonic(self, atoms):
        """The seed's DFT minimum and Hessian (``HarmonicReference``), on a DFT worker."""
        return ray.get(self.pool.workers[0].harmonic.remote(atoms))

    def sample(self, model, starts: list, md_cfg) -> list:
        ref = ray.put(model_payload(model))  # shipped once per round via the object store
        return sample_with_actors(self.samplers, ref, starts, md_cfg)

    def shutdown(self) -> None:
        self.pool.shutdown()
        for actor in [self.trainer, *self.samplers]:
            ray.kill(actor)
