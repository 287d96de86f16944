"""Figures people would rather look at than read: parity, entropy vs error, learning curve."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from workers.files import save_figure  # noqa: E402


def parity(path: Path, e_dft, e_model, f_dft, f_model, title: str) -> Path:
    """Energy (eV/atom, shifted to the DFT mean) and force-component parity plots."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    e_dft, e_model = np.asarray(e_dft), np.asarray(e_model)
    shift = e_dft.mean() if len(e_dft) else 0.0
    for ax, x, y, label in (
        (axes[0], e_dft - shift, e_model - shift, "energy - mean (eV/atom)"),
        (axes[1], np.ravel(f_dft), np.ravel(f_model), "force component (eV/Å)"),
    ):
        ax.scatter(x, y, s=8, alpha=0.6)
        if len(x):
            lo, hi = min(x.min(), y.min()), max(x.max(), y.max())
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
            ax.set_title(f"MAE {np.abs(x - y).mean():.3g}")
        ax.set_xlabel(f"DFT {label}")
        ax.set_ylabel(f"model {label}")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def entropy_vs_error(path: Path, entropy, error, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.scatter(entropy, error, s=14)
    ax.set_xlabel("energy entropy (nats)")
    ax.set_ylabel("|E_model - E_DFT| (eV/atom)")
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def learning_curve(
    path: Path,
    curves: dict[str, tuple[list, list]],
    ylabel: str,
    title: str,
    bands: dict | None = None,
    xlabel: str = "DFT labels used",
) -> Path:
    """``curves``: name -> (labels used, metric); one line each.

    ``bands`` (optional): name -> (lower, upper) per point, shaded around the line
    (e.g. the spread over seeds).
    """
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for name, (x, y) in curves.items():
        (line,) = ax.plot(x, y, "o-", label=name)
        if bands and name in bands:
            ax.fill_between(x, *bands[name], color=line.get_color(), alpha=0.15, lw=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    values = [v for _, y in curves.values() for v in y if v == v and v > 0]
    if values and max(values) / min(values) > 10:  # log only where it spans decades
        ax.set_yscale("log")
    ax.set_title(title)
    if len(curves) > 1:
        ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path
