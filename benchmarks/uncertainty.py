"""Uncertainty quality on held-out DFT data: entropy, excess entropy, histogram std, committee.

    python benchmarks/uncertainty.py [--data benchmarks/data/ethanol_aimd_hf_sto3g.extxyz] [--quick]

One categorical model (128 bins) gives three signals for the price of one training; a
4-member committee of scalar models (DP-GEN) gives the force deviation for four. On the
test split, per structure: Spearman of each signal against the actual error, AUROC for
flagging the worst 10% of errors, and the mean error of the top-k most uncertain vs k at
random (k = 10%). Errors: per-structure force MAE (eV/Å) and |energy error| per atom (eV).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from ase.io import read

from orchestrator.metrics import auroc, spearman, worst_fraction
from workers.model import ModelConfig, TrainConfig, predict, train
from workers.model.committee import committee_predictions, train_committee
from workers.structures import split_by_info


def errors(test, energies, forces) -> dict:
    e_dft = np.array([a.get_potential_energy() for a in test])
    n = np.array([len(a) for a in test])
    f_err = np.array([np.abs(f - a.get_forces()).mean() for f, a in zip(forces, test, strict=True)])
    return {"energy": np.abs(np.asarray(energies) - e_dft) / n, "force": f_err}


def score(signal: np.ndarray, err: np.ndarray, k_frac: float = 0.1) -> dict:
    worst = worst_fraction(err, k_frac)
    k = max(1, int(round(k_frac * len(err))))
    top = np.argsort(-signal, kind="stable")[:k]
    return {
        "spearman": spearman(signal, err),
        "auroc": auroc(signal, worst),
        "topk_over_random": float(err[top].mean() / err.mean()),  # random k: err.mean() in expectation
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="benchmarks/data/ethanol_aimd_hf_sto3g.extxyz")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="few epochs, small model: a smoke run for tests")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    epochs = 10 if args.quick else args.epochs
    features = 16 if args.quick else 64
    n_members = 2 if args.quick else args.members

    pool, test = split_by_info(read(args.data, index=":"))
    print(f"data: {args.data}: {len(pool)} train+val, {len(test)} test structures; {epochs} epochs")
    from workers.model.backbone import BackboneConfig

    backbone = BackboneConfig(features=features, layers=2 if args.quick else 3)
    cfg = TrainConfig(epochs=epochs, batch_size=8, lr=1e-3, patience=max(epochs // 3, 5), seed=args.seed)

    t0 = time.perf_counter()
    cat = train(cfg, pool, model_cfg=ModelConfig(head="categorical", backbone=backbone)).model
    t_cat = time.perf_counter() - t0
    preds = predict(cat, test)
    cat_err = errors(test, [r["energy"] for r in preds], [r["forces"] for r in preds])

    t0 = time.perf_counter()
    members = train_committee(cfg, pool, ModelConfig(head="scalar", backbone=backbone), n_members)
    t_com = time.perf_counter() - t0
    com = committee_predictions(members, test)
    com_err = errors(test, com["energy"], com["forces"])

    signals = {
        "entropy": (np.array([r["energy_entropy"] for r in preds]), cat_err, t_cat, 1),
        "excess entropy": (np.array([r["energy_excess_entropy"] for r in preds]), cat_err, t_cat, 1),
        "histogram std": (np.array([r["energy_std"] for r in preds]), cat_err, t_cat, 1),
        f"committee x{n_members}": (com["max_devi_f"], com_err, t_com, n_members),
    }
    for name, e in (("categorical", cat_err), ("committee", com_err)):
        f_mae, e_mae = e["force"].mean(), e["energy"].mean()
        print(f"test errors, {name:<11}: F MAE {f_mae:.4f} eV/Å, E MAE {e_mae:.5f} eV/atom")
    cols = (
        ("signal", "<16"),
        ("vs", "<7"),
        ("Spearman", ">9"),
        ("AUROC@10%", ">10"),
        ("top-k/random", ">13"),
    )
    print("\n" + " ".join(f"{c:{w}}" for c, w in cols) + f" {'trainings':>10} {'train s':>8}")
    for name, (signal, err, cost, n_train) in signals.items():
        for kind in ("force", "energy"):
            s = score(signal, err[kind])
            row = f"{name:<16} {kind:<7} {s['spearman']:>9.2f} {s['auroc']:>10.2f}"
            print(f"{row} {s['topk_over_random']:>13.2f} {n_train:>10d} {cost:>8.1f}")
    print("(top-k/random > 1: the k most uncertain structures have larger errors than k at random)")


if __name__ == "__main__":
    main()
