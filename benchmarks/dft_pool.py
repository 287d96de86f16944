"""DFT pool throughput: labels/s with 1 and 2 workers (1 thread each), ethanol HF/STO-3G.

    python benchmarks/dft_pool.py [--labels 24]

Prints labels/s for each pool size, the scaling ratio (target >= 1.8x), worker
utilisation (busy time / wall, target >= 0.95) and the pool's overhead per label (ms).
"""

from __future__ import annotations

import argparse

import ray
from ase.build import molecule

from workers.actors import DFTPool
from workers.dft import DFTConfig, Status
from workers.structures import rattled_copies


def measure(n_workers: int, structures) -> dict:
    cfg = DFTConfig(method="hf", basis="sto-3g", threads=1)
    pool = DFTPool(cfg, n_workers=n_workers)
    pool.warm_up()
    # one untimed label per worker: PySCF's first call in a process builds its caches
    pool.run([(f"w{k}", structures[k]) for k in range(n_workers)], lambda *a: None)
    ok = []
    stats = pool.run(
        [(str(k), a) for k, a in enumerate(structures)],
        lambda key, atoms, result: ok.append(result.status is Status.OK),
    )
    pool.shutdown()
    assert all(ok) and len(ok) == len(structures)
    return {
        "labels_per_s": stats.labels / stats.wall_s,
        "utilisation": stats.utilisation,
        "overhead_ms": stats.overhead_ms_per_label,
        "wall_s": stats.wall_s,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--labels", type=int, default=24)
    args = p.parse_args()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    structures = rattled_copies(molecule("CH3CH2OH"), args.labels, stdev_a=(0.02, 0.06), seed=5)
    rows = {n: measure(n, structures) for n in (1, 2)}
    ray.shutdown()
    print(f"\nethanol RHF/STO-3G, {args.labels} labels per run, 1 thread per worker")
    print(f"{'workers':>7} {'labels/s':>9} {'utilisation':>12} {'overhead ms/label':>18} {'wall s':>7}")
    for n, r in rows.items():
        print(
            f"{n:>7} {r['labels_per_s']:>9.2f} {r['utilisation']:>12.3f} {r['overhead_ms']:>18.1f} {r['wall_s']:>7.1f}"
        )
    print(f"\nscaling 2 vs 1 workers: {rows[2]['labels_per_s'] / rows[1]['labels_per_s']:.2f}x (target >= 1.8x)")


if __name__ == "__main__":
    main()
