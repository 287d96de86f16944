"""Categorical (HL-Gauss) vs scalar energy head: same data, backbone and seeds.

    python benchmarks/heads.py                      # 128 bins vs scalar, 3 seeds
    python benchmarks/heads.py --sweep              # bins 32/64/128/256 x sigma 0.5/0.75/1.0
    python benchmarks/heads.py --quick              # smoke run (tests)

Data: the reference set (benchmarks/data, info["split"]) when present, else
tests/data/ethanol_hf_sto3g.extxyz split 80/20. Prints held-out energy and force MAE
(mean ± std over seeds) of each head, the categorical/scalar ratios, and training
throughput (structures/s) on this machine.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
from ase.io import read

from workers.model import ModelConfig, TrainConfig, evaluate, train
from workers.model.backbone import BackboneConfig
from workers.structures import split_by_info

REFERENCE = Path("benchmarks/data/ethanol_aimd_hf_sto3g.extxyz")
FALLBACK = Path("tests/data/ethanol_hf_sto3g.extxyz")


def run(
    head: str, bins: int, sigma: float, seeds: list[int], pool, test, epochs: int, features: int, w_energy: float
) -> dict:
    e, f, sps = [], [], []
    for seed in seeds:
        cfg = TrainConfig(epochs=epochs, batch_size=8, lr=1e-3, patience=epochs, seed=seed, w_energy=w_energy)
        model_cfg = ModelConfig(head=head, num_bins=bins, sigma_ratio=sigma, backbone=BackboneConfig(features=features))
        result = train(cfg, pool, model_cfg=model_cfg)
        m = evaluate(result.model, test)
        e.append(m["energy_mae"])
        f.append(m["force_mae"])
        sps.append(result.structures_per_s)
    return {"e": e, "f": f, "sps": statistics.mean(sps)}


def fmt(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REFERENCE if REFERENCE.exists() else FALLBACK)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--features", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sweep", action="store_true", help="bins x sigma grid instead of 128 bins only")
    p.add_argument("--w-energy", type=float, default=None, help="energy-loss weight, both heads")
    p.add_argument("--cat-w-energy", type=float, default=None, help="CE weight if not --w-energy")
    p.add_argument("--quick", action="store_true", help="2 seeds, 5 epochs, tiny model, 2 configurations")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    epochs, n_seeds, features = (5, 2, 16) if args.quick else (args.epochs, args.seeds, args.features)
    seeds = list(range(n_seeds))

    pool, test = split_by_info(read(args.data, index=":"))
    print(f"data: {args.data} ({len(pool)} train+val, {len(test)} test); seeds {seeds}; {epochs} epochs")
    print(f"machine: {platform.machine()}, torch threads {args.threads}, backbone F={features}")
    grid = [(b, s) for b in (32, 64, 128, 256) for s in (0.5, 0.75, 1.0)] if args.sweep else [(128, 0.75)]
    if args.quick:
        grid = [(32, 0.75)]
    t0 = time.perf_counter()
    w_scalar = TrainConfig().w_energy if args.w_energy is None else args.w_energy
    w_cat = w_scalar if args.cat_w_energy is None else args.cat_w_energy
    print(f"loss weights: energy scalar {w_scalar} (MSE), categorical {w_cat} (CE); forces {TrainConfig().w_forces}")
    scalar = run("scalar", 128, 0.75, seeds, pool, test, epochs, features, w_scalar)
    rows = [("scalar", scalar)]
    for bins, sigma in grid:
        rows.append(
            (
                f"cat {bins} bins σ={sigma}",
                run("categorical", bins, sigma, seeds, pool, test, epochs, features, w_cat),
            )
        )

    print(f"\n{'head':<24} {'E MAE (eV)':>18} {'F MAE (eV/Å)':>18} {'E ratio':>8} {'F ratio':>8} {'struct/s':>9}")
    for name, r in rows:
        e_ratio = statistics.mean(r["e"]) / statistics.mean(scalar["e"])
        f_ratio = statistics.mean(r["f"]) / statistics.mean(scalar["f"])
        print(f"{name:<24} {fmt(r['e']):>18} {fmt(r['f']):>18} {e_ratio:>7.2f}x {f_ratio:>7.2f}x {r['sps']:>9.1f}")
    print(f"(ratio = categorical / scalar mean MAE; ± = std over seeds; {time.perf_counter() - t0:.0f} s in all)")


if __name__ == "__main__":
    main()
