"""Joining Ray and reading the cluster: where the driver connects, what the nodes have and
have free, how many threads a local asynchronous campaign can give its actors."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading

import ray

from orchestrator.cluster.resources import ClusterView
from orchestrator.config import CampaignConfig


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


def has_autoscaler() -> bool:
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
        autoscaling = has_autoscaler()
    return ClusterView(tuple(dict(n["Resources"]) for n in nodes), free, autoscaling)


def first_line(err: BaseException) -> str:
    """An error's first line (160 characters at most), or its type when it has no text."""
    text = str(err).strip()
    return text.splitlines()[0][:160] if text else type(err).__name__


def kill_actors(actors) -> None:
    if actors is None:
        return
    for a in actors if isinstance(actors, list) else [actors]:
        with contextlib.suppress(ray.exceptions.RayError, ValueError):
            ray.kill(a)


def gpu_resources(view: ClusterView) -> dict:
    return {"GPU": view.largest("GPU")} if view.total("GPU") else {}
