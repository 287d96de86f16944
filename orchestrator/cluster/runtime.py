"""The campaign's Ray side: acquire each phase's actors, run the phase on them.

Two ways to hold resources:

* **local** (catal started its own Ray): the phases run one after another on this machine,
  so the actors are created once and kept, and the local Ray is given enough logical CPUs
  for all of them while each actor's threads match what it reserved;
* **cluster** (``ray.address`` or ``RAY_ADDRESS``: ``ray job submit``, ``ray submit``): each
  phase acquires its actors and releases them when it ends, so DFT CPUs are free while the
  trainer runs and the trainer's GPU is free during DFT. The config's counts are upper
  bounds (``orchestrator.cluster.resources``); the DFT pool is sized to what is free. An actor
  that waits for room says so every ``WAIT_REPORT_S``; one that no node can hold is refused at
  start in one line. A trainer or sampler lost with its node is re-created elsewhere and its
  phase rerun (training and MD are pure functions of their inputs); DFT jobs move to the
  workers left (``DFTPool``). The asynchronous loop's held actors: ``orchestrator.cluster.held``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import ray

from orchestrator.cluster.connect import (
    cluster_address,
    cluster_view,
    connect,
    first_line,
    fit_async_threads,
    gpu_resources,
    kill_actors,
    logical_cpus,
)
from orchestrator.cluster.resources import ClusterView, Demand, PhasePlan, check_plan, dft_workers_now, plan_phases
from orchestrator.config import CampaignConfig
from orchestrator.outputs.console import Reporter
from workers.actors import DFTPool, SamplerActor, TrainerActor, compute_options, sample_with_actors
from workers.errors import ClusterTooSmall
from workers.model.checkpoint import model_payload

WAIT_REPORT_S = 30.0  # how often a phase waiting for resources says so
PHASE_ATTEMPTS = 5  # a phase whose actor dies (node lost) is rerun on a new actor this often
RETRY_BACKOFF_S = 5.0  # first wait before a rerun, doubled each time: Ray takes ~15-30 s to mark
# a lost node dead, and until then may place the new actor on it again


@dataclass
class Slot:
    """Where a phase's actor (or list of actors) is held between phases; None: none held."""

    actors: Any = None


class Runtime:
    def __init__(self, cfg: CampaignConfig, say: Reporter | None = None):
        self.say = say or Reporter()
        cfg, note = fit_async_threads(cfg, os.cpu_count() or 1)
        if note:
            self.say.say(f"  [yellow]note[/]: {note}")
        connect(cfg)
        self.cfg = cfg
        self.per_phase = cluster_address(cfg) is not None
        view = cluster_view(autoscaling=None if self.per_phase else False)
        self.autoscaling = view.autoscaling
        use_gpu = view.total("GPU") >= 1 and cfg.ray.gpus == "auto"
        self.device = "cuda" if use_gpu else "cpu"
        r = cfg.ray
        cap = view if self.per_phase else ClusterView(({"CPU": float(logical_cpus(cfg)), **gpu_resources(view)},))
        self.plan: PhasePlan = plan_phases(
            cap, cfg.dft.threads, cfg.dft.backend == "gpu", r.dft_workers, r.trainer_cpus, r.samplers,
            r.sampler_cpus, use_gpu,
        )  # fmt: skip
        problems = check_plan(self.plan, view if self.per_phase else cap)
        if problems:
            raise ClusterTooSmall("; ".join(problems))
        if self.per_phase:
            wait = " (an autoscaler may add nodes)" if self.autoscaling else ""
            self.say.say(f"  cluster: {view.describe()}{wait}")
            self.say.say(f"  per phase: {self.plan.describe()}; held only while the phase runs")
            for note in self.plan.notes:
                self.say.say(f"  [yellow]note[/]: {note}")
        self.trainer, self.samplers = Slot(), Slot()
        self.held = None  # the asynchronous loop's HeldActors while it runs (and its final model after)
        # DFT workers first: PySCF imports overlap with the first training
        self.pool: DFTPool | None = None if self.per_phase else DFTPool(cfg.dft_config(), r.dft_workers)

    def start_async_actors(self) -> None:
        """Locally in async mode, once the DFT workers are up: the trainer and samplers
        started (not waited for) and held all along, so their torch imports overlap round
        0's DFT. Started with the pool instead, they slowed its start-up by ~2 s on 2 cores."""
        if not self.per_phase and self.cfg.campaign.mode == "async":
            self.trainer.actors = self.trainer.actors or self.new_trainer(wait=False)
            self.samplers.actors = self.samplers.actors or self.new_samplers(self.plan.samplers, wait=False)

    # -- acquiring actors --------------------------------------------------------------------
    def wait_placed(self, actors: list, demand: Demand, ready: Callable) -> None:
        """Block until every actor is constructed, saying every ``WAIT_REPORT_S`` what is
        awaited; give up after ``ray.placement_timeout_s`` with one line."""
        pending = {ready(a): a for a in actors}
        t0 = time.monotonic()
        while pending:
            done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=WAIT_REPORT_S)
            for ref in done:
                pending.pop(ref)
                ray.get(ref)  # an actor that failed to start raises here
            if not pending:
                return
            waited = time.monotonic() - t0
            view = cluster_view(self.autoscaling)
            free = sum(f.get("CPU", 0.0) for f in view.free)
            who = "the autoscaler to add a node" if self.autoscaling else "other work to free resources"
            if waited >= self.cfg.ray.placement_timeout_s:
                kill_actors(actors)
                raise ClusterTooSmall(
                    f"{demand.what} ({demand.text()}) not placed after {waited:.0f} s; this cluster has "
                    f"{view.describe()}, {free:g} CPUs free"
                )
            self.say.say(
                f"  waiting {waited:.0f} s for {len(pending)} x {demand.what} ({demand.text()}): "
                f"{free:g} CPUs free on {view.describe()}; waiting for {who}"
            )

    @contextlib.contextmanager
    def dft_pool(self):
        """The DFT pool for one labelling phase (kept for the campaign when local)."""
        if self.pool is not None:
            yield self.pool
            return
        n = dft_workers_now(self.plan, cluster_view(self.autoscaling))
        pool = DFTPool(self.cfg.dft_config(), n, can_replace=self.room_for_dft)
        try:
            # a worker lost while starting (its node died) is replaced by the pool when its
            # first job finds it dead
            with contextlib.suppress(ray.exceptions.RayActorError):
                self.wait_placed(pool.workers, self.plan.dft, lambda w: w.pid.remote())
            yield pool
        finally:
            pool.shutdown()

    def room_for_dft(self) -> bool:
        """Whether a lost DFT worker's replacement can start now (else the pool shrinks)."""
        return cluster_view(self.autoscaling).fits_now(self.plan.dft)

    def new_trainer(self, wait: bool = True):
        d = self.plan.trainer
        actor = TrainerActor.options(**compute_options(d.cpus, d.gpus)).remote(int(d.cpus))
        if wait:
            self.wait_placed([actor], d, lambda a: a.ready.remote())
        return actor

    def new_samplers(self, n: int, wait: bool = True) -> list:
        d = self.plan.sampler
        actors = [
            SamplerActor.options(**compute_options(d.cpus, d.gpus)).remote(int(d.cpus), self.device) for _ in range(n)
        ]
        if wait:
            self.wait_placed(actors, d, lambda a: a.ready.remote())
        return actors

    def _phase(self, what: str, acquire: Callable, run: Callable, slot: Slot):
        """Run ``run(actors)``; an actor lost mid-phase (its node died) is replaced and the
        phase rerun, at most ``PHASE_ATTEMPTS`` times. Local actors are kept, cluster ones
        released."""
        for attempt in range(1, PHASE_ATTEMPTS + 1):
            try:
                slot.actors = slot.actors or acquire()
                return run(slot.actors)
            except ray.exceptions.RayActorError as err:  # also died while being placed
                kill_actors(slot.actors)
                slot.actors = None
                if attempt == PHASE_ATTEMPTS:
                    raise
                pause = RETRY_BACKOFF_S * 2 ** (attempt - 1)
                self.say.say(f"  [yellow]{what} lost[/] ({first_line(err)}); re-creating it in {pause:g} s "
                             f"(try {attempt + 1})")  # fmt: skip
                time.sleep(pause)
            finally:
                if self.per_phase and slot.actors is not None:
                    kill_actors(slot.actors)
                    slot.actors = None
        raise AssertionError("unreachable")

    # -- phases ----------------------------------------------------------------------------
    def train_args(self, job) -> tuple:
        """A ``TrainingJob`` as ``TrainerActor.train``'s arguments, on this run's device."""
        cfg = self.cfg.training.model_copy(update={"epochs": job.epochs, "device": self.device, "seed": job.seed})
        return (cfg.to_dict(), self.cfg.model.to_dict(), job.structures, job.warm_payload, job.optimizer_state)

    def train(self, job) -> dict:
        """One model trained (a ``TrainingJob``): the trainer's result (payload, history...)."""
        args = self.train_args(job)
        return self._phase("the trainer", self.new_trainer, lambda t: ray.get(t.train.remote(*args)), self.trainer)

    def sample(self, model, starts: list, md_cfg) -> list:
        ref = ray.put(model_payload(model))  # shipped once per round via the object store
        acquire = partial(self.new_samplers, self.plan.samplers)
        return self._phase("a sampler", acquire, lambda s: sample_with_actors(s, ref, starts, md_cfg), self.samplers)

    def final_training(self) -> dict | None:
        """The final model the asynchronous loop started early, or None (see ``HeldActors``)."""
        return self.held.final_training() if self.held is not None else None

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
        kill_actors(self.trainer.actors)
        kill_actors(self.samplers.actors)
