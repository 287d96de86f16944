"""Liquid water at GFN1-xTB: is the campaign's potential one to run MD with? (issue #32)

    python benchmarks/water.py --campaign runs/water_xtb [--md-ps 10] [--out DIR]

Judged on the 40 frames of trajectory 2 of ``benchmarks/data/water32_300k_gfn1xtb.extxyz``
(300 K GFN1-xTB MD of a box the campaign never saw; benchmarks/data/README.md):

1. force MAE (eV/Å), stress MAE (eV/Å^3, Voigt components) and energy MAE per atom (eV, no
   offset removed) of the campaign's ``model.pt``, beside a zero-force / zero-stress baseline
   and a **passive** model: the campaign's model and training configs trained from scratch on
   as many random frames of xTB MD (trajectory 1, the pool) as the campaign labelled for
   training, for as many epochs as the campaign's final model saw in all;
2. ``--md-ps`` of Langevin NVT at 300 K (0.5 fs, friction 0.01 / fs, the batched engine) with
   the campaign's model from the seed box: it must finish with no two atoms closer than
   0.7 Å (the cell, hence the density, is fixed by NVT and checked), and its O-O radial
   distribution's first peak must lie within 0.1 Å of the xTB MD's (trajectories 1 and 2).

Writes ``water.json`` into ``--out`` (default: the campaign folder).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from ase.io import read

REFERENCE = Path(__file__).parent / "data" / "water32_300k_gfn1xtb.extxyz"
MIN_DISTANCE_A = 0.7


def oo_rdf(frames, r_max: float = 4.9, dr: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """The O-O radial distribution ``g(r)`` (minimum image, up to half the cell) over ``frames``."""
    from ase.geometry import get_distances

    edges = np.arange(0.0, r_max + dr, dr)
    counts = np.zeros(len(edges) - 1)
    n_o, volume = 0, 0.0
    for f in frames:
        o = f.positions[f.numbers == 8]
        _, d = get_distances(o, cell=f.cell, pbc=f.pbc)
        counts += np.histogram(d[np.triu_indices(len(o), 1)], edges)[0] * 2
        n_o, volume = len(o), f.get_volume()
    shell = 4 / 3 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    g = counts / (len(frames) * n_o * (n_o - 1) / volume * shell)
    return 0.5 * (edges[1:] + edges[:-1]), g


def first_peak(r: np.ndarray, g: np.ndarray) -> float:
    """Where g(r) peaks between 2.3 and 3.3 Å (the first hydration shell), smoothed over 0.1 Å."""
    smooth = np.convolve(g, np.ones(5) / 5, mode="same")
    inside = (r > 2.3) & (r < 3.3)
    return float(r[inside][np.argmax(smooth[inside])])


def figures(model, frames) -> dict:
    """Force, stress and energy-per-atom MAEs of ``model`` on labelled periodic ``frames``."""
    from workers.model.calculator import predict

    preds = predict(model, frames, batch_size=8, uncertainty=False)
    df = np.concatenate([(p["forces"] - f.get_forces()).ravel() for p, f in zip(preds, frames, strict=True)])
    ds = np.concatenate([p["stress"] - f.get_stress() for p, f in zip(preds, frames, strict=True)])
    de = np.array([(p["energy"] - f.get_potential_energy()) / len(f) for p, f in zip(preds, frames, strict=True)])
    return {"force_mae": float(np.abs(df).mean()), "stress_mae": float(np.abs(ds).mean()),
            "energy_mae_per_atom": float(np.abs(de).mean())}  # fmt: skip


def passive_model(cfg, pool: list, n: int, epochs: int, seed: int):
    """The campaign's model trained from scratch on ``n`` random frames of the xTB MD pool."""
    from workers.model.training import train

    pick = np.random.default_rng(seed).choice(len(pool), size=min(n, len(pool)), replace=False)
    tc = cfg.training.model_copy(update={"epochs": epochs, "seed": cfg.training.seed + cfg.seed})
    return train(tc, [pool[k] for k in sorted(pick)], model_cfg=cfg.model).model


def md_check(model, start, md_ps: float, seed: int) -> dict:
    """Langevin NVT at 300 K from ``start``: stops, closest approach, temperature, O-O RDF peak."""
    from workers.sampling import MDConfig, run_md

    steps, stride = int(round(md_ps * 2000)), 40
    cfg = MDConfig(replicas=1, temperature_k=300.0, timestep_fs=0.5, friction_per_fs=0.01, steps=steps,
                   stride=stride, seed=seed,
                   stops={"min_distance_a": MIN_DISTANCE_A, "check_topology": False})  # fmt: skip
    t0 = time.perf_counter()
    frames = run_md(model, [start], cfg)
    wall = time.perf_counter() - t0
    closest = min(float(np.min(f.get_all_distances(mic=True)[np.triu_indices(len(f), 1)])) for f in frames)
    kept = frames[len(frames) // 10 :]  # after the first tenth (equilibration)
    temps = [f.get_temperature() for f in kept]
    r, g = oo_rdf(kept)
    return {
        "md_ps_run": frames[-1].info["step"] * 0.5 / 1000.0,
        "md_stop_reason": frames[-1].info["stop_reason"],
        "md_min_distance_a": closest,
        "md_volume_change": float(max(abs(f.get_volume() / start.get_volume() - 1) for f in frames)),
        "md_mean_temperature_k": float(np.mean(temps)),
        "md_rdf_peak_a": first_peak(r, g),
        "md_wall_s": wall,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--campaign", type=Path, required=True, help="a finished campaign folder (configs/water_xtb.yaml)")
    p.add_argument("--reference", type=Path, default=REFERENCE)
    p.add_argument("--md-ps", type=float, default=10.0)
    p.add_argument("--passive-epochs", type=int, default=None,
                   help="default: the campaign's epochs (first round + warm starts)")  # fmt: skip
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from orchestrator.config import load_campaign_config
    from orchestrator.records.rundir import RunDir
    from workers.model.checkpoint import load_checkpoint

    run = RunDir(args.campaign)
    cfg = load_campaign_config(run.config, args.campaign)
    model, _ = load_checkpoint(run.final_model, map_location="cpu")
    model = model.float().eval()
    frames = read(args.reference, ":")
    test = [f for f in frames if f.info["split"] == "test"]
    pool = [f for f in frames if f.info["split"] == "pool"]
    store = cfg.label_store()
    n_train = len(store.training_structures())
    rounds = max(s.round for s in store.labels())
    epochs = args.passive_epochs or cfg.training.epochs + rounds * (cfg.warm_start_epochs or cfg.training.epochs)
    out = {"n_test_frames": len(test), "campaign_training_labels": n_train, "campaign_rounds": rounds}
    out["campaign"] = figures(model, test)
    out["zero"] = {"force_mae": float(np.mean([np.abs(f.get_forces()).mean() for f in test])),
                   "stress_mae": float(np.mean([np.abs(f.get_stress()).mean() for f in test]))}  # fmt: skip
    print(f"campaign: {n_train} training labels over {rounds} rounds", flush=True)
    t0 = time.perf_counter()
    out["passive"] = figures(passive_model(cfg, pool, n_train, epochs, cfg.seed).float().eval(), test)
    out["passive"].update({"frames": min(n_train, len(pool)), "epochs": epochs, "train_s": time.perf_counter() - t0})
    seed_box = read(cfg.system.structures)
    out["md"] = md_check(model, seed_box, args.md_ps, cfg.seed)
    ref_r, ref_g = oo_rdf([f for f in frames if f.info["split"] in ("pool", "test")])
    out["md"]["xtb_rdf_peak_a"] = first_peak(ref_r, ref_g)
    md = out["md"]
    md["stable"] = bool(md["md_stop_reason"] == "" and md["md_min_distance_a"] >= MIN_DISTANCE_A
                        and md["md_ps_run"] >= args.md_ps - 1e-9 and md["md_volume_change"] < 1e-9)  # fmt: skip
    md["rdf_peak_shift_a"] = md["md_rdf_peak_a"] - md["xtb_rdf_peak_a"]
    print(f"{'':<10}{'force MAE eV/Å':>16}{'stress MAE meV/Å^3':>20}{'E MAE meV/atom':>16}")
    for name in ("campaign", "passive", "zero"):
        row = out[name]
        e = f"{1000 * row['energy_mae_per_atom']:>16.2f}" if "energy_mae_per_atom" in row else f"{'-':>16}"
        print(f"{name:<10}{row['force_mae']:>16.3f}{1000 * row['stress_mae']:>20.2f}{e}")
    print(f"passive: {out['passive']['frames']} xTB MD frames, {epochs} epochs ({out['passive']['train_s']:.0f} s)")
    print(f"MD {md['md_ps_run']:.1f} ps at 300 K: {'stable' if md['stable'] else 'NOT stable: ' + md['md_stop_reason']}"
          f", closest atoms {md['md_min_distance_a']:.2f} Å, mean T {md['md_mean_temperature_k']:.0f} K, "
          f"O-O RDF first peak {md['md_rdf_peak_a']:.2f} Å vs xTB {md['xtb_rdf_peak_a']:.2f} Å "
          f"({md['rdf_peak_shift_a']:+.2f}), {md['md_wall_s']:.0f} s")  # fmt: skip
    dest = (args.out or args.campaign) / "water.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=1))
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
