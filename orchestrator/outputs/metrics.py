"""Calibration metrics for uncertainty signals (pure numpy): does high uncertainty mean high error?"""

from __future__ import annotations

import numpy as np


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks starting at 1, ties get their average rank (as scipy's ``rankdata``)."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=float)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation; nan when undefined (fewer than 2 points or a constant input)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for flagging ``positive`` (Mann-Whitney, ties = 1/2)."""
    scores, positive = np.asarray(scores, dtype=float), np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def worst_fraction(errors: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the ``fraction`` largest errors (at least one)."""
    errors = np.asarray(errors, dtype=float)
    k = max(1, int(round(fraction * len(errors))))
    mask = np.zeros(len(errors), dtype=bool)
    mask[np.argsort(-errors, kind="stable")[:k]] = True
    return mask


def calibration(uncertainty: np.ndarray, errors: np.ndarray) -> dict:
    """Spearman of uncertainty vs error, and AUROC for flagging errors above the median
    (pairs with a non-finite value are left out; nan when fewer than 2 remain)."""
    uncertainty, errors = np.asarray(uncertainty, dtype=float), np.asarray(errors, dtype=float)
    finite = np.isfinite(uncertainty) & np.isfinite(errors)
    uncertainty, errors = uncertainty[finite], errors[finite]
    if len(errors) < 2:
        return {"spearman": float("nan"), "auroc": float("nan")}
    return {
        "spearman": spearman(uncertainty, errors),
        "auroc": auroc(uncertainty, errors > np.median(errors)),
    }
