"""What the campaign asks of a Ray cluster, and what it gets: pure arithmetic on node resources.

The config's counts (``ray.dft_workers``, ``ray.samplers``, ``ray.trainer_cpus``,
``ray.sampler_cpus``) are upper bounds. Each phase asks only for what it needs, capped to
what one node of the cluster can hold, and the DFT pool is sized to what is free when a
labelling phase starts. A demand that no node can ever hold (a DFT worker with more CPUs
than the largest node, a GPU on a cluster without one) is refused before anything runs,
in one line, unless an autoscaler may still add such a node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Demand:
    """One actor's resources: ``cpus`` and ``gpus`` on a single node."""

    what: str  # "a DFT worker", "the trainer", "a sampler"
    cpus: float
    gpus: float = 0.0

    def text(self) -> str:
        parts = [f"{_num(self.cpus)} CPU{'s' if self.cpus != 1 else ''}"]
        if self.gpus:
            parts.insert(0, f"{_num(self.gpus)} GPU{'s' if self.gpus != 1 else ''}")
        return " + ".join(parts)


@dataclass(frozen=True)
class ClusterView:
    """Alive nodes' total resources, the free resources per node now, and whether an
    autoscaler may add nodes (a cluster started by ``ray up`` or KubeRay)."""

    nodes: tuple[dict, ...]  # [{"CPU": 2.0, "GPU": 1.0, ...}] per alive node
    free: tuple[dict, ...] = ()  # free resources per alive node (same order), when known
    autoscaling: bool = False

    def total(self, key: str) -> float:
        return sum(n.get(key, 0.0) for n in self.nodes)

    def largest(self, key: str, on_nodes_with: str | None = None) -> float:
        values = [n.get(key, 0.0) for n in self.nodes if on_nodes_with is None or n.get(on_nodes_with, 0.0) > 0]
        return max(values, default=0.0)

    def fits(self, d: Demand) -> bool:
        """Whether some node's *total* resources hold ``d`` (it may have to wait its turn)."""
        return any(_holds(n, d) for n in self.nodes)

    def fits_now(self, d: Demand) -> bool:
        """Whether some node's *free* resources hold ``d`` now."""
        return any(_holds(f, d) for f in self.free)

    def describe(self) -> str:
        gpus = f", {_num(self.total('GPU'))} GPUs" if self.total("GPU") else ", no GPU"
        return (
            f"{len(self.nodes)} node{'s' if len(self.nodes) != 1 else ''}, {_num(self.total('CPU'))} CPUs{gpus}; "
            f"largest node {_num(self.largest('CPU'))} CPUs"
        )


def unplaceable(d: Demand, cluster: ClusterView) -> str | None:
    """One line when no alive node can ever hold ``d`` (None when one can)."""
    if cluster.fits(d):
        return None
    return f"{d.what} asks {d.text()} on one node; this cluster has {cluster.describe()}"


@dataclass(frozen=True)
class PhasePlan:
    """What each phase asks for on this cluster (the config's counts, capped)."""

    dft: Demand  # one DFT worker
    dft_workers_max: int
    trainer: Demand
    sampler: Demand
    samplers: int
    notes: tuple[str, ...] = ()  # where the config asked for more than the cluster holds

    def describe(self) -> str:
        return (
            f"DFT up to {self.dft_workers_max} x {self.dft.text()}, trainer {self.trainer.text()}, "
            f"{self.samplers} sampler{'s' if self.samplers != 1 else ''} x {self.sampler.text()}"
        )


def plan_phases(
    cluster: ClusterView,
    dft_threads: int,
    dft_gpu: bool,
    dft_workers: int,
    trainer_cpus: int,
    samplers: int,
    sampler_cpus: int,
    use_gpu: bool,
) -> PhasePlan:
    """Cap the trainer's and samplers' CPUs to the largest node that can run them (a GPU node
    when ``use_gpu``); DFT threads are not capped (they set a worker's memory and speed: a
    DFT worker that fits no node is refused by ``check_plan``)."""
    notes = []
    gpu_key = "GPU" if use_gpu else None
    room = int(cluster.largest("CPU", on_nodes_with=gpu_key))
    t_cpus = max(1, min(trainer_cpus, room)) if room else trainer_cpus
    if t_cpus < trainer_cpus:
        notes.append(f"trainer: {t_cpus} of the {trainer_cpus} CPUs asked (largest node has {room})")
    s_cpus = max(1, min(sampler_cpus, room)) if room else sampler_cpus
    if s_cpus < sampler_cpus:
        notes.append(f"samplers: {s_cpus} of the {sampler_cpus} CPUs asked each (largest node has {room})")
    gpus = 1.0 if use_gpu else 0.0
    return PhasePlan(
        dft=Demand("a DFT worker", float(dft_threads), 1.0 if dft_gpu else 0.0),
        dft_workers_max=dft_workers,
        trainer=Demand("the trainer", float(t_cpus), gpus),
        sampler=Demand("a sampler", float(s_cpus), gpus / samplers if use_gpu else 0.0),
        samplers=samplers,
        notes=tuple(notes),
    )


def check_plan(plan: PhasePlan, cluster: ClusterView) -> list[str]:
    """One line per demand that no node of this cluster can hold (empty when every phase can
    run; with an autoscaler such demands wait for a node instead, so nothing is refused)."""
    if cluster.autoscaling:
        return []
    problems = [unplaceable(d, cluster) for d in (plan.dft, plan.trainer, plan.sampler)]
    return [p for p in problems if p]


def dft_workers_now(plan: PhasePlan, cluster: ClusterView) -> int:
    """DFT workers to start for a labelling phase: as many as the free resources hold (per
    node), at most ``plan.dft_workers_max``, at least 1 (which then waits for room)."""
    fit = 0
    for free in cluster.free:
        by_cpu = math.floor(free.get("CPU", 0.0) / plan.dft.cpus + 1e-9) if plan.dft.cpus else plan.dft_workers_max
        by_gpu = math.floor(free.get("GPU", 0.0) / plan.dft.gpus + 1e-9) if plan.dft.gpus else by_cpu
        fit += max(0, min(by_cpu, by_gpu))
    return max(1, min(plan.dft_workers_max, fit))


def _holds(resources: dict, d: Demand) -> bool:
    return resources.get("CPU", 0.0) >= d.cpus and resources.get("GPU", 0.0) >= d.gpus


def _num(x: float) -> str:
    return f"{x:g}"
