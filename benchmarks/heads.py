"""Categorical (HL-Gauss) vs scalar energy head on the same data, backbone and seed.

    python benchmarks/heads.py [--data tests/data/ethanol_hf_sto3g.extxyz] [--epochs 150]

Prints held-out energy and force MAE of each head, their ratio (categorical / scalar) and
training throughput (structures/s) on this machine.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from ase.io import read

from workers.model import ModelConfig, TrainConfig, evaluate, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="tests/data/ethanol_hf_sto3g.extxyz")
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--test-fraction", type=float, default=0.2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    frames = read(args.data, index=":")
    n_test = max(1, int(args.test_fraction * len(frames)))
    pool, test = frames[:-n_test], frames[-n_test:]
    print(f"data: {args.data} ({len(pool)} train+val, {len(test)} test)")
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {args.threads}")
    rows = {}
    for head in ("categorical", "scalar"):
        cfg = TrainConfig(epochs=args.epochs, batch_size=8, lr=2e-3, patience=args.epochs, seed=args.seed)
        t0 = time.perf_counter()
        result = train(cfg, pool, model_cfg=ModelConfig(head=head))
        wall = time.perf_counter() - t0
        m = evaluate(result.model, test)
        rows[head] = (m["energy_mae"], m["force_mae"], result.structures_per_s, wall)

    print(f"\n{'head':<12} {'E MAE (eV)':>11} {'F MAE (eV/Å)':>13} {'train struct/s':>15} {'wall (s)':>9}")
    for head, (e, f, sps, wall) in rows.items():
        print(f"{head:<12} {e:>11.4f} {f:>13.4f} {sps:>15.1f} {wall:>9.1f}")
    (ec, fc, *_), (es, fs, *_) = rows["categorical"], rows["scalar"]
    print(f"\nratio categorical/scalar: energy MAE {ec / es:.2f}x, force MAE {fc / fs:.2f}x")


if __name__ == "__main__":
    main()
