"""Ray bindings: thin actors around pure functions, and the DFT worker pool.

The only package under ``workers/`` that imports ray. Each actor method is a few lines
calling a tested pure function; threads are sized to the CPUs the actor reserves
(``threads.limit_threads``). torch is imported where a method needs it: DFT workers never
load it. ``dft_pool``: the DFT workers and their pool; ``model``: the trainer and samplers.
"""

from workers.actors.dft_pool import DFTPool, DFTWorker, Job, PoolStats, dft_worker_options, ready_now
from workers.actors.model import SamplerActor, TrainerActor, compute_options, sample_with_actors
from workers.actors.threads import limit_threads

__all__ = [
    "DFTPool",
    "DFTWorker",
    "Job",
    "PoolStats",
    "SamplerActor",
    "TrainerActor",
    "compute_options",
    "dft_worker_options",
    "limit_threads",
    "ready_now",
    "sample_with_actors",
]
