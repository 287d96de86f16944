"""Active-learning efficiency: entropy vs committee vs random selection, same start and budget.

    python benchmarks/active_learning.py [--seeds 3] [--target 0.6 0.5 0.4 0.3] [--out runs/al-bench]
    python benchmarks/active_learning.py --quick    # tiny campaigns (tests)
    python benchmarks/active_learning.py --strategies energy-std --backbones painn,mace \
        --set-mace training.epochs=60 --set-mace warm_start_epochs=30   # backbones, same budget

Every campaign is the demo system (configs/demo.yaml) with the same initial set and
hold-out (``system.seed`` fixed) and the same label budget; only ``selection.strategy`` and
the campaign seed change. ``--backbones painn,mace`` runs each strategy on each backbone
(``--set-mace``: overrides for the MACE campaigns only, e.g. fewer epochs for equal time).
``entropy`` and ``random`` use the categorical head, ``committee`` 4 scalar-head members
(DP-GEN), so that row also changes the model: ``random-scalar`` (random picks, scalar head)
is its like-for-like baseline, as ``random`` is entropy's and ``energy-std``'s (the
categorical histogram's standard deviation).

Every model a campaign trains (one per round, then the final one) is scored afterwards on
two judges: the campaign's own hold-out (drawn in round 0) and
the test split of the AIMD reference set (``--test``: ethanol MD frames at 300-800 K, same
DFT level), which is closer to what MD explores. Prints force MAE against the labels each
model was trained on, and the labels needed to reach ``--target`` on the test split;
writes learning-curve plots and logs every campaign to one MLflow experiment. Campaigns
already in ``--out`` are resumed, so a rerun only re-scores them.
"""

from __future__ import annotations

import argparse
import io
import statistics
from pathlib import Path

from ase.io import read
from rich.console import Console

from orchestrator import plots
from orchestrator.campaign import Campaign
from orchestrator.config import load_config
from orchestrator.console import Reporter
from orchestrator.references import compute_references, install_references
from workers.model.checkpoint import load_checkpoint
from workers.model.training import evaluate
from workers.structures import split_by_info

REFERENCE = Path("benchmarks/data/ethanol_aimd_hf_sto3g.extxyz")

STRATEGIES = {
    # the default: the heads' per-atom force spread (benchmarks/uncertainty.py)
    "forces-std": ["selection.strategy=forces_std", "model.head=categorical"],
    "entropy": ["selection.strategy=entropy", "model.head=categorical"],
    "committee": [
        "selection.strategy=committee", "model.head=scalar", "model.heads=1", "selection.committee_members=4",
    ],  # fmt: skip
    "random": ["selection.strategy=random", "model.head=categorical"],
    "energy-std": ["selection.strategy=energy_std", "model.head=categorical"],
    # random picks for the one-head scalar model: separates the committee's selection from its model
    "random-scalar": ["selection.strategy=random", "model.head=scalar", "model.heads=1"],
}


def model_points(campaign: Campaign, state, judges: dict[str, list]) -> list[dict]:
    """Every model a finished campaign trained (one per round, then the final ``model.pt``)
    scored on each judge set: ``train_labels`` (the labels it was trained on) and
    ``<judge>_force_mae`` / ``<judge>_energy_mae``."""
    # the final model sees every label (as Campaign.finalise trains it)
    models = [(h["round"], campaign.checkpoint(h["round"])) for h in state.history]
    models.append((state.round + 1, campaign.out / "model.pt"))
    points = []
    for rnd, path in models:
        model = load_checkpoint(path)[0].eval()
        point = {"train_labels": len(campaign.training_set(rnd))}
        for judge, structures in judges.items():
            m = evaluate(model, structures)
            point[f"{judge}_force_mae"], point[f"{judge}_energy_mae"] = m["force_mae"], m["energy_mae"]
        points.append(point)
    return points


def labels_to_target(points: list[dict], key: str, target: float) -> float:
    """Training labels of the first model whose ``key`` is at or below ``target``."""
    return next((p["train_labels"] for p in points if p[key] <= target), float("nan"))


def summarise(curves: dict[str, list[list[dict]]], key: str, targets: list[float], out: Path, title: str) -> Path:
    """Print mean [min, max] over seeds per model and labels-to-target; plot the curves."""
    print(f"\n{title}: force MAE (eV/Å) of each round's model, mean [min, max] over seeds")
    mean_curves, bands = {}, {}
    for strategy, runs in curves.items():
        n = min(len(r) for r in runs)
        x = [statistics.mean(r[k]["train_labels"] for r in runs) for k in range(n)]
        values = [[r[k][key] for r in runs] for k in range(n)]
        mean_curves[strategy] = (x, [statistics.mean(v) for v in values])
        bands[strategy] = ([min(v) for v in values], [max(v) for v in values])
        cells = [
            f"{lab:.0f}: {statistics.mean(v):.3f} [{min(v):.2f}, {max(v):.2f}]"
            for lab, v in zip(x, values, strict=True)
        ]
        print(f"  {strategy:<14} " + "  ".join(cells))
    for target in targets:
        print(f"  training labels to reach {target} eV/Å, per seed (nan = not reached)")
        for strategy, runs in curves.items():
            print(f"    {strategy:<14} " + ", ".join(f"{labels_to_target(r, key, target):.0f}" for r in runs))
    return plots.learning_curve(
        out, mean_curves, "force MAE (eV/Å), mean and seed range", title, bands, xlabel="DFT labels trained on"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument(
        "--target", type=float, nargs="+", default=[0.6, 0.5, 0.4, 0.3], help="test-split force MAE targets (eV/Å)"
    )
    p.add_argument("--test", type=Path, default=REFERENCE, help="extxyz with info['split']; its test split judges")
    p.add_argument("--out", type=Path, default=Path("runs/al-bench"))
    p.add_argument("--quick", action="store_true", help="tiny campaigns, 1 seed, 2 members")
    p.add_argument("--set", action="append", default=[], help="extra overrides for every campaign")
    p.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated subset of the strategies")
    p.add_argument("--backbones", default="painn", help="comma-separated: painn, mace")
    p.add_argument("--set-mace", action="append", default=[], help="extra overrides for the MACE campaigns")
    args = p.parse_args()
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    if set(strategies) - set(STRATEGIES) or set(backbones) - {"painn", "mace"}:
        p.error(f"--strategies from {list(STRATEGIES)}, --backbones from painn, mace")
    config = "tests/data/tiny_campaign.yaml" if args.quick else args.config
    seeds = [0] if args.quick else list(range(args.seeds))
    uri = f"sqlite:///{(args.out / 'mlflow.db').resolve()}"
    args.out.mkdir(parents=True, exist_ok=True)

    # the seeds' DFT minimum + Hessian: computed once, a copy in each campaign (the same DFT work)
    refs = compute_references(load_config(config, args.set), args.out / "shared")
    judges = {"holdout": []}
    if args.test.exists():
        judges["test"] = split_by_info(read(args.test, index=":"))[1]
    curves: dict[str, list[list[dict]]] = {}
    runs = [(s, b) for s in strategies for b in backbones]
    for strategy, backbone in runs:
        overrides = STRATEGIES[strategy]
        if args.quick and strategy == "committee":
            overrides = [*overrides[:-1], "selection.committee_members=2"]
        if backbone == "mace":
            overrides = [*overrides, "model.backbone.kind=mace", *args.set_mace]
        label = strategy if len(backbones) == 1 else f"{strategy}/{backbone}"
        for seed in seeds:
            name = f"{strategy}-s{seed}" if backbone == "painn" else f"{strategy}-{backbone}-s{seed}"
            sets = [
                *overrides, *args.set, f"name={name}", f"seed={seed}", f"out_dir={args.out / name}",
                f"tracking.uri={uri}", "tracking.experiment=active-learning",
            ]  # fmt: skip
            cfg = load_config(config, sets)
            resume = (args.out / name / "state.json").exists()
            if not resume:
                install_references(refs, cfg.output_dir)
            quiet = Reporter(Console(file=io.StringIO()))
            campaign = Campaign(cfg, quiet)
            # a campaign already in --out is resumed (a finished one just reports)
            state = campaign.run(resume=resume)
            judges["holdout"] = campaign.store.holdout_structures()
            points = model_points(campaign, state, judges)
            curves.setdefault(label, []).append(points)
            final = points[-1]
            phases = ("time_train_s", "time_sample_s", "time_label_s")
            wall = sum(h.get(k, 0.0) for h in state.history for k in phases)
            print(
                f"{name:<22} {final['train_labels']:>3} training labels: final model F MAE "
                f"hold-out {final['holdout_force_mae']:.3f}, test {final.get('test_force_mae', float('nan')):.3f} eV/Å"
                + (f"; rounds' phases {wall:.0f} s" if wall else "")
            )

    plot = summarise(curves, "holdout_force_mae", [], args.out / "learning_curves_holdout.png", "campaign hold-out")
    if "test" in judges:
        plot = summarise(
            curves, "test_force_mae", args.target, args.out / "learning_curves.png", f"test split of {args.test.name}"
        )
    print(f"\nplot: {plot}\nMLflow: mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000")


if __name__ == "__main__":
    main()
