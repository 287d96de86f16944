"""Categorical (HL-Gauss) vs scalar head: accuracy, histogram sharpness and uncertainty, one run.

    python benchmarks/heads.py                             # default heads, 4 seeds, 600 epochs
    python benchmarks/heads.py --variants scalar,categorical,cat-absolute --seeds 3 --epochs 100
    python benchmarks/heads.py --list                      # the named variants (ablation levers)
    python benchmarks/heads.py --quick                     # smoke run (tests)
    python benchmarks/heads.py --backbone painn,mace --minutes 5 --seeds 3   # equal CPU time

Every variant trains once per seed (and per ``--backbone``) on the same data
(benchmarks/data, info["split"], else tests/data split 80/20), with the same epochs or,
with ``--minutes``, the same CPU time (each training times two epochs first and runs as
many as fit); runs go ``--jobs`` at a time, one torch thread each. ``--also FILE`` scores
the models on a second set too (e.g. 500 K AIMD frames, where MD will take them).
Printed, from that one run:

1. accuracy: test energy MAE (eV, no offset removed) and force MAE (eV/Å), mean ± std over
   seeds, the ratio to the scalar head, training throughput;
2. sharpness (categorical variants): median entropy, median excess entropy (entropy minus
   the HL-Gauss target's own at the predicted mean) and log(num_bins);
3. uncertainty: each categorical variant's histogram std and entropy (one model; mean over
   seeds) against a committee of the scalar seeds (DP-GEN max_devi_f, ``seeds`` models):
   Spearman vs per-structure force MAE and AUROC for flagging the worst 10%;
4. calibration of the default head (seed 0): predicted energy std by quantile bin against
   the observed |energy error| and force MAE.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from ase.io import read

from orchestrator.outputs.metrics import auroc, spearman, worst_fraction

REFERENCE = Path("benchmarks/data/ethanol_aimd_hf_sto3g.extxyz")
FALLBACK = Path("tests/data/ethanol_hf_sto3g.extxyz")

# name -> (ModelConfig overrides, TrainConfig overrides); defaults are the shipped ones
VARIANTS: dict[str, tuple[dict, dict]] = {
    "scalar": ({"head": "scalar"}, {}),
    "categorical": ({"head": "categorical"}, {}),
    # the levers of the ablation, each one change from the default categorical head
    "cat-w_ce-0.3": ({"head": "categorical"}, {"w_ce": 0.3}),
    "cat-w_ce-1": ({"head": "categorical"}, {"w_ce": 1.0}),
    "cat-span-1": ({"head": "categorical", "relative_span": 1.0}, {}),
    "cat-span-4": ({"head": "categorical", "relative_span": 4.0}, {}),
    "cat-64-bins": ({"head": "categorical", "num_bins": 64}, {}),
    "cat-relative": ({"head": "categorical", "histogram": "relative"}, {}),
    "cat-pooled": ({"head": "categorical", "readout": "pooled"}, {}),
    "cat-no-ema": ({"head": "categorical"}, {"ema_decay": 0.0}),
    "scalar-pooled": ({"head": "scalar", "readout": "pooled"}, {}),
    "scalar-no-ema": ({"head": "scalar"}, {"ema_decay": 0.0}),
    # learning rate (the backbone's default: 1e-3 PaiNN, 1e-2 MACE)
    "scalar-lr-1e-3": ({"head": "scalar"}, {"lr": 1e-3}),
    "scalar-lr-1e-2": ({"head": "scalar"}, {"lr": 1e-2}),
    "scalar-lr-5e-3": ({"head": "scalar"}, {"lr": 5e-3}),
    # the first design: bins over the training range, CE at 0.03 only (main before #10)
    "cat-absolute": ({"head": "categorical", "histogram": "absolute"}, {"w_ce": 0.03, "w_energy": 0.0}),
    "cat-absolute-mse": ({"head": "categorical", "histogram": "absolute"}, {}),
}


# backbone name -> (BackboneConfig, TrainConfig overrides); sizes as measured in #15:
# PaiNN F=64 x 3 layers; MACE 32x0e+32x1o, max_l 1, correlation 3, 2 interactions, r_max 5
BACKBONES: dict[str, tuple[dict, dict]] = {
    "painn": ({"kind": "painn", "features": 64, "layers": 3}, {}),
    "mace": ({"kind": "mace", "features": 32, "layers": 2, "max_l": 1, "correlation": 3}, {"lr": 1e-2}),
}


def backbone_kwargs(backbone: str, features: int, layers: int, quick: bool) -> dict:
    """BackboneConfig fields: PaiNN's size from the command line; MACE's as measured (tiny if quick)."""
    kw = dict(BACKBONES[backbone][0])
    if backbone == "painn":
        kw.update(features=features, layers=layers)
    elif quick:
        kw.update(features=8, correlation=2)
    return kw


def structure_errors(energy: np.ndarray, forces: list, frames) -> tuple[np.ndarray, np.ndarray]:
    """Per structure: |E error| (eV, no offset removed) ``[n]`` and force MAE (eV/Å) ``[n]``."""
    e_err = np.abs(np.asarray(energy) - np.array([a.get_potential_energy() for a in frames]))
    f_err = np.array([np.abs(f - a.get_forces()).mean() for f, a in zip(forces, frames, strict=True)])
    return e_err, f_err


def run_one(job: dict) -> dict:
    """Train one (variant, backbone, seed) and return its test-set predictions (a worker process)."""
    import torch

    from workers.model import ModelConfig, TrainConfig, predict, train
    from workers.model.backbone import BackboneConfig

    torch.set_num_threads(1)
    from workers.structures import split_by_info

    pool, test = split_by_info(read(job["data"], index=":"))
    model_kw, train_kw = VARIANTS[job["variant"]]
    bb_kw = backbone_kwargs(job["backbone"], job["features"], job["layers"], job["quick"])
    bb_train_kw = BACKBONES[job["backbone"]][1]
    model_cfg = ModelConfig(backbone=BackboneConfig(**bb_kw), **model_kw)
    train_kw = {"batch_size": 8, "lr": 1e-3, "seed": job["seed"], **bb_train_kw, **train_kw}
    epochs = job["epochs"]
    if job["minutes"]:  # equal CPU time: time epochs 2-3 of a probe, then as many as fit in the budget
        stamps = []
        probe = TrainConfig(epochs=3, patience=3, **train_kw)
        train(probe, pool, model_cfg=model_cfg, on_epoch=lambda row: stamps.append(time.perf_counter()))
        per_epoch = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
        epochs = max(2, int(60 * job["minutes"] / per_epoch))
    cfg = TrainConfig(epochs=epochs, patience=epochs, **train_kw)
    t0 = time.perf_counter()
    result = train(cfg, pool, model_cfg=model_cfg)
    wall = time.perf_counter() - t0
    preds = predict(result.model, test)
    out = {
        "variant": job["variant"],
        "backbone": job["backbone"],
        "seed": job["seed"],
        "epochs": epochs,
        "wall_s": wall,
        "energy": np.array([p["energy"] for p in preds]),
        "forces": [p["forces"] for p in preds],
        "sps": result.structures_per_s,
        "log_bins": float(np.log(model_cfg.num_bins)),
    }
    if job["also"]:
        also = read(job["also"], index=":")
        also_preds = predict(result.model, also)
        e_err, f_err = structure_errors([p["energy"] for p in also_preds], [p["forces"] for p in also_preds], also)
        out["also"] = (float(e_err.mean()), float(f_err.mean()))
    if model_cfg.head == "categorical":
        for key in ("energy_entropy", "energy_excess_entropy", "energy_std"):
            out[key] = np.array([p[key] for p in preds])
    return out


def fmt(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.mean(values):.{digits}f} ± {scale * sd:.{digits}f}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REFERENCE if REFERENCE.exists() else FALLBACK)
    p.add_argument("--variants", default="scalar,categorical", help="comma-separated names (see --list)")
    p.add_argument("--epochs", type=int, default=600)
    p.add_argument("--seeds", type=int, default=4, help="also the size of the scalar committee")
    p.add_argument("--features", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--backbone", default="painn", help="comma-separated: painn, mace (each variant on each)")
    p.add_argument("--minutes", type=float, default=None, help="equal CPU time per training instead of --epochs")
    p.add_argument("--also", type=Path, default=None, help="a second labelled set to score (e.g. 500 K AIMD)")
    p.add_argument("--jobs", type=int, default=2, help="trainings at once, one torch thread each")
    p.add_argument("--list", action="store_true", help="print the variants and exit")
    p.add_argument("--quick", action="store_true", help="2 seeds, 5 epochs, tiny model, + the first design")
    args = p.parse_args(argv)
    if args.list:
        for name, (m, t) in VARIANTS.items():
            print(f"{name:<18} model {m} training {t}")
        return
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if args.quick and "cat-absolute" not in variants:
        variants.append("cat-absolute")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; see --list")
    backbones = [b.strip() for b in args.backbone.split(",") if b.strip()]
    if any(b not in BACKBONES for b in backbones):
        p.error(f"--backbone: choose from {list(BACKBONES)}")
    epochs, n_seeds, features, layers = (
        (5, 2, 16, 2) if args.quick else (args.epochs, args.seeds, args.features, args.layers)
    )
    frames = read(args.data, index=":")
    from workers.structures import split_by_info

    pool, test = split_by_info(frames)
    budget = f"{args.minutes:g} min of training each" if args.minutes else f"{epochs} epochs"
    print(f"data: {args.data} ({len(pool)} train+val, {len(test)} test); seeds 0-{n_seeds - 1}; {budget}")
    print(f"machine: {platform.machine()}, {args.jobs} trainings at once x 1 torch thread")
    for b in backbones:
        bb = backbone_kwargs(b, features, layers, args.quick)
        print(f"backbone {b}: {bb}; training overrides {BACKBONES[b][1] or 'none'}")

    t0 = time.perf_counter()
    jobs = [
        {
            "variant": v,
            "backbone": b,
            "seed": s,
            "data": str(args.data),
            "epochs": epochs,
            "minutes": args.minutes,
            "quick": args.quick,
            "features": features,
            "layers": layers,
            "also": str(args.also) if args.also else None,
        }
        for b in backbones
        for v in variants
        for s in range(n_seeds)
    ]
    with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as ex:
        runs = list(ex.map(run_one, jobs))
    for r in runs:
        r["e_err"], r["f_err"] = structure_errors(r["energy"], r["forces"], test)

    # a row per (backbone, variant); named by the variant alone when there is one backbone
    def row_name(b: str, v: str) -> str:
        return v if len(backbones) == 1 else f"{b}/{v}"

    pairs = [(b, v) for b in backbones for v in variants]
    by = {row_name(b, v): [r for r in runs if (r["backbone"], r["variant"]) == (b, v)] for b, v in pairs}

    ref = by.get(row_name(backbones[0], "scalar"))
    also = f" {'E/F on ' + args.also.name[:22]:>30}" if args.also else ""
    print("\n1. accuracy on the test split (meV, meV/Å; mean ± std over seeds; ratios to the first scalar row)")
    cols = f"{'E MAE':>14} {'F MAE':>14} {'E ratio':>8} {'F ratio':>8} {'struct/s':>9} {'epochs':>7}"
    print(f"{'variant':<22} {cols}{also}")
    for v, rs in by.items():
        e = [float(r["e_err"].mean()) for r in rs]
        f = [float(r["f_err"].mean()) for r in rs]
        ratio = ""
        if ref:
            e_ref = statistics.mean(float(r["e_err"].mean()) for r in ref)
            f_ref = statistics.mean(float(r["f_err"].mean()) for r in ref)
            ratio = f"{statistics.mean(e) / e_ref:>7.2f}x {statistics.mean(f) / f_ref:>7.2f}x"
        sps = statistics.mean(r["sps"] for r in rs)
        n_ep = statistics.mean(r["epochs"] for r in rs)
        extra = ""
        if args.also:
            e2, f2 = [r["also"][0] for r in rs], [r["also"][1] for r in rs]
            extra = f" {fmt(e2, 1e3):>14} {fmt(f2, 1e3):>15}"
        print(f"{v:<22} {fmt(e, 1e3):>14} {fmt(f, 1e3):>14} {ratio:>17} {sps:>9.1f} {n_ep:>7.0f}{extra}")

    cats = {v: rs for v, rs in by.items() if "energy_entropy" in rs[0]}
    if cats:
        print("\n2. histogram sharpness on the test split (nats; median over structures, mean over seeds)")
        print(f"{'variant':<18} {'entropy':>8} {'excess':>8} {'log(bins)':>10} {'std (meV)':>10}")
        for v, rs in cats.items():
            ent = statistics.mean(float(np.median(r["energy_entropy"])) for r in rs)
            exc = statistics.mean(float(np.median(r["energy_excess_entropy"])) for r in rs)
            sd = statistics.mean(float(np.median(r["energy_std"])) for r in rs)
            print(f"{v:<18} {ent:>8.2f} {exc:>8.2f} {rs[0]['log_bins']:>10.2f} {1e3 * sd:>10.1f}")

    print("\n3. ranking force errors (per-structure force MAE): Spearman, AUROC for the worst 10%")
    print(f"{'signal':<34} {'Spearman':>11} {'AUROC@10%':>11} {'models':>8}")
    for v, rs in cats.items():
        for key, name in (("energy_std", "histogram std"), ("energy_entropy", "entropy")):
            sp = [spearman(r[key], r["f_err"]) for r in rs]
            au = [auroc(r[key], worst_fraction(r["f_err"], 0.1)) for r in rs]
            print(f"{v + ' ' + name:<34} {fmt(sp, digits=2):>11} {fmt(au, digits=2):>11} {1:>8d}")
    if ref and len(ref) >= 2:
        forces = np.stack([np.stack(r["forces"]) for r in ref])  # [M, n_test, n_atoms, 3]
        mean_f = forces.mean(0)
        devi = np.sqrt(((forces - mean_f) ** 2).sum(-1).mean(0)).max(-1)  # DP-GEN max_devi_f
        _, com_err = structure_errors(np.mean([r["energy"] for r in ref], axis=0), list(mean_f), test)
        sp, au = spearman(devi, com_err), auroc(devi, worst_fraction(com_err, 0.1))
        print(f"{f'committee of {len(ref)} scalar (max_devi_f)':<34} {sp:>11.2f} {au:>11.2f} {len(ref):>8d}")
        print(f"(committee mean: F MAE {1e3 * com_err.mean():.1f} meV/Å on the same structures)")

    default = cats.get(row_name(backbones[0], "categorical")) or next(iter(cats.values()), None)
    if default:
        r = default[0]
        print(f"\n4. calibration ({r['variant']}, seed 0): predicted energy std by quantile bin vs observed error")
        head = f"{'bin':<5} {'n':>3} {'pred std (meV)':>15} {'|E err| (meV)':>14} {'RMSE E (meV)':>13}"
        print(f"{head} {'F MAE (meV/Å)':>14}")
        edges = np.quantile(r["energy_std"], np.linspace(0, 1, 5))
        idx = np.clip(np.searchsorted(edges, r["energy_std"], side="right") - 1, 0, 3)
        for b in range(4):
            m = idx == b
            if m.any():
                row = f"{f'Q{b + 1}':<5} {int(m.sum()):>3} {1e3 * r['energy_std'][m].mean():>15.1f}"
                rmse = 1e3 * np.sqrt((r["e_err"][m] ** 2).mean())
                print(f"{row} {1e3 * r['e_err'][m].mean():>14.1f} {rmse:>13.1f} {1e3 * r['f_err'][m].mean():>14.1f}")
        print("(a calibrated std tracks the RMSE column; Q4 = the most uncertain quarter)")
    print(f"\n({len(jobs)} trainings, {time.perf_counter() - t0:.0f} s in all)")


if __name__ == "__main__":
    main()
