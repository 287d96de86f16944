"""Active-learning efficiency: entropy vs committee vs random selection, same start and budget.

    python benchmarks/active_learning.py [--seeds 3] [--target 2.0 1.8 1.6] [--out runs/al-bench]
    python benchmarks/active_learning.py --quick    # tiny campaigns (tests)

Every campaign is the demo system (configs/demo.yaml) with the same initial set and
hold-out (``system.seed`` fixed) and the same label budget; only ``selection.strategy`` and
the campaign seed change. ``entropy`` and ``random`` use the categorical head, ``committee``
4 scalar-head members (DP-GEN), so that row also changes the model. Prints hold-out force
MAE after each round against labels used, and labels needed to reach ``--target``;
writes a learning-curve plot and logs every campaign to one MLflow experiment.
"""

from __future__ import annotations

import argparse
import io
import statistics
from pathlib import Path

from rich.console import Console

from orchestrator import plots
from orchestrator.campaign import Campaign
from orchestrator.config import load_config
from orchestrator.console import Reporter

STRATEGIES = {
    "entropy": ["selection.strategy=entropy", "model.head=categorical"],
    "committee": ["selection.strategy=committee", "model.head=scalar", "selection.committee_members=4"],
    "random": ["selection.strategy=random", "model.head=categorical"],
}


def labels_to_target(history: list[dict], target: float) -> float:
    for h in history:
        if h["holdout_force_mae"] <= target:
            return h["labels_total"]
    return float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--target", type=float, nargs="+", default=[2.0, 1.8, 1.6], help="hold-out force MAE targets (eV/Å)")
    p.add_argument("--out", type=Path, default=Path("runs/al-bench"))
    p.add_argument("--quick", action="store_true", help="tiny campaigns, 1 seed, 2 members")
    p.add_argument("--set", action="append", default=[], help="extra overrides for every campaign")
    args = p.parse_args()
    config = "tests/data/tiny_campaign.yaml" if args.quick else args.config
    seeds = [0] if args.quick else list(range(args.seeds))
    uri = f"sqlite:///{(args.out / 'mlflow.db').resolve()}"
    args.out.mkdir(parents=True, exist_ok=True)

    curves: dict[str, list[list[dict]]] = {}
    for strategy, overrides in STRATEGIES.items():
        if args.quick and strategy == "committee":
            overrides = [*overrides[:-1], "selection.committee_members=2"]
        for seed in seeds:
            name = f"{strategy}-s{seed}"
            sets = [
                *overrides, *args.set, f"name={name}", f"seed={seed}", f"out_dir={args.out / name}",
                f"tracking.uri={uri}", "tracking.experiment=active-learning",
            ]  # fmt: skip
            cfg = load_config(config, sets)
            quiet = Reporter(Console(file=io.StringIO()))
            state = Campaign(cfg, quiet).run()
            curves.setdefault(strategy, []).append(state.history)
            final = state.history[-1]
            print(
                f"{name:<14} {final['labels_total']:>4.0f} labels, hold-out F MAE {final['holdout_force_mae']:.4f} eV/Å"
            )

    print(f"\nhold-out force MAE (eV/Å) after each round, mean over {len(seeds)} seed(s)")
    for strategy, runs in curves.items():
        rounds = min(len(r) for r in runs)
        cells = []
        for k in range(rounds):
            labels = statistics.mean(r[k]["labels_total"] for r in runs)
            cells.append(f"{labels:.0f}:{statistics.mean(r[k]['holdout_force_mae'] for r in runs):.3f}")
        print(f"  {strategy:<10} " + "  ".join(cells) + "   (labels:MAE)")
    for target in args.target:
        print(f"\nlabels to reach hold-out force MAE <= {target} eV/Å, per seed (nan = not reached)")
        for strategy, runs in curves.items():
            values = [labels_to_target(r, target) for r in runs]
            print(f"  {strategy:<10} " + ", ".join(f"{v:.0f}" for v in values))
    mean_curves = {}
    for strategy, runs in curves.items():
        rounds = min(len(r) for r in runs)
        x = [statistics.mean(r[k]["labels_total"] for r in runs) for k in range(rounds)]
        y = [statistics.mean(r[k]["holdout_force_mae"] for r in runs) for k in range(rounds)]
        mean_curves[strategy] = (x, y)
    plot = plots.learning_curve(args.out / "learning_curves.png", mean_curves, "hold-out force MAE (eV/Å)", "selection")
    print(f"\nplot: {plot}\nMLflow: mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000")


if __name__ == "__main__":
    main()
