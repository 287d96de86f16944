"""The campaign's Ray side: connect, acquire each phase's actors, run the phase on them.

Two ways to hold resources:

* **local** (catal started its own Ray): the phases run one after another on this machine,
  so the actors are created once and kept, and the local Ray is given enough logical CPUs
  for all of them while each actor's threads match what it reserved;
* **cluster** (``ray.address`` or ``RAY_ADDRESS``: ``ray job submit``, ``ray submit``): each
  phase acquires its actors and releases them when it ends, so DFT CPUs are free while the
  trainer runs and the trainer's GPU is free during DFT. The config's counts are upper
  bounds (``orchestrator.resources``); the DFT pool is sized to what is free. An actor that
  waits for room says so every ``WAIT_REPORT_S``; one that no node can hold is refused at
  start in one line. A trainer or sampler lost with its node is re-created elsewhere and its
  phase rerun (training and MD are pure functions of their inputs); DFT jobs move to the
  workers left (``DFTPool``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable

import ray

from orchestrator.config import CampaignConfig
from orchestrator.console import Reporter
from orchestrator.resources import ClusterView, Demand, PhasePlan, check_plan, dft_workers_now, plan_phases
from workers.actors import (
    DFTPool,
    SamplerActor,
    TrainerActor,
    compute_options,
    sample_with_actors,
)
from workers.errors import ClusterTooSmall
from workers.model.checkpoint import model_payload

WAIT_REPORT_S = 30.0  # how often a phase waiting for resources says so
PHASE_ATTEMPTS = 5  # a phase whose actor dies (node lost) is rerun on a new actor this often
RETRY_BACKOFF_S = 5.0  # first wait before a rerun, doubled each time: Ray takes ~15-30 s to mark
# a lost node dead, and until then may place the new actor on it again


def logical_cpus(cfg: CampaignConfig) -> int:
    r = cfg.ray
    return r.dft_workers * cfg.dft.threads + r.trainer_cpus + r.samplers * r.sampler_cpus


def cluster_address(cfg: CampaignConfig) -> str | None:
    return cfg.ray.address or os.environ.get("RAY_ADDRESS")


def fit_async_threads(cfg: CampaignConfig, cores: int) -> tuple[CampaignConfig, str | None]:
    """Locally, an asynchronous campaign runs DFT, training and MD at once: when their threads
    exceed the cores (the demo gives trainer and sampler 2 each, for phases that run one at a
    time), trainer and samplers drop to one thread each (oversubscribed cores run ~10x
    slower). Returns the config to run and a note saying so (None when unchanged)."""
    if cfg.campaign.mode != "async" or cluster_address(cfg) is not None or logical_cpus(cfg) <= cores:
        return cfg, None
    r = cfg.ray
    if r.trainer_cpus == 1 and r.sampler_cpus == 1:
        return cfg, None
    fitted = cfg.model_copy(update={"ray": r.model_copy(update={"trainer_cpus": 1, "sampler_cpus": 1})})
    return fitted, (
        f"async runs DFT ({r.dft_workers} x {cfg.dft.threads} threads), the trainer ({r.trainer_cpus}) and "
        f"{r.samplers} sampler(s) ({r.sampler_cpus} each) at once on {cores} cores: trainer and samplers "
        f"use 1 thread each"
    )


def connect(cfg: CampaignConfig) -> None:
    """Join the configured cluster, the job's cluster (RAY_ADDRESS), or start a new local Ray
    (``address="local"``: never a stale cluster that an earlier ``ray start`` left on record)."""
    if ray.is_initialized():
        return
    handler = signal.getsignal(signal.SIGTERM)
    address = cluster_address(cfg)
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        cpus = max(logical_cpus(cfg), os.cpu_count() or 1)
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    # ray.init installs a SIGTERM handler that aborts the process; keep the caller's (the CLI
    # saves state and marks the MLflow runs KILLED on SIGTERM)
    if callable(handler) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def _has_autoscaler() -> bool:
    """Whether an autoscaler may add nodes: its status names node types of a launcher config
    (``ray up``, KubeRay); a plain ``ray start`` cluster reports one ``node_<id>`` type per node."""
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get("__autoscaling_status")
    if not raw:
        return False
    try:
        types = json.loads(raw)["autoscaler_report"]["node_type_mapping"].values()
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    return any(not str(t).startswith("node_") for t in types)


def cluster_view(autoscaling: bool | None = None) -> ClusterView:
    """The alive nodes' totals and free resources, as Ray reports them now."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    try:
        from ray._private.state import available_resources_per_node

        free_by_id = available_resources_per_node()
        free = tuple(free_by_id.get(n["NodeID"], {}) for n in nodes)
    except (ImportError, AttributeError):  # private API moved: one pool of free resources
        free = (ray.available_resources(),)
    if autoscaling is None:
        autoscaling = _has_autoscaler()
    return ClusterView(tuple(dict(n["Resources"]) for n in nodes), free, autoscaling)


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
        cap = view if self.per_phase else ClusterView(({"CPU": float(logical_cpus(cfg)), **_gpus(view)},))
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
        self._pool: DFTPool | None = None
        self._trainer = None
        self._samplers: list = []
        self._final = None  # ObjectRef of a final model training started early (async)
        if not self.per_phase:  # DFT workers first: PySCF imports overlap with the first training
            self._pool = DFTPool(cfg.dft_config(), r.dft_workers)

    def start_async_actors(self) -> None:
        """Locally in async mode, once the DFT workers are up: the trainer and samplers
        started (not waited for) and held all along, so their torch imports overlap round
        0's DFT. Started with the pool instead, they slowed its start-up by ~2 s on 2 cores."""
        if not self.per_phase and self.cfg.campaign.mode == "async":
            self._trainer = self._trainer or self._new_trainer(wait=False)
            self._samplers = self._samplers or self._new_samplers(wait=False)

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
                for a in actors:
                    ray.kill(a)
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
        if self._pool is not None:
            yield self._pool
            return
        n = dft_workers_now(self.plan, cluster_view(self.autoscaling))
        pool = DFTPool(self.cfg.dft_config(), n, can_replace=self._room_for_dft)
        try:
            # a worker lost while starting (its node died) is replaced by the pool when its
            # first job finds it dead
            with contextlib.suppress(ray.exceptions.RayActorError):
                self.wait_placed(pool.workers, self.plan.dft, lambda w: w.pid.remote())
            yield pool
        finally:
            pool.shutdown()

    def _room_for_dft(self) -> bool:
        """Whether a lost DFT worker's replacement can start now (else the pool shrinks)."""
        return cluster_view(self.autoscaling).fits_now(self.plan.dft)

    def _new_trainer(self, wait: bool = True):
        d = self.plan.trainer
        actor = TrainerActor.options(**compute_options(d.cpus, d.gpus)).remote(int(d.cpus))
        if wait:
            self.wait_placed([actor], d, lambda a: a.ready.remote())
        return actor

    def _new_samplers(self, wait: bool = True) -> list:
        return self._new_samplers_n(self.plan.samplers, wait)

    def _new_samplers_n(self, n: int, wait: bool = True) -> list:
        d = self.plan.sampler
        actors = [
            SamplerActor.options(**compute_options(d.cpus, d.gpus)).remote(int(d.cpus), self.device) for _ in range(n)
        ]
        if wait:
            self.wait_placed(actors, d, lambda a: a.ready.remote())
        return actors

    def _phase(self, what: str, acquire: Callable, run: Callable, keep_attr: str):
        """Run ``run(actors)``; an actor lost mid-phase (its node died) is replaced and the
        phase rerun, at most ``PHASE_ATTEMPTS`` times. Local actors are kept, cluster ones
        released."""
        for attempt in range(1, PHASE_ATTEMPTS + 1):
            try:
                setattr(self, keep_attr, getattr(self, keep_attr) or acquire())
                return run(getattr(self, keep_attr))
            except ray.exceptions.RayActorError as err:  # also died while being placed
                _kill(getattr(self, keep_attr))
                setattr(self, keep_attr, None)
                if attempt == PHASE_ATTEMPTS:
                    raise
                cause = first_line(err)
                pause = RETRY_BACKOFF_S * 2 ** (attempt - 1)
                self.say.say(f"  [yellow]{what} lost[/] ({cause}); re-creating it in {pause:g} s (try {attempt + 1})")
                time.sleep(pause)
            finally:
                if self.per_phase and getattr(self, keep_attr) is not None:
                    _kill(getattr(self, keep_attr))
                    setattr(self, keep_attr, None)
        raise AssertionError("unreachable")

    # -- phases ----------------------------------------------------------------------------
    def _train_args(self, structures: list, warm_payload: dict | None, optimizer_state, epochs: int, seed: int):
        cfg = self.cfg.training.model_copy(update={"epochs": epochs, "device": self.device, "seed": seed})
        return (cfg.to_dict(), self.cfg.model.to_dict(), structures, warm_payload, optimizer_state)

    def train(self, structures: list, warm_payload: dict | None, optimizer_state, epochs: int, seed: int) -> dict:
        args = self._train_args(structures, warm_payload, optimizer_state, epochs, seed)
        return self._phase("the trainer", self._new_trainer, lambda t: ray.get(t.train.remote(*args)), "_trainer")

    def sample(self, model, starts: list, md_cfg) -> list:
        ref = ray.put(model_payload(model))  # shipped once per round via the object store
        return self._phase(
            "a sampler", self._new_samplers, lambda s: sample_with_actors(s, ref, starts, md_cfg), "_samplers"
        )

    # -- the asynchronous campaign: every actor held at once, work started without waiting ----
    @contextlib.contextmanager
    def async_actors(self):
        """Trainer, samplers and the DFT pool held together (yields the pool); on a cluster
        the trainer and samplers are placed first and the pool sized to the CPUs left, and
        released after. Locally they were started with the pool (their room is certain) and
        stay for the final model."""
        try:
            self._trainer = self._trainer or self._new_trainer(wait=self.per_phase)
            self._samplers = self._samplers or self._new_samplers(wait=self.per_phase)
            with self.dft_pool() as pool:
                yield pool
        finally:  # on a cluster released (the trainer once the final model it may run is back)
            if self.per_phase:
                if self._final is None:
                    _kill(self._trainer)
                    self._trainer = None
                _kill(self._samplers)
                self._samplers = []

    def start_training(self, structures: list, warm_payload: dict | None, optimizer_state, epochs: int, seed: int):
        """A training run started on the held trainer: its ObjectRef (``out`` of ``train``)."""
        return self._trainer.train.remote(*self._train_args(structures, warm_payload, optimizer_state, epochs, seed))

    def start_final_training(self, *args) -> None:
        """The final model started on the held trainer (``start_training``'s arguments) while
        the last labels are still in flight: they join it through ``feed_trainer``."""
        self._final = self.start_training(*args)

    def final_training(self) -> dict | None:
        """The final model started by ``start_final_training`` (``train``'s result), or None
        (none started, or its trainer was lost: the caller trains it again)."""
        if self._final is None:
            return None
        ref, self._final = self._final, None
        try:
            return ray.get(ref)
        except ray.exceptions.RayActorError as err:
            self.say.say(f"  [yellow]the trainer lost[/] ({first_line(err)}); training again")
            _kill(self._trainer)
            self._trainer = None
            return None
        finally:
            if self.per_phase:
                _kill(self._trainer)
                self._trainer = None

    def feed_trainer(self, structures: list) -> None:
        """New labels for the held trainer's running training (taken in at its next epoch)."""
        if structures:
            self._trainer.add.remote(structures)

    def running_model(self, model: bool = True) -> tuple[dict | None, dict] | None:
        """``(model payload, epoch row)`` of the held trainer's running training as of its
        last epoch, or None (none running, no epoch finished yet, or the trainer was lost:
        its training's ref says so, and it is replaced there); ``model`` False: the row only."""
        try:
            return ray.get(self._trainer.latest.remote(model))
        except ray.exceptions.RayActorError:
            return None

    def stop_training(self) -> None:
        """The held trainer's running training ends after its current epoch (its ref returns)."""
        self._trainer.stop.remote()

    def start_md(self, index: int, payload_ref, starts: list, md_cfg, replica_offset: int):
        """MD started on sampler ``index`` with the model in ``payload_ref``: its ObjectRef (frames)."""
        sampler = self._samplers[index]
        sampler.set_model.remote(payload_ref)  # an actor runs its calls in order
        return sampler.run.remote(starts, md_cfg.to_dict(), replica_offset)

    @property
    def n_samplers(self) -> int:
        return len(self._samplers)

    def replace_trainer(self) -> None:
        """The held trainer died (its node was lost): a new one in its place."""
        _kill(self._trainer)
        self._trainer = self._new_trainer()

    def replace_sampler(self, index: int) -> None:
        _kill(self._samplers[index])
        self._samplers[index] = self._new_samplers_n(1)[0]

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        _kill(self._trainer)
        _kill(self._samplers)


def first_line(err: BaseException) -> str:
    """An error's first line (160 characters at most), or its type when it has no text."""
    text = str(err).strip()
    return text.splitlines()[0][:160] if text else type(err).__name__


def _kill(actors) -> None:
    if actors is None:
        return
    for a in actors if isinstance(actors, list) else [actors]:
        with contextlib.suppress(ray.exceptions.RayError, ValueError):
            ray.kill(a)


def _gpus(view: ClusterView) -> dict:
    return {"GPU": view.largest("GPU")} if view.total("GPU") else {}
