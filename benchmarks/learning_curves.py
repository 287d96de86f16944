"""Learning curves of an active-learning benchmark, read out: each row's force MAE by training
labels (mean [min, max] over seeds, printed and plotted), labels to each target, the verdict
against the random baseline and the AIMD frames a passive model needs to match each row.

A curve is one seed's list of points ``{"train_labels": N, "<judge>_force_mae": ...}``, one per
model it trained; ``curves`` maps a row's name to its seeds' curves (``"passive"``: AIMD training).
"""

from __future__ import annotations

import itertools
import math
import statistics
from pathlib import Path

from orchestrator.outputs import plots


def labels_to_target(points: list[dict], key: str, target: float) -> float:
    """Training labels of the first model whose ``key`` is at or below ``target`` (nan: never)."""
    return next((p["train_labels"] for p in points if p[key] <= target), math.nan)


def frames_to_match(passive: list[list[dict]], key: str, value: float) -> float:
    """AIMD frames the passive model needs to reach ``value``: its seed-mean curve,
    interpolated log-log between sizes (inf past the largest; the smallest if already below)."""
    sizes = [p["train_labels"] for p in passive[0]]
    mean = [statistics.mean(run[k][key] for run in passive) for k in range(len(sizes))]
    if mean[0] <= value:
        return float(sizes[0])
    for (n0, m0), (n1, m1) in itertools.pairwise(zip(sizes, mean, strict=True)):
        if m1 <= value < m0:
            t = (math.log(value) - math.log(m0)) / (math.log(m1) - math.log(m0))
            return float(math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0))))
    return math.inf


def summarise(curves: dict[str, list[list[dict]]], judge: str, targets: list[float], out: Path) -> Path:
    """Print each row's curve (mean [min, max] over seeds) and labels-to-target; plot it."""
    key = f"{judge}_force_mae"
    print(f"\n{judge}: force MAE (eV/Å) of each model, by training labels: mean [min, max] over seeds")
    mean_curves, bands = {}, {}
    for name, runs in curves.items():
        n = min(len(r) for r in runs)
        x = [statistics.mean(r[k]["train_labels"] for r in runs) for k in range(n)]
        values = [[r[k][key] for r in runs] for k in range(n)]
        mean_curves[name] = (x, [statistics.mean(v) for v in values])
        bands[name] = ([min(v) for v in values], [max(v) for v in values])
        cells = [
            f"{lab:.0f}: {statistics.mean(v):.3f} [{min(v):.3f}, {max(v):.3f}]"
            for lab, v in zip(x, values, strict=True)
        ]
        print(f"  {name:<14} " + "  ".join(cells))
    for target in targets:
        print(f"  training labels to reach {target} eV/Å, per seed (nan = not reached)")
        for name, runs in curves.items():
            print(f"    {name:<14} " + ", ".join(f"{labels_to_target(r, key, target):.0f}" for r in runs))
    return plots.learning_curve(
        out / f"learning_curves_{judge}.png", mean_curves, "force MAE (eV/Å), mean and seed range",
        f"{judge} set", bands, xlabel="DFT labels trained on",
    )  # fmt: skip


def verdict(
    curves: dict[str, list[list[dict]]], judge: str, targets: list[float], aimd_stride: int, baseline: str
) -> None:
    """The comparisons the acceptance asks for, on ``judge``: each selection against ``baseline``
    (labels to each target, final accuracy at the same labels, seed ranges) and every
    campaign against AIMD frames (passive)."""
    key = f"{judge}_force_mae"
    print(f"\nverdict on the {judge} set")
    for row in (r for r in curves if baseline in curves and r not in (baseline, "passive")):
        for target in targets:
            d = [labels_to_target(r, key, target) for r in curves[row]]
            b = [labels_to_target(r, key, target) for r in curves[baseline]]
            if all(math.isfinite(x) for x in d) and all(math.isfinite(x) for x in b):
                ratio = f"{statistics.mean(d) / statistics.mean(b):.2f}x"
            else:
                ratio = "n/a (not reached by every seed)"
            print(f"  {target} eV/Å: {row} {d} vs {baseline} {b} labels: {ratio}")
        fd = [r[-1][key] for r in curves[row]]
        fb = [r[-1][key] for r in curves[baseline]]
        apart = "ranges apart" if max(fd) < min(fb) or max(fb) < min(fd) else "ranges overlap"
        print(
            f"  final models ({curves[row][0][-1]['train_labels']} labels): {row} "
            f"{statistics.mean(fd):.3f} [{min(fd):.3f}, {max(fd):.3f}] vs {baseline} {statistics.mean(fb):.3f} "
            f"[{min(fb):.3f}, {max(fb):.3f}] eV/Å: {statistics.mean(fd) / statistics.mean(fb):.2f}x ({apart})"
        )
    if "passive" in curves:
        for name, runs in curves.items():
            if name == "passive":
                continue
            final = statistics.mean(r[-1][key] for r in runs)
            labels = statistics.mean(r[-1]["train_labels"] for r in runs)
            need = frames_to_match(curves["passive"], key, final)
            largest = curves["passive"][0][-1]["train_labels"]
            shown = f"{need:.0f}" if math.isfinite(need) else f"> {largest}"
            ratio = f"{need / labels:.1f}x" if math.isfinite(need) else f"> {largest / labels:.1f}x"
            print(
                f"  {name:<14} final {final:.3f} eV/Å on {labels:.0f} labels; AIMD frames to match: {shown} ({ratio}"
                f"; each AIMD frame costs {aimd_stride} DFT force calls of MD)"
            )
