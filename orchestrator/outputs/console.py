"""What the user sees: phase spinners, a DFT progress bar, a one-screen round summary."""

from __future__ import annotations

import contextlib
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table


class Reporter:
    def __init__(self, console: Console | None = None):
        self.console = console or Console(highlight=False)

    def say(self, text: str) -> None:
        self.console.print(text)

    @contextlib.contextmanager
    def phase(self, name: str):
        """A spinner while ``name`` runs; prints its wall time after."""
        t0 = time.perf_counter()
        with self.console.status(f"[bold]{name}[/] ..."):
            yield
        self.console.print(f"  {name}: {time.perf_counter() - t0:.1f} s")

    @contextlib.contextmanager
    def dft_progress(self, total: int, title: str):
        """A progress bar advanced once per stored label; yields the callback."""
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=True) as progress:
            task = progress.add_task(title, total=total)
            yield lambda _label: progress.advance(task)
        self.console.print(f"  {title}: done")

    def round_summary(self, rnd: int, metrics: dict, kind: str = "round") -> None:
        table = Table(title=f"{kind} {rnd}", show_header=False, box=None, padding=(0, 2))
        rows = [
            ("labels total / this round", f"{metrics['labels_total']:.0f} / {metrics['labels_round']:.0f}"),
            ("budget left (labels)", f"{metrics['budget_left']:.0f}"),
            ("hold-out energy MAE (eV)", f"{metrics['holdout_energy_mae']:.4f}"),
            ("hold-out force MAE (eV/Å)", f"{metrics['holdout_force_mae']:.4f}"),
            (
                "audit (random MD frames) E / F MAE",
                f"{metrics.get('audit_energy_mae', float('nan')):.4f} eV / "
                f"{metrics.get('audit_force_mae', float('nan')):.4f} eV/Å",
            ),
            ("frames accurate/candidate/failed", _fracs(metrics)),
            (
                "entropy vs error: Spearman / AUROC",
                f"{metrics['entropy_spearman']:.2f} / {metrics['entropy_auroc']:.2f}",
            ),
            (
                "selection score vs error: Spearman / AUROC",
                f"{metrics['score_spearman']:.2f} / {metrics['score_auroc']:.2f}",
            ),
            ("DFT s (failures)", f"{metrics['dft_seconds']:.1f} ({metrics['dft_failures']:.0f})"),
            ("phases train/sample/label s", _times(metrics)),
        ]
        for k, v in rows:
            table.add_row(k, v)
        self.console.print(table)


def _fracs(m: dict) -> str:
    return f"{m['frac_accurate']:.2f} / {m['frac_candidate']:.2f} / {m['frac_failed']:.2f}"


def _times(m: dict) -> str:
    return " / ".join(f"{m[k]:.1f}" for k in ("time_train_s", "time_sample_s", "time_label_s"))
