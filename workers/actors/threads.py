"""Thread sizing for Ray actors (no ray import: the actors call it in their own process)."""

from __future__ import annotations

import os


def limit_threads(n: int) -> None:
    """Pin torch/OpenMP threads to what the actor reserved (oversubscribing 2 cores is 10x slower)."""
    n = max(1, int(n))
    os.environ["OMP_NUM_THREADS"] = str(n)
    import torch

    torch.set_num_threads(n)
