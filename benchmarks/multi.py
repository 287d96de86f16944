"""One potential for several molecules against one potential per molecule, side by side.

    python benchmarks/multi.py --out runs/multi-bench          # about 25 min on 2 cores
    python benchmarks/multi.py --quick --out /tmp/multi-quick  # tiny, for CI

Runs ``configs/multi.yaml`` (ethanol, acetic acid and acetamide in one campaign, 1.9x the
demo's labels) and, in the same run, ``configs/demo.yaml`` on each molecule alone (the whole
demo budget on it, selecting as the multi config does), then scores every final model on each molecule's AIMD set (whole
trajectories the campaigns never saw; benchmarks/data/README.md): force and energy MAE (no
offset removed), the ratio multi / single (asked: <= 1.3), each system's share of the
multi campaign's picks (asked: none under 15%) and the wall time of each campaign.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from ase.io import read

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from orchestrator.config import load_config  # noqa: E402
from workers.model.checkpoint import load_checkpoint  # noqa: E402
from workers.model.training import evaluate  # noqa: E402

CATAL = str(Path(sys.executable).with_name("catal"))
DATA = REPO / "benchmarks" / "data"
# each system of configs/multi.yaml: its AIMD judge set (500 K, RHF/STO-3G)
JUDGES = {
    "ethanol": DATA / "ethanol_500k_test_hf_sto3g.extxyz",  # the final test set
    "acetic_acid": DATA / "acetic_acid_500k_hf_sto3g.extxyz",
    "acetamide": DATA / "acetamide_500k_hf_sto3g.extxyz",
}
QUICK = ["budget.max_labels=40", "budget.max_labels_per_round=6", "budget.holdout_labels=3",
         "system.initial_labels=6", "training.epochs=60", "warm_start_epochs=20", "stop.max_rounds=2",
         "sampling.steps=96", "final_check_md_ps=0.02", "campaign.final_scratch_epochs=60"]  # fmt: skip


def campaign(config: str, out: Path, overrides: list[str]) -> float:
    """Run one campaign to its end; its wall seconds."""
    cmd = [CATAL, "run", config, "--set", f"out_dir={out}", *[x for o in overrides for x in ("--set", o)]]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise SystemExit(f"multi: {' '.join(cmd)} failed ({proc.returncode}):\n{tail}")
    return time.perf_counter() - t0


def scores(model_path: Path, frames: list) -> dict:
    model, _ = load_checkpoint(model_path)
    return evaluate(model.eval(), frames)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/multi-bench"))
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(2)
    quick = QUICK if args.quick else []
    multi_cfg = load_config("configs/multi.yaml")
    entries = multi_cfg.system.entries()
    walls = {"multi": campaign("configs/multi.yaml", args.out / "multi", quick)}
    sel = multi_cfg.selection  # the alone campaigns select as the multi campaign does
    same_selection = [f"selection.{k}={getattr(sel, k)}" for k in ("strategy", "draw", "window_lo", "window_hi")]
    for e in entries:  # the demo on this molecule alone, its seed given as in the multi config
        spec = e.structures if e.structures else json.dumps({"smiles": e.smiles})
        walls[e.label] = campaign("configs/demo.yaml", args.out / e.label,
                                  [f"system.structures={spec}", f"name=demo-{e.label}", *same_selection,
                                   *quick])  # fmt: skip
    state = json.loads((args.out / "multi" / "state.json").read_text())
    picks = {e.label: sum(h.get(f"picks/{e.label}", 0.0) for h in state["history"]) for e in entries}
    total = max(sum(picks.values()), 1.0)
    demo_labels = load_config("configs/demo.yaml").budget.max_labels
    print(f"multi campaign: {', '.join(e.label for e in entries)}; {multi_cfg.budget.max_labels} labels "
          f"({multi_cfg.budget.max_labels / demo_labels:.2f}x the demo's {demo_labels}); "
          f"{walls['multi'] / 60:.1f} min on this machine")  # fmt: skip
    print(
        "\n| molecule | AIMD frames | F MAE multi (meV/Å) | F MAE alone | ratio | E MAE multi (meV) | E MAE alone "
        "| ratio | picks share | alone: min |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    ratios = []
    for e in entries:
        frames = read(JUDGES[e.label], index=":")
        m = scores(args.out / "multi" / "model.pt", frames)
        s = scores(args.out / e.label / "model.pt", frames)
        fr, er = m["force_mae"] / s["force_mae"], m["energy_mae"] / s["energy_mae"]
        ratios.append(fr)
        print(f"| {e.label} | {len(frames)} | {1e3 * m['force_mae']:.1f} | {1e3 * s['force_mae']:.1f} | {fr:.2f}x "
              f"| {1e3 * m['energy_mae']:.1f} | {1e3 * s['energy_mae']:.1f} | {er:.2f}x "
              f"| {picks[e.label] / total:.0%} | {walls[e.label] / 60:.1f} |")  # fmt: skip
    final = state["round_info"]
    intact = [f"{e.label} {'intact' if final.get(f'final_md_bonds_intact/{e.label}') else 'BROKE'}" for e in entries]
    ran = load_config(args.out / "multi" / "config.yaml")  # as run (--quick changes it)
    md = f"{ran.final_check_md_ps:g} ps at {ran.sampling.temperature_k:g} K"
    print(f"\nforce MAE ratio multi / alone: max {max(ratios):.2f}x (asked <= 1.3); smallest picks share "
          f"{min(picks.values()) / total:.0%} (asked >= 15%); the multi model's final MD ({md}): "
          f"{', '.join(intact)}")  # fmt: skip


if __name__ == "__main__":
    main()
