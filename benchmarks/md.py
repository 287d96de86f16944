"""MD throughput: ASE engine vs batched engine on ethanol replicas, same model, this CPU.

    python benchmarks/md.py [--steps 50] [--threads 2] [--backbone painn,mace]

Prints replica-steps per second of each engine for 1, 8 and 64 replicas, their ratio
(target >= 10x at 64 replicas) and the peak resident memory each run added, for each
backbone (PaiNN F=64 x 3; MACE 32x0e+32x1o x 2 interactions, as benchmarks/heads.py).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from ase.build import molecule

from workers.model import ModelConfig, Potential
from workers.model.backbone import BackboneConfig
from workers.sampling import MDConfig, StopRules, run_md
from workers.structures import rattled_copies

SIZES = {"painn": {"features": 64, "layers": 3}, "mace": {"features": 32, "layers": 2}}


def _model(backbone: str = "painn") -> Potential:
    """An untrained categorical model of the benchmark's size (speed does not depend on training)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = rattled_copies(molecule("CH3CH2OH"), 4, seed=0)
    for k, a in enumerate(frames):
        a.calc = SinglePointCalculator(a, energy=-4139.0 + 0.1 * k, forces=0 * a.positions)
    torch.manual_seed(0)
    cfg = ModelConfig(backbone=BackboneConfig(kind=backbone, **SIZES[backbone]))
    return Potential.fit(cfg, frames).eval()


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(model, engine: str, replicas: int, steps: int) -> tuple[float, float]:
    # stop rules off: every replica runs every step, so both engines do the same work
    off = StopRules(min_distance_a=None, check_topology=False, max_force_ev_a=None)
    cfg = MDConfig(engine=engine, replicas=replicas, steps=steps, stride=10, temperature_k=300, stops=off)
    before = _peak_mb()
    t0 = time.perf_counter()
    frames = run_md(model, [molecule("CH3CH2OH")], cfg)
    wall = time.perf_counter() - t0
    assert len(frames) == replicas * (steps // 10)
    return replicas * steps / wall, max(_peak_mb() - before, 0.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--backbone", default="painn", help="comma-separated: painn, mace")
    p.add_argument("--device", default="cpu", help="cpu or cuda (the model, and the batched integrator's forces)")
    p.add_argument("--replicas", default="1,8,64", help="comma-separated replica counts")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for backbone in [b.strip() for b in args.backbone.split(",") if b.strip()]:
        model = _model(backbone).to(args.device)
        measure(model, "batched", 2, 10)  # warm-up (first-call allocations)
        size = ", ".join(f"{k} {v}" for k, v in SIZES[backbone].items())
        where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{args.threads} torch threads"
        print(f"\nethanol, {backbone} ({size}), 128 bins, float32, {where}")
        header = ("replicas", "ASE steps/s", "batched steps/s", "ratio", "ASE +MB", "batched +MB")
        print(" ".join(f"{h:>{w}}" for h, w in zip(header, (8, 12, 16, 7, 8, 12), strict=True)))
        for n in (int(r) for r in args.replicas.split(",")):
            # ASE cost is linear in replicas: fewer steps keep the 64-replica run short
            ase_steps = args.steps if n < 64 else max(args.steps // 5, 10)
            a_rate, a_mem = measure(model, "ase", n, ase_steps)
            b_rate, b_mem = measure(model, "batched", n, args.steps)
            print(f"{n:>8} {a_rate:>12.1f} {b_rate:>16.1f} {b_rate / a_rate:>6.1f}x {a_mem:>8.1f} {b_mem:>12.1f}")
    print("(replica-steps per second; +MB = growth of the process's peak RSS during that run)")


if __name__ == "__main__":
    main()
