"""Rounds vs asynchronous campaigns: the same campaign, labelling slow and "remote".

    python benchmarks/async.py                 # demo system, 3 seeds, both modes (~26 min on 2 cores)
    python benchmarks/async.py --quick         # smaller campaigns, < 15 min on 2 cores
    python benchmarks/async.py --latency 8 --workers 4 --seeds 3 --set training.epochs=200

Each campaign is ``--config`` with ``dft.emulated_latency_s`` (benchmarks only): every DFT
label is real PySCF plus that many seconds of waiting, charged as DFT time. This stands for
a slower DFT level on other nodes, so the 2 local cores are not what limits labelling; the
trainer and the sampler get one core each in both modes. The default latency (5 s, 3 s with
``--quick``; B3LYP/6-31G ethanol takes ~6 s a label on one core) makes a round's labels take
about as long as its training + MD, where overlapping them can halve the wall time; the
campaign line says how the two compare in rounds mode. Where labelling is much faster than
training, an asynchronous campaign spends its budget on picks of models several generations
old (on an earlier build its 500 K force MAE was 2.5x that of rounds at 2 s a label); much
slower, and there is little to overlap. ``rounds`` trains -> samples ->
labels one phase at a time; ``async`` overlaps them (``campaign.retrain_every`` = the rounds'
``budget.max_labels_per_round``, so both retrain about as often). Both spend the same label
budget from the same initial set and hold-out; a seed moves MD, picks and training (its
first model too) alike in both. The seeds' DFT minimum + Hessian is computed
once and given to every campaign (identical work in both modes, kept out of the timing).

Prints per campaign and per mode (mean [min, max] over seeds): wall time (``campaign.run``,
Ray already up), DFT utilisation over the campaign (label busy time / (span x workers), span
from the first DFT dispatch to the last label), labels charged, and the final model's force
MAE on the campaign's hold-out and on ``TEST`` (MD frames at 500 K), and the last round's
(or generation's) audit force MAE (its random MD frames, before any model trained on them).
The last line reads ``async: utilisation U, wall ratio R (async/rounds)``.
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import time
from pathlib import Path

from ase.io import read
from rich.console import Console

from orchestrator.campaign import Campaign
from orchestrator.cluster.connect import connect
from orchestrator.config import load_config
from orchestrator.outputs.console import Reporter
from orchestrator.references import compute_references, install_references
from workers.model.checkpoint import load_checkpoint
from workers.model.training import evaluate

TEST = Path("benchmarks/data/ethanol_500k_hf_sto3g.extxyz")
MODES = ("rounds", "async")
QUICK = [  # a smaller demo: fewer labels, epochs and MD steps (each campaign 1-2 min)
    "system.initial_labels=12", "budget.holdout_labels=6", "budget.max_labels=74", "budget.max_labels_per_round=14",
    "selection.picks_per_round=12", "training.epochs=150", "warm_start_epochs=100", "sampling.replicas=16",
    "sampling.steps=300", "stop.max_rounds=4", "final_check_md_ps=0.2",
]  # fmt: skip


def run_campaign(config: str, sets: list[str], refs: list[Path]) -> dict:
    cfg = load_config(config, sets)
    out = cfg.output_dir
    install_references(refs, out)  # the shared minimum + Hessian, as the campaign would have stored it
    campaign = Campaign(cfg, Reporter(Console(file=io.StringIO())))
    t0 = time.perf_counter()
    state = campaign.run()
    wall = time.perf_counter() - t0
    final = state.round_info
    model = load_checkpoint(out / "model.pt")[0].eval()
    test = evaluate(model, read(TEST, index=":")) if TEST.exists() else {}
    return {
        "wall_s": wall,
        "utilisation": final["campaign_dft_utilisation"],
        "labels": final["labels_total"],
        "models": len(state.history) + 1,
        "holdout_f": final.get("final_holdout_force_mae", float("nan")),
        # the last round's (generation's) random MD frames, scored before any model trained on them
        # (an async campaign's last generation may end with the budget before its audits)
        "audit_f": next(
            (a for h in reversed(state.history) if (a := h.get("audit_force_mae", float("nan"))) == a), float("nan")
        ),
        "test_f": test.get("force_mae", float("nan")),
        # a round's training + MD and its labelling (s, means over rounds; rounds mode)
        "compute_s": statistics.mean(h["time_train_s"] + h["time_sample_s"] for h in state.history),
        "label_s": statistics.mean(h["time_label_s"] for h in state.history),
    }


def spread(values: list[float], fmt: str = ".3f") -> str:
    return f"{statistics.mean(values):{fmt}} [{min(values):{fmt}}, {max(values):{fmt}}]"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument(
        "--latency", type=float, default=None, help="s of emulated remote DFT per label (default 5, --quick 3)"
    )
    p.add_argument("--workers", type=int, default=4, help="DFT workers (each waits on a 'remote' label)")
    p.add_argument("--out", type=Path, default=Path("runs/async-bench"))
    p.add_argument("--quick", action="store_true", help="smaller campaigns (< 15 min on 2 cores, 3 seeds)")
    p.add_argument("--set", action="append", default=[], help="extra overrides for every campaign")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of rounds, async")
    args = p.parse_args()
    if args.latency is None:
        args.latency = 3.0 if args.quick else 5.0
    if args.out.exists():
        shutil.rmtree(args.out)  # fresh campaigns: a resumed one would not be timed
    args.out.mkdir(parents=True)
    base = [
        # no probes: async campaigns draw none, and rounds must pick as they do
        "selection.probes_per_round=0", *(QUICK if args.quick else []), *args.set,
        f"dft.emulated_latency_s={args.latency}",
        f"ray.dft_workers={args.workers}", "ray.trainer_cpus=1", "ray.sampler_cpus=1", "ray.samplers=1",
        f"tracking.uri=sqlite:///{(args.out / 'mlflow.db').resolve()}", "tracking.experiment=async-bench",
    ]  # fmt: skip
    cfg0 = load_config(args.config, base + ["name=probe"])
    per_round = cfg0.budget.max_labels_per_round
    refs = compute_references(cfg0, args.out / "shared")  # once for every campaign
    connect(cfg0)  # one Ray for every campaign: its start-up is in neither mode's wall time
    print(
        f"{args.config}{' (--quick)' if args.quick else ''}: {cfg0.budget.max_labels} labels, {args.workers} DFT "
        f"workers, {args.latency:g} s emulated latency per label, async retrains every {per_round} labels"
    )
    results: dict[str, list[dict]] = {m: [] for m in MODES}
    for seed in range(args.seeds):
        for mode in [m for m in MODES if m in args.modes.split(",")]:
            name = f"{mode}-s{seed}"
            extra = [f"campaign.mode={mode}", f"campaign.retrain_every={per_round}"]
            if mode == "async":  # generations, not rounds: the budget ends the campaign
                extra.append("stop.max_rounds=1000")
            r = run_campaign(
                args.config, [*base, *extra, f"name={name}", f"seed={seed}", f"out_dir={args.out / name}"], refs
            )
            results[mode].append(r)
            balance = f"; a round: train + MD {r['compute_s']:.0f} s, labels {r['label_s']:.0f} s" * (mode == "rounds")
            print(
                f"  {name:<10} wall {r['wall_s']:6.0f} s  DFT utilisation {r['utilisation']:.2f}  "
                f"labels {r['labels']:.0f}  models {r['models']}  final F MAE hold-out {r['holdout_f']:.3f}, "
                f"500 K test {r['test_f']:.3f}; last audit {r['audit_f']:.3f} eV/Å{balance}",
                flush=True,
            )
    if not all(results.values()):
        return
    print(
        "\nmode     wall (s)             DFT utilisation     labels  F MAE hold-out       F MAE 500 K test     "
        "last audit F MAE"
    )
    for mode in MODES:
        rs = results[mode]
        wall, util = spread([r["wall_s"] for r in rs], ".0f"), spread([r["utilisation"] for r in rs], ".2f")
        print(
            f"{mode:<8} {wall:<20} {util:<19} "
            f"{statistics.mean(r['labels'] for r in rs):<7.0f} {spread([r['holdout_f'] for r in rs]):<20} "
            f"{spread([r['test_f'] for r in rs]):<20} {spread([r['audit_f'] for r in rs])}"
        )
    ratio = statistics.mean(r["wall_s"] for r in results["async"]) / statistics.mean(
        r["wall_s"] for r in results["rounds"]
    )
    u = statistics.mean(r["utilisation"] for r in results["async"])
    accuracy = []
    for key, what in (("holdout_f", "hold-out"), ("test_f", "500 K test"), ("audit_f", "last audit")):
        lo, hi = min(r[key] for r in results["rounds"]), max(r[key] for r in results["rounds"])
        mean = statistics.mean(r[key] for r in results["async"])
        verdict = "above" if mean > hi else "within" if mean >= lo else "below (better than every seed)"
        accuracy.append(f"{what} {mean:.3f} {verdict} [{lo:.3f}, {hi:.3f}]")
    print(
        f"goals: utilisation >= 0.9: {'met' if u >= 0.9 else 'NOT met'}; wall <= 0.6x rounds: "
        f"{'met' if ratio <= 0.6 else 'NOT met'}; async mean F MAE vs rounds' seed range: {'; '.join(accuracy)}"
    )
    print(f"async: utilisation {u:.2f}, wall ratio {ratio:.2f} (async/rounds)")


if __name__ == "__main__":
    main()
