"""MD throughput: ASE engine vs batched engine on ethanol replicas, same model, this CPU.

    python benchmarks/md.py [--steps 50] [--threads 2] [--backbone painn,mace]
    python benchmarks/md.py --sizes            # batched MD and training at 9, 25 and 60 atoms

Prints replica-steps per second of each engine for 1, 8 and 64 replicas, their ratio
(target >= 10x at 64 replicas) and the peak resident memory each run added, for each
backbone (PaiNN F=64 x 3; MACE 32x0e+32x1o x 2 interactions, as benchmarks/heads.py).
``--sizes``: batched MD (16 replicas) and training (structures per second) of the PaiNN
model on molecules of 9, 25 and 60 atoms (RDKit conformers), and the share of an MD step
spent on the neighbour list (every intra-molecule pair's distance, cut at the cutoff).
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


# 9, 25 and 60 atoms: ethanol (C2H6O), octanal (C8H16O), 1-icosene (C20H40)
SIZE_MOLECULES = {"ethanol": "CCO", "octanal": "CCCCCCCC=O", "1-icosene": "C=C" + "C" * 18}


def sizes(threads: int, steps: int) -> None:
    """Batched MD and training throughput against molecule size (PaiNN, untrained: speed
    does not depend on training), and the neighbour list's share of an MD step."""
    from ase.calculators.singlepoint import SinglePointCalculator

    from workers.conformers import smiles_conformers
    from workers.model.graph import collate, edges_within_cutoff
    from workers.model.training import TrainConfig, train

    print(f"\nPaiNN (features 64, layers 3), 128 bins, float32, {threads} torch threads; MD: 16 replicas")
    header = ("molecule", "atoms", "MD steps/s", "atom-steps/s", "pairs share", "train structures/s")
    print(" | ".join(header))
    for name, smiles in SIZE_MOLECULES.items():
        (mol,) = smiles_conformers(smiles, 1)
        frames = rattled_copies(mol, 32, (0.02, 0.05), seed=0)
        for k, a in enumerate(frames):
            a.calc = SinglePointCalculator(a, energy=-1000.0 + 0.01 * k, forces=0.1 * (a.positions - mol.positions))
        torch.manual_seed(0)
        model = Potential.fit(ModelConfig(backbone=BackboneConfig(**SIZES["painn"])), frames).eval()
        off = StopRules(min_distance_a=None, check_topology=False, max_force_ev_a=None)
        cfg = MDConfig(replicas=16, steps=steps, stride=10, temperature_k=300, stops=off)
        run_md(model, [mol], cfg.model_copy(update={"steps": 4}))  # warm-up
        t0 = time.perf_counter()
        run_md(model, [mol], cfg)
        md_rate = 16 * steps / (time.perf_counter() - t0)
        batch = collate([mol] * 16)
        t0 = time.perf_counter()
        for _ in range(steps):
            edges_within_cutoff(batch.positions.float(), batch.pair_i, batch.pair_j, 5.0)
        pairs_share = (time.perf_counter() - t0) / steps * md_rate / 16
        result = train(TrainConfig(epochs=3, batch_size=8, patience=10), frames, model=model)
        print(f"{name} | {len(mol)} | {md_rate:.0f} | {md_rate * len(mol):.0f} | {pairs_share:.1%} "
              f"| {result.structures_per_s:.1f}")  # fmt: skip
    print("(MD steps/s: replica-steps per second; pairs share: the neighbour list's part of one MD step)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--backbone", default="painn", help="comma-separated: painn, mace")
    p.add_argument("--device", default="cpu", help="cpu or cuda (the model, and the batched integrator's forces)")
    p.add_argument("--replicas", default="1,8,64", help="comma-separated replica counts")
    p.add_argument("--sizes", action="store_true", help="throughput against molecule size instead")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.sizes:
        sizes(args.threads, args.steps)
        return
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
