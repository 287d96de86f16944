"""Every number in README and docs/results.md, regenerated on the current build: one command.

    python benchmarks/run_all.py                 # `make results`: every step, about 11 h on 2 cores
    python benchmarks/run_all.py --only demo,vacf
    python benchmarks/run_all.py --quick         # every step tiny (CI), written under runs/results-quick

Each step runs its benchmark as a subprocess and writes what it printed to
``docs/results/<step>.txt`` under a header naming the command, the commit (and whether the
tree had uncommitted changes), the date, the machine, the versions and the wall time; the
tables in docs/results.md are copied from those files. A step that fails leaves its old
file untouched and the command exits non-zero after the others ran.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
CATAL = str(Path(PY).with_name("catal"))
FINAL_TEST = "benchmarks/data/ethanol_500k_test_hf_sto3g.extxyz"
LARGE_TEST = "benchmarks/data/alanine_dipeptide_300k_hf_sto3g_df.extxyz"
# the large step's DFT minimum + Hessian (and its scans' cache beside it), which large_seeds reads
LARGE_MINIMUM = "{out}/campaign/harmonic/seed_000.npz"


def scenario(
    name: str, seeds: int = 3, strategies: str = "latent-power4,random,latent-proportional,latent-distance,forces-std"
) -> list[str]:
    """The active-learning benchmark's ``--scenario name``: the default (latent-power4) against pure
    random, the draw before it (latent-proportional), its score's top frames and the force std's
    (the error bar's signal), no passive rows."""
    return [PY, "benchmarks/active_learning.py", "--scenario", name, "--seeds", str(seeds), "--passive-sizes", "",
            "--strategies", strategies, "--out", "{out}"]  # fmt: skip


def campaign_and_check(config: str, run: str, sets: list[str], check: list[str], hessian: str = "") -> list[list[str]]:
    """``catal run config`` into ``{out}/run`` (each of ``sets`` a ``--set``), then
    ``potential_check.py`` on its model with ``check``'s arguments, against the DFT minimum and
    Hessian in ``hessian`` (default: the run's own)."""
    return [
        [CATAL, "run", config, "--set", f"out_dir={{out}}/{run}", *(a for item in sets for a in ("--set", item))],
        [PY, "benchmarks/potential_check.py", f"{{out}}/{run}/model.pt", "--hessian",
         hessian or f"{{out}}/{run}/harmonic/seed_000.npz", *check],
    ]  # fmt: skip


def large_check(run: str) -> list[str]:
    """``potential_check.py``'s arguments for a ``configs/large.yaml`` run in ``{out}/run``: its
    300 K AIMD judge, 10 ps at 400 K, the torsions against its labels."""
    return ["--reference", LARGE_TEST, "--temperature", "400", "--labels", f"{{out}}/{run}/labels.extxyz"]


# the rows a sceptic asks for on the demo's pool (the active_learning step)
SCEPTIC = "latent-power4,random,latent-proportional,latent-distance,forces-std,committee,entropy,random-scalar"

# ten rounds of 6 picks + 1 audit instead of the demo's five of 12 + 2: the same 94 training labels
SMALL_ROUNDS = ["--set", "selection.picks_per_round=6", "--set", "selection.audit_per_round=1",
                "--set", "budget.max_labels_per_round=7", "--set", "stop.max_rounds=10"]  # fmt: skip
# five rounds whose warm starts train 300 epochs, not 150: 300 + 5 x 300 epochs, as ten rounds'
# 300 + 10 x 150
LONG_WARM_START = ["--set", "warm_start_epochs=300"]
# the sparse pool's five seeds: the default, random and the stopped replicas' ceiling lifted
SPARSE_STOPPED = scenario("sparse", 5, "latent-power4,random,latent-power4-stopped")
# each campaign's final labels also trained from scratch, 600 epochs, guarded (three tries)
GUARDED_RETRAIN = ["--retrain-epochs", "600", "--retrain-tries", "3"]
# the demo pool's rows with and without the stopped replicas' ceiling lifted, with and without probes
DEMO_STOPPED_ROWS = "latent-power4,latent-power4-probes,random,latent-power4-stopped,latent-power4-stopped-probes"

# step -> (full commands, quick commands); {out} is the step's run folder
STEPS: dict[str, tuple[list[list[str]], list[list[str]]]] = {
    "uncertainty": (
        [[PY, "benchmarks/uncertainty.py", "--seeds", "5", "--epochs", "300", "--arrays", "{out}/arrays.npz"]],
        [[PY, "benchmarks/uncertainty.py", "--quick"]],
    ),
    # the sceptic's rows on the demo's pool, three seeds, with passive training on AIMD: the default,
    # random, the draw before it, the score's top frames, the force std, a committee of 4 (DP-GEN),
    # entropy and random picks for the scalar model (the biased and power-2 rows: their own steps)
    "active_learning": (
        [[PY, "benchmarks/active_learning.py", "--seeds", "3", "--out", "{out}", "--strategies", SCEPTIC]],
        [[PY, "benchmarks/active_learning.py", "--quick", "--out", "{out}"]],
    ),
    # scenario()'s rows on five campaign seeds (the first three: the step above's)
    "active_learning_seeds": ([scenario("demo", 5)], []),
    # MD far beyond the initial data (300 K initial set, 800 K MD): the draw in proportion to the
    # latent distance (latent-proportional, the default until 2026-12-06) against random, five seeds
    "active_learning_hot": ([scenario("hot", 5, "latent-proportional,random")], []),
    # the same pool (the step above's campaigns resumed) with the draw sharpened: score^2, score^4 (the default)
    "active_learning_hot_power": ([scenario("hot", 5, "latent-proportional,random,latent-power2,latent-power4")], []),
    # the same pool in ten smaller rounds (SMALL_ROUNDS), five seeds
    "active_learning_hot_small": ([[*scenario("hot", 5, "latent-proportional,random"), *SMALL_ROUNDS]], []),
    # five rounds with each warm start trained as long as ten rounds train in all (LONG_WARM_START):
    # separates what ten rounds buy by their training from what they buy by their MD and picks
    "active_learning_hot_long": ([[*scenario("hot", 5, "latent-proportional,random"), *LONG_WARM_START]], []),
    # MD ramped 300 -> 1000 K: the default and the draw before it against random, five seeds
    "active_learning_ramp": ([scenario("ramp", 5, "latent-power4,latent-proportional,random")], []),
    # few informative frames: a quarter of the replicas at 900 K, the rest where the initial set is
    "active_learning_rare": ([scenario("rare")], []),
    # the default and the draw before it against random on five campaign seeds of the rare pool (the
    # first three: the step above's)
    "active_learning_rare_seeds": ([scenario("rare", 5, "latent-power4,latent-proportional,random")], []),
    # the informative frames an eighth of the pool (seven replicas in eight at 150 K, one at 600 K):
    # the draw before the default and random, the default (score^4) and the score's top frames
    "active_learning_skewed": ([scenario("skewed", 3, "latent-proportional,random,latent-power4,latent-distance")], []),
    # the same rows on five campaign seeds of that pool (the first three: the step above's)
    "active_learning_skewed_seeds": (
        [scenario("skewed", 5, "latent-proportional,random,latent-distance,latent-power4")],
        [],
    ),
    # the informative frames a sixteenth (fifteen replicas at 150 K, one at 800 K), each final model
    # run four times 2 ps at 800 K: the default against random and the default's draw with no
    # quantile ceiling, five campaign seeds
    "active_learning_sparse": ([scenario("sparse", 5, "latent-power4,random,latent-power4-uncapped")], []),
    # the same pool with 2 ps of MD a round (as long as the stability check), three campaign seeds
    "active_learning_sparse_long": ([scenario("sparse_long", 3, "latent-power4,random,latent-power4-uncapped")], []),
    # the same pool and seeds, the default with two picks a round spent on probes (structures past
    # a turn of the model along pinches and stretches, workers.model.scans.probes)
    "active_learning_sparse_long_probes": ([scenario("sparse_long", 3, "latent-power4-probes")], []),
    # the sparse_long pool and seeds, the uncapped draw and two probes a round together
    "active_learning_sparse_long_uncapped_probes": ([scenario("sparse_long", 3, "latent-power4-uncapped-probes")], []),
    # the same pool and seeds, the ceiling lifted for the frames of replicas a stop rule ended alone
    "active_learning_sparse_long_stopped": ([scenario("sparse_long", 3, "latent-power4-stopped")], []),
    # the demo's pool, three seeds: the default with and without two picks a round spent on probes
    # (the demo config's setting), and random (does probing cost accuracy where MD finds no hole?)
    "active_learning_demo_probes": ([scenario("demo", 3, "latent-power4,latent-power4-probes,random")], []),
    # the skewed pool (the skewed steps' campaigns on seeds 0-2), the same three rows and the uncapped draw
    "active_learning_skewed_probes": (
        [scenario("skewed", 3, "latent-power4,latent-power4-probes,random,latent-power4-uncapped")],
        [],
    ),
    # the same pool and seeds, the ceiling lifted for the replicas a stop rule ended alone
    "active_learning_skewed_stopped": ([scenario("skewed", 3, "latent-power4-stopped")], []),
    # the sparse pool's five seeds (the default's and random's campaigns on disk): the stopped row
    "active_learning_sparse_stopped": ([SPARSE_STOPPED], []),
    # the same campaigns' final labels each trained once from scratch (600 epochs, as passive): what
    # the warm-started rounds cost the rows whose picks include far-off frames
    "active_learning_sparse_scratch": ([[*SPARSE_STOPPED, "--retrain-epochs", "600"]], []),
    # the sparse pool's five seeds, the default and the stopped row, each one's final labels trained
    # from scratch as the option does with its guard (campaign.final_scratch_tries: 3): trained
    # again while the DFT minimum's modes say the training went wrong
    "active_learning_sparse_guarded": (
        [[*scenario("sparse", 5, "latent-power4,latent-power4-stopped"), *GUARDED_RETRAIN]],
        [],
    ),
    # the sparse pool's five seeds on one machine (the default's campaigns the guarded step's): random
    # and two probes a round (the demo config's setting) beside the default: do random picks fail
    # 800 K MD where a selection holds it?
    "active_learning_sparse_probes": ([scenario("sparse", 5, "latent-power4,random,latent-power4-probes")], []),
    # the same campaigns, the default's and the probes row's final labels trained from scratch with
    # the guard (campaign.final_scratch_epochs + final_scratch_tries): does the probes row's error
    # cost sit in its warm-started rounds, as the stopped row's did?
    "active_learning_sparse_probes_guarded": (
        [[*scenario("sparse", 5, "latent-power4,latent-power4-probes"), *GUARDED_RETRAIN]],
        [],
    ),
    # the same five seeds with bends probed too (selection.probe_paths: [pinch, stretch, bend], the
    # demo config's since change P), every row judged along the bends: the pool where 800 K MD
    # breaks most, the probes-and-scratch pairing's best
    "active_learning_sparse_probes_bend_guarded": (
        [[*scenario("sparse", 5, "latent-power4,latent-power4-probes,latent-power4-probes-bend"), *GUARDED_RETRAIN]],
        [],
    ),
    # the demo's and the skewed pool, three seeds each on one machine: the sparse pool's best row
    # (two probes a round, the final labels trained from scratch with the guard) beside the default
    # and random, every row's final labels trained the same way: does the pairing hold off that pool?
    "active_learning_demo_probes_guarded": (
        [
            [
                *scenario("demo", 3, "latent-power4,latent-power4-probes,latent-power4-probes-bend,random"),
                *GUARDED_RETRAIN,
            ]
        ],  # fmt: skip
        [],
    ),
    "active_learning_skewed_probes_guarded": (
        [
            [
                *scenario("skewed", 3, "latent-power4,latent-power4-probes,latent-power4-probes-bend,random"),
                *GUARDED_RETRAIN,
            ]
        ],  # fmt: skip
        [],
    ),
    # the skewed step's probes campaigns, their final labels trained from scratch with the MD check
    # as well (campaign.final_scratch_md_runs: 2): does it keep the scratch models that break bonds out?
    "active_learning_skewed_probes_md_guarded": (
        [[*scenario("skewed", 3, "latent-power4-probes"), *GUARDED_RETRAIN, "--retrain-md-runs", "2"]],
        [],
    ),
    # the demo's pool, three seeds (the probes step's campaigns on disk): the stopped row, alone and
    # with two probes a round (the demo config's candidate), beside the default, probes and random
    "active_learning_demo_stopped": ([scenario("demo", 3, DEMO_STOPPED_ROWS)], []),
    # MD colder than the judges: latent-proportional from uncertainty-biased MD, from plain MD, the
    # default from plain MD, and random
    "active_learning_cold": (
        [scenario("cold", 3, "latent-biased,latent-proportional,random,random-biased,latent-power4")],
        [],
    ),
    # the same biased row with a bias about three times as strong (the strength chosen on the development set)
    "active_learning_cold_strong": ([[*scenario("cold", 3, "latent-biased"), "--set", "sampling.bias_ev=0.1"]], []),
    # the demo's pool (MD where the judges are): does the biased MD cost accuracy there? And the score's
    # top frames (latent-distance) and the default (score^4) beside the draw before it and random
    "active_learning_biased": (
        [scenario("demo", 3, "latent-biased,latent-proportional,random,latent-distance,latent-power4")],
        [],
    ),
    "demo": (
        [
            [CATAL, "run", "configs/demo.yaml", "--set", "out_dir={out}/campaign"],
            [
                PY,
                "benchmarks/potential_check.py",
                "{out}/campaign/model.pt",
                "--reference",
                FINAL_TEST,
                "--hessian",
                "{out}/campaign/harmonic/seed_000.npz",
            ],
        ],
        [
            [CATAL, "run", "tests/data/tiny_campaign.yaml", "--set", "out_dir={out}/campaign"],
            [
                PY,
                "benchmarks/potential_check.py",
                "{out}/campaign/model.pt",
                "--reference",
                FINAL_TEST,
                "--md-ps",
                "0.05",
                "--labels",
                "{out}/campaign/labels.extxyz",
            ],
        ],
    ),  # fmt: skip
    # the demo config as shipped on two molecules the repository has no frames of (acetaldehyde;
    # methylamine, ASE's H3CNH2, whose N no other step has): the checks from each DFT minimum
    "demo_molecules": (
        [
            cmd
            for m in ("CH3CHO", "H3CNH2")
            for cmd in campaign_and_check("configs/demo.yaml", m, [f"system.structures={m}"], [])
        ],
        [],
    ),
    # one potential for three molecules against the demo on each alone, in one run
    "multi": (
        [[PY, "benchmarks/multi.py", "--out", "{out}"]],
        [[PY, "benchmarks/multi.py", "--quick", "--out", "{out}"]],
    ),
    # a 22-atom molecule (the alanine dipeptide) at RHF/STO-3G, judged on its own AIMD frames
    "large": (campaign_and_check("configs/large.yaml", "campaign", [], large_check("campaign")), []),
    # the same campaign on campaign seeds 1 and 2 (MD, picks, training; the initial labels and the
    # seed structure are the system's, so the DFT minimum, Hessian and scans are the large step's)
    "large_seeds": (
        [
            cmd
            for k in (1, 2)
            for cmd in campaign_and_check(
                "configs/large.yaml",
                f"campaign_s{k}",
                [f"seed={k}"],
                large_check(f"campaign_s{k}"),
                hessian=LARGE_MINIMUM,
            )
        ],
        [],
    ),  # fmt: skip
    # a periodic box of 32 waters at GFN1-xTB (tblite): force / stress vs passive xTB MD, 10 ps NVT, O-O RDF
    "water": (
        [
            [CATAL, "run", "configs/water_xtb.yaml", "--set", "out_dir={out}/campaign"],
            [PY, "benchmarks/water.py", "--campaign", "{out}/campaign", "--md-ps", "10"],
        ],
        [
            [CATAL, "run", "tests/data/tiny_cu_emt.yaml", "--set", "out_dir={out}/campaign"],
        ],
    ),
    "async": (
        [[PY, "benchmarks/async.py", "--out", "{out}"]],
        [[PY, "benchmarks/async.py", "--quick", "--out", "{out}"]],
    ),
    # PaiNN vs MACE under the same heads at equal CPU time
    "backbones": (
        [[PY, "benchmarks/heads.py", "--backbone", "painn,mace", "--minutes", "5", "--seeds", "3"]],
        [[PY, "benchmarks/heads.py", "--quick", "--data", "tests/data/ethanol_hf_sto3g.extxyz"]],
    ),
    "vacf": ([[PY, "benchmarks/vacf.py"]], [[PY, "benchmarks/vacf.py"]]),
    # batched MD and training against molecule size (9, 25, 60 atoms)
    "sizes": ([[PY, "benchmarks/md.py", "--sizes"]], [[PY, "benchmarks/md.py", "--sizes", "--steps", "10"]]),
    "bad_input": ([[PY, "-m", "tests.unit.test_bad_inputs"]], [[PY, "-m", "tests.unit.test_bad_inputs"]]),
    "engineering": (
        [
            [PY, "benchmarks/dft_pool.py"],
            [PY, "benchmarks/md.py"],
            [PY, "benchmarks/dispatch.py", "--workers", "1,8,64"],
        ],
        [
            [PY, "benchmarks/dft_pool.py", "--labels", "4"],
            [PY, "benchmarks/md.py", "--steps", "3"],
            [PY, "benchmarks/dispatch.py", "--quick"],
        ],
    ),
}
# steps whose run folder starts empty (a campaign refuses an existing folder)
FRESH = {"demo", "demo_molecules", "multi", "large", "water", "async"}
# steps that resume another step's campaigns (run folder: that step's)
SHARES = {
    "active_learning_seeds": "active_learning",
    "active_learning_rare_seeds": "active_learning_rare",
    "large_seeds": "large",
    "active_learning_hot_power": "active_learning_hot",
    "active_learning_skewed_seeds": "active_learning_skewed",
    "active_learning_sparse_long_probes": "active_learning_sparse_long",
    "active_learning_demo_probes": "active_learning",
    "active_learning_skewed_probes": "active_learning_skewed",
    "active_learning_sparse_long_stopped": "active_learning_sparse_long",
    "active_learning_sparse_long_uncapped_probes": "active_learning_sparse_long",
    "active_learning_skewed_stopped": "active_learning_skewed",
    "active_learning_sparse_stopped": "active_learning_sparse",
    "active_learning_sparse_scratch": "active_learning_sparse",
    "active_learning_sparse_guarded": "active_learning_sparse",
    "active_learning_sparse_probes": "active_learning_sparse",
    "active_learning_sparse_probes_guarded": "active_learning_sparse",
    "active_learning_sparse_probes_bend_guarded": "active_learning_sparse",
    "active_learning_demo_stopped": "active_learning",
    "active_learning_demo_probes_guarded": "active_learning",
    "active_learning_skewed_probes_guarded": "active_learning_skewed",
    "active_learning_skewed_probes_md_guarded": "active_learning_skewed",
}

# files a step reads from another step's runs: without them it stops before running anything
NEEDS = {"large_seeds": [LARGE_MINIMUM]}


def provenance() -> str:
    """Commit, tree state, date, machine and versions: the header of every results file."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    # the docs' own edits do not change what a benchmark measures
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs", ":!README.md")
    dirty = " + uncommitted changes" if changed else ""
    import ase
    import pyscf
    import ray
    import torch

    versions = f"torch {torch.__version__}, PySCF {pyscf.__version__}, Ray {ray.__version__}, ASE {ase.__version__}"
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"commit {git('rev-parse', '--short', 'HEAD')}{dirty}; {machine}, {gpu}; {versions}"


def run_step(name: str, quick: bool, results: Path, runs: Path, extra: list[str] | None = None) -> bool:
    """Run one step's commands (``extra`` arguments added to its first); on success write
    ``results/<name>.txt``. True if it passed."""
    out_dir = runs / SHARES.get(name, name)
    if name in FRESH and out_dir.exists():
        shutil.rmtree(out_dir)
    commands = [[part.replace("{out}", str(out_dir)) for part in cmd] for cmd in STEPS[name][1 if quick else 0]]
    if not commands:
        print(f"[{name}] no quick version: skipped", flush=True)
        return True
    missing = [p for f in NEEDS.get(name, []) if not (p := Path(f.replace("{out}", str(out_dir)))).exists()]
    if missing:
        print(f"[{name}] needs {missing[0]}: run step {SHARES[name]} first", file=sys.stderr)
        return False
    commands[0] += extra or []
    started, build = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), provenance()  # the build it ran on
    t0 = time.perf_counter()
    printed = []
    for cmd in commands:
        shown = " ".join(Path(c).name if c in (PY, CATAL) else c for c in cmd)
        print(f"[{name}] {shown}", flush=True)
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        printed.append(f"$ {shown}\n{proc.stdout}")
        if proc.returncode != 0:
            print(f"[{name}] failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}", file=sys.stderr)
            return False
    wall = time.perf_counter() - t0
    header = f"# {name}: {started}, {wall / 60:.1f} min\n# {build}\n\n"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.txt").write_text(header + "\n".join(printed))
    print(f"[{name}] {wall / 60:.1f} min -> {results / f'{name}.txt'}", flush=True)
    return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(STEPS), help=f"comma-separated steps from {list(STEPS)}")
    p.add_argument("--quick", action="store_true", help="tiny runs; written under runs/results-quick")
    p.add_argument("--runs", type=Path, default=None, help="campaign folders (default runs/results[-quick])")
    p.add_argument(
        "--extra", action="append", default=[], metavar="STEP:ARGS",
        help="more arguments for a step's benchmark, e.g. 'active_learning:--strategies latent-distance,random'",
    )  # fmt: skip
    args = p.parse_args()
    steps = [s.strip() for s in args.only.split(",") if s.strip()]
    if set(steps) - set(STEPS):
        p.error(f"--only from {list(STEPS)}")
    runs = args.runs or REPO / ("runs/results-quick" if args.quick else "runs/results")
    results = runs / "text" if args.quick else REPO / "docs" / "results"
    t0 = time.perf_counter()
    extra: dict[str, list[str]] = {}
    for item in args.extra:
        step, _, more = item.partition(":")
        if step not in STEPS:
            p.error(f"--extra {item!r}: no step {step!r}")
        extra.setdefault(step, []).extend(more.split())
    failed = [s for s in steps if not run_step(s, args.quick, results, runs, extra.get(s))]
    print(f"{len(steps) - len(failed)}/{len(steps)} steps in {(time.perf_counter() - t0) / 60:.1f} min")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
