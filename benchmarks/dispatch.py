"""The head's dispatch capacity: labels/s through the DFT pool, ledger and label store, with
no-op DFT workers (fractional CPUs) so that nothing but dispatch is measured.

    python benchmarks/dispatch.py [--workers 1,8,64,256] [--labels 2000] [--quick]

For each pool size, three rows from one run: the pool alone (results dropped), pool + budget
ledger, and the whole path a campaign takes (``label_structures``: reserve, dispatch, store
each label as it arrives in SQLite, settle). Where the last row falls below the first, the
store is the limit; where the first is low, Ray's actor calls and ``ray.wait`` are. A pool
size whose worker processes would not fit in memory (about 90 MB each) is reported, not run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
from ase.build import molecule

from orchestrator.records.budget import BudgetLimits, Ledger
from orchestrator.records.labelling import label_structures
from orchestrator.records.store import LabelStore
from workers.actors import DFTPool
from workers.dft import DFTConfig
from workers.labels import LabelResult, Status

MB_PER_WORKER = 90.0  # resident memory of one idle Ray actor process (measured here)


@ray.remote(num_cpus=0.01)
class NoopWorker:
    """A DFT worker that answers at once: energy and zero forces, 1 ms of 'DFT'."""

    def label(self, atoms) -> LabelResult:
        return LabelResult(Status.OK, energy_ev=-1.0, forces_ev_a=np.zeros((len(atoms), 3)), wall_s=1e-3)

    def pid(self) -> int:
        return os.getpid()


class NoopPool(DFTPool):
    def _spawn(self):
        return NoopWorker.remote()


def structures(n: int, seed: int = 0) -> list:
    """``n`` distinct ethanol geometries (distinct content keys)."""
    rng = np.random.default_rng(seed)
    base = molecule("CH3CH2OH")
    out = []
    for _ in range(n):
        a = base.copy()
        a.positions += rng.normal(0.0, 0.05, a.positions.shape)
        out.append(a)
    return out


def measure(n_workers: int, items: list, tmp: Path) -> dict:
    cfg = DFTConfig()
    pool = NoopPool(cfg, n_workers)
    pool.warm_up()
    pool.run([(f"w{k}", items[k % len(items)]) for k in range(2 * n_workers)], lambda *a: None)  # warm
    rates = {}
    try:
        t0 = time.perf_counter()
        stats = pool.run([(str(k), a) for k, a in enumerate(items)], lambda *a: None)
        rates["pool"] = stats.labels / (time.perf_counter() - t0)

        limits = BudgetLimits(max_labels=10 * len(items), max_labels_per_round=10 * len(items), holdout_labels=0)
        ledger = Ledger(limits)

        def jobs():
            for k, a in enumerate(items):
                token = ledger.reserve(1)
                yield str(k), a, token

        tokens = {}

        def with_ledger():
            for key, atoms, token in jobs():
                tokens[key] = token
                yield key, atoms

        t0 = time.perf_counter()
        pool.run(with_ledger(), lambda key, atoms, r: ledger.settle(tokens.pop(key), r.status.value, r.cost_s))
        rates["pool + ledger"] = len(items) / (time.perf_counter() - t0)

        store = LabelStore(tmp / f"labels_{n_workers}.db")
        ledger = Ledger(limits)
        t0 = time.perf_counter()
        report = label_structures([(a, "md") for a in items], 1, pool, store, ledger, cfg)
        rates["pool + ledger + store"] = len(report.stored) / (time.perf_counter() - t0)
        assert len(report.stored) == len(items) == len(store)
    finally:
        pool.shutdown()
    return rates


def available_mb() -> float:
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return float(info["MemAvailable"].split()[0]) / 1024.0
    except (OSError, KeyError, ValueError):
        return float("inf")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", default="1,8,64,256", help="comma-separated pool sizes")
    p.add_argument("--labels", type=int, default=2000, help="labels per measurement")
    p.add_argument("--quick", action="store_true", help="1 and 8 workers, 300 labels")
    args = p.parse_args()
    sizes = [1, 8] if args.quick else [int(w) for w in args.workers.split(",")]
    n_labels = 300 if args.quick else args.labels
    items = structures(n_labels)
    cpus = os.cpu_count() or 1
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    print(f"no-op DFT workers (0.01 CPU each) on {cpus} cores; {n_labels} labels per row; labels/s")
    print(f"{'workers':>8} {'pool':>10} {'pool + ledger':>15} {'pool + ledger + store':>23}")
    best = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            need_gb, free_gb = n * MB_PER_WORKER / 1024, available_mb() / 1024
            if need_gb > 0.8 * free_gb:
                print(f"{n:>8}  not run: {n} worker processes need ~{need_gb:.0f} GB, {free_gb:.0f} GB free")
                continue
            rates = measure(n, items, Path(tmp))
            best[n] = rates["pool + ledger + store"]
            row = (rates["pool"], rates["pool + ledger"], rates["pool + ledger + store"])
            print(f"{n:>8} {row[0]:>10.0f} {row[1]:>15.0f} {row[2]:>23.0f}")
    ray.shutdown()
    if best:
        n = max(best)
        print(f"dispatch: {best[n]:.0f} labels/s through pool, ledger and store with {n} workers")


if __name__ == "__main__":
    main()
