"""How picks are drawn from a window's candidates (pure numpy): the top scores spread out by
farthest-point sampling, or a draw in proportion to the scores; never two copies of one structure."""

from __future__ import annotations

import math

import numpy as np

DUPLICATE_TOL = 1e-8  # embedding distance below which two frames are the same structure


def farthest_point_sampling(
    x: np.ndarray, k: int, first: int = 0, exclude_near: np.ndarray | None = None
) -> np.ndarray:
    """Greedy max-min picks from ``x [n, d]``; stops early once only duplicates remain.

    ``exclude_near [m, d]``: points already taken (labelled) that picks must keep away from.
    """
    n = x.shape[0]
    if n == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    dmin = np.full(n, np.inf)
    if exclude_near is not None and len(exclude_near):
        dmin = np.min(np.linalg.norm(x[:, None, :] - exclude_near[None, :, :], axis=-1), axis=1)
    picks = [first]
    dmin = np.minimum(dmin, np.linalg.norm(x - x[first], axis=1))
    while len(picks) < k:
        nxt = int(np.argmax(dmin))
        if dmin[nxt] <= DUPLICATE_TOL:
            break
        picks.append(nxt)
        dmin = np.minimum(dmin, np.linalg.norm(x - x[nxt], axis=1))
    return np.asarray(picks, dtype=np.int64)


def top_picks(scores: np.ndarray, embeddings: np.ndarray, eligible: np.ndarray, quota: int, top_k_factor: float,
              diversity: bool) -> np.ndarray:  # fmt: skip
    """The ``top_k_factor x quota`` highest-scoring ``eligible`` frames, then farthest-point
    sampling among them (``diversity``), or the highest-scoring distinct ones."""
    order = eligible[np.argsort(-scores[eligible], kind="stable")]
    if diversity:
        pool = order[: max(quota, math.ceil(top_k_factor * quota))]
        return pool[farthest_point_sampling(embeddings[pool], quota)] if len(pool) else pool
    return dedupe(order, embeddings, quota)


def proportional_order(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random order of ``scores`` in which each next item is drawn with probability
    proportional to its score among those left (Efraimidis-Spirakis keys ``log(u) / w``);
    non-positive scores come last, in random order (uniform when no score is positive)."""
    w = np.clip(np.asarray(scores, dtype=float), 0.0, None)
    u = rng.random(w.shape[0])
    if not (w > 0).any():
        return np.argsort(u)
    keys = np.full(w.shape[0], -np.inf)
    keys[w > 0] = np.log(u[w > 0]) / w[w > 0]
    return np.lexsort((u, keys))[::-1]


def dedupe(order: np.ndarray, embeddings: np.ndarray, quota: int) -> np.ndarray:
    """The first ``quota`` frames of ``order`` whose embeddings differ from every one taken before."""
    out: list[int] = []
    for i in order:
        if len(out) >= quota:
            break
        if all(np.linalg.norm(embeddings[i] - embeddings[j]) > DUPLICATE_TOL for j in out):
            out.append(int(i))
    return np.asarray(out, dtype=np.int64)
