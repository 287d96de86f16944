"""Uncertainty that measures: error bars in eV and eV/Å, in and out of distribution, one run.

    python benchmarks/uncertainty.py [--seeds 3] [--epochs 300] [--jobs 2] [--member-losses]
    python benchmarks/uncertainty.py --quick          # smoke run for the tests (tiny, minutes)

Data (benchmarks/data/README.md), split by whole trajectories, never by frames:

* train: the AIMD reference's 300, 400 and 500 K trajectories (ethanol, 120 frames; the
  model's early-stopping validation comes out of these);
* calibration: ethanol at 300/400/500 K, trajectories 3 and 5 of ``ethanol_id`` (own velocity
  seeds): what a campaign's hold-out labels are to it; the error bars are scaled here;
* in distribution (ID): trajectory 4 of ``ethanol_id`` (same temperatures, other seeds);
* out of distribution, each judged against ID: ``hot`` (the reference's 700 and 800 K
  trajectories), ``hot, equilibrated`` (four more, frames from 200 fs on), ``dimethyl ether`` and
  ``acetic acid`` (molecules never trained on, same elements), ``stretched`` (one bond of an ID
  frame pulled to 1.25-1.6x, DFT-labelled);
* development families, judged against the calibration frames (designs and defaults are chosen
  here; the final families above only report): ``dev: 600 K`` (the reference's 600 K trajectory),
  ``dev: stretched`` (calibration trajectory 3's bonds stretched), ``dev: hot`` (as ``hot``, seeds 3700, 3800).

Per seed (training seeds vary): one model with the shipped defaults (``model.heads`` heads on
one backbone), a scalar-head model (``model.head: scalar``, the default's training seed: its
accuracy and cost, the baseline the categorical design must match) and four one-head models
(the design before heads; together a 4-member committee, DP-GEN's max_devi_f, also calibrated
on the calibration set). Signals: ``forces_std`` (max over atoms), ``energy_std``,
``energy_entropy``, mutual information, the one-head histogram std, the committee, the
default's ``latent_distance`` (its last-layer features against the training atoms', a
k-nearest-neighbour density; also mapped into eV/Å and eV by the calibration's power law),
LLPR on the pooled features (Bigi et al. 2024, a published single-model method), the default's
posterior with 8 or 32 random weight draws instead of its 8 principal directions
(``VARIANTS``) and a trivial one (the model's mean |F|). Printed: accuracy (the default over one
head and over the scalar head), cost; per OOD family novelty AUROC and median signal OOD/ID
beside the error's; Spearman vs per-structure force MAE; coverage of the 68% / 95% intervals,
miscalibration area, NLL; per-atom localisation (stretched).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from ase.io import read

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from uncertainty_analysis import (  # noqa: E402
    COMMITTEE,
    as_error_bars,
    calibrate,
    calibrated,
    committee,
    errors,
    mean_sd,
    signals,
    stretched_bond,
    write_arrays,
)

from orchestrator.outputs.metrics import auroc, spearman  # noqa: E402
from workers.model.calibration import coverage, gaussian_nll, miscalibration_area  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
REFERENCE = DATA / "ethanol_aimd_hf_sto3g.extxyz"
ID_FILE = DATA / "ethanol_id_hf_sto3g.extxyz"
FAMILIES = {  # name -> (file, frame filter)
    "hot": (REFERENCE, lambda a: a.info["temperature_k"] >= 700),
    "hot, equilibrated": (DATA / "ethanol_hot_test_hf_sto3g.extxyz", lambda a: True),
    "dimethyl ether": (DATA / "dimethyl_ether_400k_hf_sto3g.extxyz", lambda a: True),
    "acetic acid": (DATA / "acetic_acid_500k_hf_sto3g.extxyz", lambda a: True),
    "stretched": (DATA / "ethanol_stretched_hf_sto3g.extxyz", lambda a: True),
}
DEV_FAMILIES = {  # development families (judged against the calibration frames): designs are chosen here
    "dev: 600 K": (REFERENCE, lambda a: a.info["temperature_k"] == 600),
    "dev: stretched": (DATA / "ethanol_stretched_dev_hf_sto3g.extxyz", lambda a: True),
    "dev: hot": (DATA / "ethanol_hot_dev_hf_sto3g.extxyz", lambda a: True),
}
SETS = {
    "train": (REFERENCE, lambda a: a.info["temperature_k"] <= 500),
    "calibration": (ID_FILE, lambda a: a.info["trajectory"] in (3, 5)),
    "id": (ID_FILE, lambda a: a.info["trajectory"] == 4),
    **FAMILIES,
    **DEV_FAMILIES,
}
PER_ATOM = ("forces", "forces_std", "energies_std", "forces_std_heads", "latent_distance")
PER_STRUCTURE = (
    "energy",
    "energy_std",
    "energy_std_heads",
    "energy_entropy",
    "energy_mutual_information",
    "latent_distance_max",
    "embedding",
)


def load_sets(quick: bool) -> dict:
    out = {}
    for name, (path, keep) in SETS.items():
        frames = [a for a in read(path, index=":") if keep(a)]
        out[name] = frames[:: 4 if quick and name == "train" else 1][: 12 if quick and name != "train" else None]
    return out


def outputs(model, frames: list, uncertainty: bool = True) -> dict:
    """Predictions on ``frames``: energies [n], forces / per-atom stds (lists of [n_atoms, ...]);
    without ``uncertainty`` energies and forces only (the scalar head's rows)."""
    import torch

    from workers.model.graph import collate

    param = next(model.parameters())
    rows: dict = {}
    with torch.enable_grad():
        for start in range(0, len(frames), 64):
            chunk = frames[start : start + 64]
            batch = collate(chunk).to(param.device, param.dtype)
            out = model(batch, uncertainty=uncertainty, heads_spread=uncertainty and model.cfg.heads > 1)
            bounds = np.concatenate([[0], np.cumsum(batch.n_atoms.numpy())])
            for key, value in out.items():
                v = value.detach().double().numpy()
                if key in PER_ATOM:
                    rows.setdefault(key, []).extend(v[bounds[k] : bounds[k + 1]] for k in range(len(chunk)))
                elif key in PER_STRUCTURE:
                    rows.setdefault(key, []).extend(v)
    return {k: (v if k in PER_ATOM else np.array(v)) for k, v in rows.items()}


MD_STRIDE = 24  # the demo's sampling.stride: MD asks for forces_std on every 24th step only
VARIANTS = {  # rows: the default model's posterior with other weight perturbations, recalibrated on their own
    "8 random draws": ("random", 8),  # model.llpr_directions: random, the default before; the same cost
    "32 random draws": ("random", 32),  # less sampling noise, 4x the backward passes
}


def time_per_structure(model, frames: list, uncertainty: bool | int, repeats: int) -> float:
    """Seconds per structure of one model call, batches of 16: bare energy + forces, or with
    ``uncertainty`` (forces_std) on every call, or (an int ``k``) MD's pattern: forces_std on
    every ``k``-th call, the others bare (as ``workers.sampling.run_batched`` calls them)."""
    import torch

    from workers.model.graph import collate

    param = next(model.parameters())
    batch = collate(frames[:16]).to(param.device, param.dtype)
    every = uncertainty if type(uncertainty) is int else (1 if uncertainty else 0)
    model(batch, uncertainty=bool(every))  # warm-up
    t0 = time.perf_counter()
    with torch.enable_grad():
        for k in range(repeats):
            recording = bool(every) and (k + 1) % every == 0
            model(batch, uncertainty=recording, bare=not recording)
    return (time.perf_counter() - t0) / (repeats * batch.n_structures)


def run_one(job: dict) -> dict:
    """Train one model (a worker process, one torch thread) and predict on every set."""
    import torch

    torch.set_num_threads(1)
    from workers.model import ModelConfig, TrainConfig, train
    from workers.model.backbone import BackboneConfig

    sets = load_sets(job["quick"])
    bb = BackboneConfig(features=16, layers=2) if job["quick"] else BackboneConfig()
    extra = {"llpr_reg": job["llpr_reg"]} if job.get("llpr_reg") else {}
    model_cfg = ModelConfig(heads=job["heads"], backbone=bb, head=job.get("head", "categorical"), **extra)
    cfg = TrainConfig(
        epochs=job["epochs"], batch_size=8, lr=1e-3, seed=job["train_seed"], member_losses=job["member_losses"]
    )
    t0 = time.perf_counter()
    model = train(cfg, sets["train"], model_cfg=model_cfg).model
    wall = time.perf_counter() - t0
    reps = 2 if job["quick"] else 20
    if job["kind"] == "scalar":  # the regression baseline: accuracy and cost only
        return {"job": job, "train_s": wall, "sets": {n: outputs(model, f, uncertainty=False) for n, f in sets.items()},
                "s_per_structure": time_per_structure(model, sets["id"], False, reps)}  # fmt: skip
    from workers.model.calculator import recalibrate
    from workers.model.calibration import Calibration

    cal = recalibrate(model, sets["calibration"])  # as a campaign does on its hold-out labels
    model.calibration = Calibration()  # raw stds below; the analysis applies ``cal`` (and a plain scale)
    out = {"job": job, "train_s": wall, "sets": {}, "calibration": cal}
    for name, frames in sets.items():
        out["sets"][name] = outputs(model, frames)
    out["s_per_structure"] = time_per_structure(model, sets["id"], False, reps)
    out["s_per_structure_uncertainty"] = time_per_structure(model, sets["id"], True, reps)
    md_calls = 2 * MD_STRIDE if job["quick"] else 5 * MD_STRIDE
    out["s_per_structure_md"] = time_per_structure(model, sets["id"], MD_STRIDE, md_calls)
    if job["kind"] == "heads":  # the same posterior with other weight perturbations
        from workers.model.posterior import principal_directions, weight_draws

        out["variants"] = {}
        for label, (how, k) in VARIANTS.items():
            make = principal_directions if how == "principal" else weight_draws
            model.llpr_draws = make(model.llpr_root, k).to(model.llpr_draws)  # this model only
            variant = {"calibration": recalibrate(model, sets["calibration"]), "sets": {}}
            model.calibration = Calibration()
            for name, frames in sets.items():
                variant["sets"][name] = outputs(model, frames)
            variant["s_per_structure_md"] = time_per_structure(model, sets["id"], MD_STRIDE, md_calls)
            out["variants"][label] = variant
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--heads", type=int, default=None, help="heads of the multi-head model (default: the shipped)")
    p.add_argument("--member-losses", action=argparse.BooleanOptionalAction, default=None,
                   help="each head fits forces itself (default: the shipped training.member_losses)")  # fmt: skip
    p.add_argument("--jobs", type=int, default=2, help="trainings at once, one torch thread each")
    p.add_argument("--quick", action="store_true", help="2 seeds, 3 epochs, tiny model, 12 frames a set")
    p.add_argument("--arrays", type=Path, default=None,
                   help="write per-atom raw stds, distances, errors of every seed and set (.npz)")  # fmt: skip
    args = p.parse_args(argv)
    from workers.model import ModelConfig, TrainConfig

    heads = args.heads or ModelConfig().heads
    member_losses = TrainConfig().member_losses if args.member_losses is None else args.member_losses
    seeds, epochs = (2, 3) if args.quick else (args.seeds, args.epochs)
    sets = load_sets(args.quick)
    print(f"machine: {platform.machine()}, {args.jobs} trainings at once x 1 torch thread; {epochs} epochs, "
          f"seeds 0-{seeds - 1}; heads {heads}, member_losses {member_losses}")  # fmt: skip
    print("sets: " + ", ".join(f"{k} {len(v)}" for k, v in sets.items()))
    t_all = time.perf_counter()
    jobs = []
    for s in range(seeds):
        base = {"epochs": epochs, "quick": args.quick, "member_losses": member_losses, "seed": s}
        jobs.append({**base, "kind": "heads", "heads": heads, "train_seed": 7919 * s})
        # the scalar (MSE) head, one head, the same training seed: what the categorical design costs in accuracy
        jobs.append({**base, "kind": "scalar", "heads": 1, "head": "scalar", "train_seed": 7919 * s})
        jobs += [{**base, "kind": "one", "heads": 1, "train_seed": 7919 * s + 1009 * k} for k in range(COMMITTEE)]
    with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as ex:
        runs = list(ex.map(run_one, jobs))
    print(f"trainings: {len(runs)} in {time.perf_counter() - t_all:.0f} s")

    tests = ["id", *FAMILIES]  # the final sets (reported only)
    judged = ["calibration", *tests, *DEV_FAMILIES]
    per_seed = []
    for s in range(seeds):
        ens = next(r for r in runs if r["job"]["seed"] == s and r["job"]["kind"] == "heads")
        ones = [r for r in runs if r["job"]["seed"] == s and r["job"]["kind"] == "one"]
        scalar = next(r for r in runs if r["job"]["seed"] == s and r["job"]["kind"] == "scalar")
        cal_com = calibrate(committee(ones, "calibration"), sets["calibration"])
        cal_plain = calibrate(ens["sets"]["calibration"], sets["calibration"], power_law_fit=False)
        cal_posterior = calibrate(ens["sets"]["calibration"], sets["calibration"])  # no distance term
        raw_ens = ens["sets"]
        cal_latent = calibrate(as_error_bars(raw_ens["calibration"]), sets["calibration"])
        latent = {n: calibrated(as_error_bars(v), cal_latent) for n, v in raw_ens.items()}
        # the models' stds as they report them (their own recalibration), and the default with a plain scale
        variants = {label: {n: calibrated(v, var["calibration"]) for n, v in var["sets"].items()}
                    for label, var in ens["variants"].items()}  # fmt: skip
        ens = {**ens, "sets": {n: calibrated(v, ens["calibration"]) for n, v in raw_ens.items()}}
        plain = {n: calibrated(v, cal_plain) for n, v in raw_ens.items()}
        posterior = {n: calibrated(v, cal_posterior) for n, v in raw_ens.items()}
        ones = [{**o, "sets": {n: calibrated(v, o["calibration"]) for n, v in o["sets"].items()}} for o in ones]
        res = {"cal_ens": ens["calibration"], "cal_one": ones[0]["calibration"], "cal_com": cal_com,
               "cal_plain": cal_plain, "cal_latent": cal_latent, "latent": latent,
               "cal_posterior": cal_posterior, "posterior": posterior, "ens": ens, "plain": plain, "ones": ones,
               "variants": variants, "scalar": scalar,
               "cal_variants": {label: var["calibration"] for label, var in ens["variants"].items()},
               "sig": {}, "err": {}, "com": {}}  # fmt: skip
        for name in judged:
            com = committee(ones, name)
            res["com"][name] = com
            res["err"][name] = {
                "heads": errors(ens["sets"][name], sets[name]),
                "one": errors(ones[0]["sets"][name], sets[name]),
                "scalar": errors(scalar["sets"][name], sets[name]),
                "committee": errors(com, sets[name]),
            }
            by_variant = {label: v[name] for label, v in variants.items()}
            res["sig"][name] = signals(ens["sets"][name], raw_ens[name], ones[0]["sets"][name], com, by_variant,
                                       posterior[name])  # fmt: skip
            # the ceiling of any signal that tracks the error: the error itself
            res["sig"][name]["oracle: the force MAE itself"] = res["err"][name]["heads"]["force_mae"]
        per_seed.append(res)
    if args.arrays:
        write_arrays(args.arrays, per_seed, [(r["job"], r["sets"]) for r in runs if r["job"]["kind"] == "heads"])

    print(
        "\n1. accuracy (meV, meV/Å; mean±sd over seeds; ratios of the means: the default over one head, "
        "over the scalar head) and cost"
    )
    print(f"{'set':<18} {'E default':>12} {'E one head':>12} {'ratio':>6} {'E scalar':>12} {'ratio':>6} "
          f"{'F default':>12} {'F one head':>12} {'ratio':>6} {'F scalar':>12} {'ratio':>6}")  # fmt: skip
    for name in tests:
        row = f"{name:<18}"
        for quantity in ("energy", "force_mae"):
            d, o, sc = ([r["err"][name][k][quantity].mean() for r in per_seed] for k in ("heads", "one", "scalar"))
            mean = statistics.mean
            row += (f" {mean_sd(d, 1, 1e3):>12} {mean_sd(o, 1, 1e3):>12} {mean(d) / mean(o):>5.2f}x"
                    f" {mean_sd(sc, 1, 1e3):>12} {mean(d) / mean(sc):>5.2f}x")  # fmt: skip
        print(row)
    t_heads = statistics.mean(r["ens"]["train_s"] for r in per_seed)
    t_one = statistics.mean(o["train_s"] for r in per_seed for o in r["ones"])
    inf_one = statistics.mean(o["s_per_structure"] for r in per_seed for o in r["ones"])
    t_scalar = statistics.mean(r["scalar"]["train_s"] for r in per_seed)
    inf_scalar = statistics.mean(r["scalar"]["s_per_structure"] for r in per_seed)
    inf_heads = statistics.mean(r["ens"]["s_per_structure"] for r in per_seed)
    inf_unc = statistics.mean(r["ens"]["s_per_structure_uncertainty"] for r in per_seed)
    inf_md = statistics.mean(r["ens"]["s_per_structure_md"] for r in per_seed)
    inf_variants = ", ".join(
        f"{label} {statistics.mean(r['ens']['variants'][label]['s_per_structure_md'] for r in per_seed) / inf_one:.2f}x"
        for label in VARIANTS
    )
    print(f"cost vs one one-head model: training {t_heads / t_one:.2f}x ({t_heads:.0f} s vs {t_one:.0f} s, "
          f"the posterior fit included); inference energy+forces {inf_heads / inf_one:.2f}x, with forces_std "
          f"on every call {inf_unc / inf_one:.2f}x, as MD calls it (forces_std every {MD_STRIDE}th step) "
          f"{inf_md / inf_one:.2f}x ({1e3 * inf_one:.2f} ms/structure), with {inf_variants}; "
          f"committee x{COMMITTEE}: {COMMITTEE}x each; the scalar head: training {t_scalar / t_one:.2f}x, "
          f"inference energy+forces {inf_scalar / inf_one:.2f}x")  # fmt: skip

    names = list(per_seed[0]["sig"]["id"])
    print("\n2. novelty: AUROC (family vs ID) and median signal family/ID; the error's ratio (heads' force MAE); "
          "development families against the calibration frames")  # fmt: skip
    for fam in [*FAMILIES, *DEV_FAMILIES]:
        ref = "calibration" if fam in DEV_FAMILIES else "id"
        err_ratio = [np.median(r["err"][fam]["heads"]["force_mae"]) / np.median(r["err"][ref]["heads"]["force_mae"])
                     for r in per_seed]  # fmt: skip
        print(f"-- {fam} ({len(sets[fam])} frames): force error ratio {mean_sd(err_ratio, 1)}x")
        for sig in names:
            au, ratio = [], []
            for r in per_seed:
                a, b = r["sig"][ref][sig], r["sig"][fam][sig]
                au.append(auroc(np.concatenate([a, b]), np.r_[np.zeros(len(a), bool), np.ones(len(b), bool)]))
                ratio.append(float(np.median(b) / max(np.median(a), 1e-12)))
            print(f"   {sig:<32} AUROC {mean_sd(au):>10}   ratio {mean_sd(ratio, 1):>10}x")

    print(
        "\n3. ranking: Spearman of each signal vs per-structure force MAE (ID and every family pooled; "
        "committee's signal vs its own errors)"
    )
    for sig in (n for n in names if not n.startswith("oracle")):  # the oracle's is 1 by definition
        rho = []
        for r in per_seed:
            kind = "committee" if sig.startswith("committee") else ("one" if sig.startswith("one head") else "heads")
            x = np.concatenate([r["sig"][n][sig] for n in tests])
            y = np.concatenate([r["err"][n][kind]["force_mae"] for n in tests])
            rho.append(spearman(x, y))
        print(f"   {sig:<32} {mean_sd(rho):>10}")

    print(
        "\n4. calibration (scaled on the calibration trajectories): coverage of the 68% / 95% intervals, "
        "miscalibration area, NLL"
    )
    print(f"   {'':<28} {'set':<15} {'E 68%':>9} {'E 95%':>9} {'F 68%':>9} {'F 95%':>9} {'F miscal':>9} {'F NLL':>9}")
    rows = (("default (forces_std, energy_std)", "heads"), ("default, no distance term", "posterior"),
            ("default, plain scale (power 1)", "plain"),
            *((f"default, {label}", label) for label in VARIANTS), ("latent distance, power law", "latent"),
            ("one head, LLPR", "one"),
            (f"committee x{COMMITTEE}", "committee"))  # fmt: skip
    for label, kind in rows:
        for name in [*tests, *DEV_FAMILIES]:
            cols = {k: [] for k in ("e68", "e95", "f68", "f95", "ma", "nll")}
            for r in per_seed:
                cal = {"heads": r["cal_ens"], "plain": r["cal_plain"], "one": r["cal_one"], "committee": r["cal_com"],
                       "latent": r["cal_latent"], "posterior": r["cal_posterior"],
                       **r["cal_variants"]}[kind]  # fmt: skip
                preds = {"heads": r["ens"]["sets"], "plain": r["plain"], "one": r["ones"][0]["sets"],
                         "committee": r["com"], "latent": r["latent"], "posterior": r["posterior"],
                         **r["variants"]}  # fmt: skip
                pred = preds[kind][name]
                err = r["err"][name]["heads" if kind in ("plain", "latent", "posterior", *VARIANTS) else kind]
                # the model's stds come calibrated; the committee's are mapped here, the same way
                e_std, f_std = pred["energy_std"], np.concatenate(pred["forces_std"])[:, None]
                if kind == "committee":
                    e_std, f_std = cal.energy(e_std), cal.forces(f_std)
                f_err = np.concatenate(err["forces"])
                cols["e68"].append(coverage(err["energy"], e_std))
                cols["e95"].append(coverage(err["energy"], e_std, cal.energy_k95))
                cols["f68"].append(coverage(f_err, f_std))
                cols["f95"].append(coverage(f_err, f_std, cal.forces_k95))
                cols["ma"].append(miscalibration_area(f_err, f_std))
                cols["nll"].append(gaussian_nll(f_err, f_std))
            print(f"   {label:<32} {name:<15} " + " ".join(f"{mean_sd(v):>9}" for v in cols.values()))

    print("\n5. per atom, stretched bonds: fraction whose largest per-atom uncertainty is on the bond's atoms")
    stretched = sets["stretched"]
    bonds = [stretched_bond(a) for a in stretched]
    for label, key in (("forces_std (default)", "forces_std"), ("energies_std (default)", "energies_std"),
                       ("heads' force spread", "forces_std_heads"),
                       ("latent_distance", "latent_distance")):  # fmt: skip
        hits = []
        for r in per_seed:
            per_atom = r["ens"]["sets"]["stretched"].get(key)
            if per_atom is None:
                continue
            hits.append(float(np.mean([int(np.argmax(v)) in b for v, b in zip(per_atom, bonds, strict=True)])))
        print(f"   {label:<28} {mean_sd(hits):>10}  (chance: 2/{len(stretched[0])})")
    hits = [float(np.mean([int(np.argmax(v)) in b for v, b in zip(r["com"]["stretched"]["forces_std"], bonds,
                                                                      strict=True)])) for r in per_seed]  # fmt: skip
    print(f"   {f'committee x{COMMITTEE} forces std':<28} {mean_sd(hits):>10}")
    for label, key in (("default", "cal_ens"), ("default, no distance term", "cal_posterior"),
                       ("default, plain", "cal_plain"),
                       *((f"default, {v}", v) for v in VARIANTS), ("latent distance", "cal_latent"),
                       ("one head", "cal_one"),
                       (f"committee x{COMMITTEE}", "cal_com")):  # fmt: skip
        cals = [r[key] if key in r else r["cal_variants"][key] for r in per_seed]

        def row(field: str, cals=cals) -> str:
            return ", ".join(f"{getattr(c, field):.2f}" for c in cals)

        print(f"calibration, {label} (seeds 0-{seeds - 1}): energy power {row('energy_power')}, k95 "
              f"{row('energy_k95')}; forces power {row('forces_power')}, latent distance's power "
              f"{row('forces_distance_power')}, k95 {row('forces_k95')}")  # fmt: skip
    print(f"wall: {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
