"""Does selection buy accuracy per DFT label? Strategies, random picks and AIMD, one run.

    python benchmarks/active_learning.py [--seeds 3] [--strategies latent-power4,random,...]
    python benchmarks/active_learning.py --scenario hot --passive-sizes ''   # MD beyond the data
    python benchmarks/active_learning.py --quick    # tiny campaigns and sets (tests)

Every campaign is the demo system (configs/demo.yaml: ethanol, RHF/STO-3G, MD at 600 K) with
the same initial set and hold-out (``system.seed`` fixed) and the same label budget; only
``selection.strategy`` and the campaign ``seed`` change (the seed moves the MD, the picks
and every training). Rows: the default ``latent-power4`` (latent distance, each pick's chance in
proportion to its 4th power), ``latent-proportional`` / ``-power2`` (to itself, the default until
2026-12-06 / its square), ``latent-distance`` (its top frames), ``latent-biased`` / ``random-biased``
(from biased MD), ``forces-std``, ``entropy``, ``committee`` (4 scalar-head models, DP-GEN's
max_devi_f), ``random`` (pure: a uniform draw among the MD
frames, no window or diversity step) and ``random-scalar`` (the committee's like-for-like
random baseline). A **passive** row trains the same model (``model``, ``training`` of the
config, ``--passive-epochs`` from scratch) on N frames of ab-initio MD at the target
temperature (benchmarks/data/ethanol_500k_aimd_pool_*), N from ``--passive-sizes``.

Judges (benchmarks/data/README.md): every model a campaign trains is scored on its own
hold-out, the **development** set (500 K AIMD; designs were chosen on it) and the two **final
test** sets (500 K AIMD, trajectories no other set uses, only reported: ``test``, 2
trajectories, ``test_wide``, 6 after 500 fs of MD). Printed: force MAE per round (mean [min,
max] over seeds), labels to each ``--target``, each row's ratio to pure random, and the
AIMD frames passive training needs to match each row. Plots and one MLflow experiment in
``--out``; campaigns already there are resumed (a rerun only re-scores them). ``--retrain-epochs
N`` also trains each campaign's final labels once from scratch (rows ``<strategy>-scratch``: what
``campaign.final_scratch_epochs: N`` makes a campaign's final model), judged like the final models;
``--retrain-tries K`` > 1 guards it as ``campaign.final_scratch_tries: K`` does (trained again on
the next seed while it has imaginary modes at a DFT minimum or frequencies there more than twice as
far off as the campaign's last round's model; the campaign's own model when none holds), and
``--retrain-md-runs R`` also while it breaks a bond in R short MD runs (``final_scratch_md_runs``).

Scenarios beyond the data (initial set at 300 K; judged also on 700-800 K AIMD and by four 2 ps
MD runs of each final model, seeds 0-3, the first what earlier builds ran): ``ramp``, each MD
run ramped 300 -> 1000 K; ``rare``, three replicas in four at 300 K, one at 900 K; ``skewed``,
seven in eight at 150 K, one at 600 K (the frames the 500 K judges need an eighth of the pool);
``sparse``, fifteen in sixteen at 150 K, one at 800 K (MD runs at 800 K); ``sparse_long``, the same
with 2 ps of MD a round (the stability check's length, not 300 fs); each campaign's line gives its
picks' share from the hotter replicas.

``--scenario hot`` is where selection must matter: the initial set at 300 K, MD (and the
hold-out) at 800 K, so the model meets configurations far from its data every round; judged
also on 700-800 K AIMD (``hot``: the reference's; ``hot_eq``: the thermalised final family,
gauche OH in most frames), and by each final model's 2 ps MD at 800 K.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import statistics
from functools import partial
from pathlib import Path

import numpy as np
from ase.io import read
from learning_curves import summarise, verdict  # benchmarks/, beside this script
from rich.console import Console

from orchestrator.campaign import Campaign
from orchestrator.config import load_config
from orchestrator.loop.final import scratch_md_check
from orchestrator.outputs.console import Reporter
from orchestrator.references import compute_references, install_references, minimum_references
from orchestrator.seeds import training_seed
from orchestrator.session import Session
from orchestrator.steps import sound_training
from workers.harmonic import load_reference
from workers.labeller import label_energy
from workers.model.calculator import CatalCalculator
from workers.model.checkpoint import load_checkpoint, save_checkpoint
from workers.model.checks import checked_calculator, pair_names, potential_figures
from workers.model.scans import PROBE_KINDS, cached_reference, holes_text, scans
from workers.model.training import evaluate
from workers.sampling import temperature_at

DATA = Path(__file__).resolve().parent / "data"
# the development set; the final test sets: 2 trajectories (trans OH in every frame), 6 (wide)
JUDGES = {"dev": DATA / "ethanol_500k_hf_sto3g.extxyz", "test": DATA / "ethanol_500k_test_hf_sto3g.extxyz",
          "test_wide": DATA / "ethanol_500k_test_wide_hf_sto3g.extxyz"}  # fmt: skip
POOL = DATA / "ethanol_500k_aimd_pool_hf_sto3g.extxyz"
DEFAULT, BASELINE = "latent-power4", "random"

HOT = {  # the AIMD reference's 700 and 800 K trajectories; the thermalised final family (section 1)
    "hot": (DATA / "ethanol_aimd_hf_sto3g.extxyz", lambda a: a.info["temperature_k"] >= 700),
    "hot_eq": (DATA / "ethanol_hot_test_hf_sto3g.extxyz", lambda a: True),
}
SKEWED_K = [150] * 7 + [600]  # per-replica thermostat targets (K) of the skewed scenario
SPARSE_K = [150] * 15 + [800]  # of the sparse one: one replica in the demo's 16 hot
COOL_START = "system.initial_temperature_k=300"  # every scenario beyond the data: the initial set at 300 K
# scenario -> (overrides for every campaign, extra judges: name -> (file, frame filter))
SCENARIOS = {
    "demo": ([], {}),
    # MD far beyond the initial data: initial set at 300 K, MD (and the hold-out) at 800 K,
    # judged also on the AIMD reference's 700 and 800 K trajectories (no campaign trains on them)
    "hot": ([COOL_START, "sampling.temperature_k=800"], HOT),
    # a heterogeneous pool: each MD run ramps 300 -> 1000 K, so its early frames are what the
    # 300 K initial set already knows and its late ones are not; random picks spend half the
    # labels on the familiar end, a selection that works spends them where the model is wrong
    "ramp": (
        [
            COOL_START,
            "system.holdout_temperature_k=800",
            "sampling.temperature_k=300",
            "sampling.temperature_end_k=1000",
        ],
        HOT,
    ),
    # few informative frames among many redundant ones, as in most campaigns after their first
    # rounds: three replicas in four run at 300 K (what the initial set knows), one in four at
    # 900 K (DP-GEN-style per-replica temperatures); judged where the potential must hold (hot)
    "rare": ([COOL_START, "system.holdout_temperature_k=800", "sampling.temperatures_k=[300,300,300,900]"], HOT),
    # the informative frames a small minority, as in a late campaign's pool: seven replicas in eight
    # at 150 K (below the 300 K initial set's temperature), one at 600 K (past the 500 K judges)
    "skewed": ([COOL_START, "system.holdout_temperature_k=600", f"sampling.temperatures_k={SKEWED_K}"], HOT),
    # the informative frames a sixteenth, hotter than the judges: can random picks hold 800 K MD?
    "sparse": ([COOL_START, "system.holdout_temperature_k=800", f"sampling.temperatures_k={SPARSE_K}"], HOT),
    # the same pool, each round's MD 2 ps (4000 steps), as long as the stability check: the hot
    # replica can meet the holes the final models fall into, and a selection can label the way in
    "sparse_long": (
        [COOL_START, "system.holdout_temperature_k=800", f"sampling.temperatures_k={SPARSE_K}", "sampling.steps=4000"],
        HOT,
    ),
    # MD colder than where the potential must hold: initial set and MD at 300 K, judged on 500 K
    # (dev, test) and 700-800 K AIMD: plain MD's pool lacks what the judges visit, so only a
    # campaign whose MD leaves the data (uncertainty-biased MD, the latent-biased row) can label it
    "cold": ([COOL_START, "sampling.temperature_k=300"], HOT),
}
# scenarios whose final models are also run 2 ps at this temperature here (the campaign's own
# check runs at sampling.temperature_k, which a ramp does not stay at), STABILITY_RUNS times
# (velocity and noise seeds 0, 1, ...; run 0 is the figure printed before 2026-12-06), and through
# the distortion scans (the demo's pool since 2026-12-06 evening: where probes' cost is weighed)
STABILITY_K = {"demo": 600.0, "ramp": 800.0, "rare": 800.0, "cold": 500.0, "skewed": 600.0, "sparse": 800.0,
               "sparse_long": 800.0}  # fmt: skip
STABILITY_RUNS = 4

BIAS_EV = 0.03  # eV per atom, about k_B T at 300 K: a nudge, not a force that breaks bonds
# the probe paths of the rows run before bends joined the default paths (selection.probe_paths)
PINCH_STRETCH = ["selection.probe_paths=[pinch, stretch]"]
TOP = ["selection.draw=top"]  # the top 3 x quota scores, then farthest-point sampling among them
# the most unfamiliar atom's feature-space distance to the training atoms (model.latent_neighbours),
# picks drawn in proportion to it over all but the top 2% (the default until 2026-12-06)
LATENT = ["selection.strategy=latent_distance", "selection.draw=proportional", "selection.window_lo=0.0",
          "model.head=categorical", "selection.draw_power=1"]  # fmt: skip
STRATEGIES = {  # run in this order: the acceptance's pair first, then the sceptic's rows
    DEFAULT: [*LATENT, "selection.draw_power=4"],  # the default: each chance to the distance^4
    BASELINE: ["selection.strategy=random", "model.head=categorical"],
    # the default's draw over every frame no stop rule ended: no quantile ceiling (window_hi 1),
    # so the round's most unfamiliar 2% (the frames at the data's edge) can be picked too
    "latent-power4-uncapped": [*LATENT, "selection.draw_power=4", "selection.window_hi=1.0"],
    # the default's ceiling lifted only for the replicas a stop rule ended (the way into a hole)
    "latent-power4-stopped": [*LATENT, "selection.draw_power=4", "selection.uncap_stopped_replicas=true"],
    # the default with two of each round's picks spent on probes (structures past a turn of the
    # model along pinches and stretches of the replicas' last frames, workers.model.scans.probes)
    "latent-power4-probes": [*LATENT, "selection.draw_power=4", "selection.probes_per_round=2", *PINCH_STRETCH],
    # the same with the probes also turning each hydrogen onto its centre's other neighbours
    # (scans' "bend": the way an H moves between atoms, where scratch-trained models broke bonds)
    "latent-power4-probes-bend": [
        *LATENT,
        "selection.draw_power=4",
        "selection.probes_per_round=2",
        "selection.probe_paths=[pinch, stretch, bend]",
    ],  # fmt: skip
    # both: the uncapped draw (the frames on the way into a hole) and two probes a round (the holes)
    "latent-power4-uncapped-probes": [
        *LATENT,
        "selection.draw_power=4",
        "selection.window_hi=1.0",
        "selection.probes_per_round=2",
        *PINCH_STRETCH,
    ],
    # the stopped replicas' ceiling lifted and two probes a round (the demo config's candidate)
    "latent-power4-stopped-probes": [
        *LATENT,
        "selection.draw_power=4",
        "selection.uncap_stopped_replicas=true",
        "selection.probes_per_round=2",
        *PINCH_STRETCH,
    ],
    "latent-proportional": LATENT,
    "latent-power2": [*LATENT, "selection.draw_power=2"],  # the draw between the two
    # latent-proportional's picks from uncertainty-biased MD (hyperactive learning): each atom's energy
    # lowered by up to BIAS_EV where its latent distance is large, so replicas drift off the data
    "latent-biased": [*LATENT, f"sampling.bias_ev={BIAS_EV}"],
    # random picks from the same biased MD: what the bias buys without the selection
    "random-biased": ["selection.strategy=random", "model.head=categorical", f"sampling.bias_ev={BIAS_EV}"],
    # the same score, its top frames picked (farthest-point among the top 3 x quota)
    "latent-distance": ["selection.strategy=latent_distance", *TOP, "model.head=categorical"],
    # the largest calibrated per-atom force std (eV/Å) from the posterior's random draws: the
    # default selection until 2026-12-05, as docs/results.md section 2 measured it
    "forces-std": [
        "selection.strategy=forces_std",
        *TOP,
        "model.head=categorical",
        "model.llpr_directions=random",
        "model.error_bar_distance=false",
    ],
    "committee": [
        "selection.strategy=committee",
        *TOP,
        "model.head=scalar",
        "model.heads=1",
        "selection.committee_members=4",
    ],  # fmt: skip
    "entropy": ["selection.strategy=entropy", *TOP, "model.head=categorical"],
    # random picks for the one-head scalar model: separates the committee's selection from its model
    "random-scalar": ["selection.strategy=random", "model.head=scalar", "model.heads=1"],
}


def stability(model_path: Path, reference: Path, temperature_k: float, md_ps: float = 2.0,
              scan_ref: dict | None = None) -> dict:  # fmt: skip
    """The final model's frequencies and STABILITY_RUNS x ``md_ps`` of Langevin MD at
    ``temperature_k`` from the seed's DFT minimum (what a campaign logs as ``final_*``, one run
    at its sampling temperature); ``md_text``: the runs' outcome in words; with ``scan_ref``
    (``cached_reference``) also its distortion scans: ``holes`` (scans with one), ``holes_text``,
    and its bends apart (``bend_holes``, ``bend_holes_text``: each hydrogen turned onto its
    centre's other heavy neighbours, the path probes' bends follow; counted apart so the scans'
    figures of the files before them stand)."""
    ref = load_reference(reference)
    model = load_checkpoint(model_path)[0].eval()
    out = potential_figures(model, ref.atoms, ref.hessian_ev_a2, temperature_k, md_ps, md_runs=STABILITY_RUNS)
    if scan_ref is not None:
        calc = CatalCalculator(model.double(), uncertainty=False)
        energy = calc.get_potential_energy
        out["holes"], out["holes_text"] = holes_text(scans(energy, ref.atoms, scan_ref))
        out["bend_holes"], text = holes_text(scans(energy, ref.atoms, scan_ref, kinds=("bend",)))
        out["bend_holes_text"] = f"bends: {text}"
    breaks = [f"run {s} at {t / 1000:.2f} ps: {pair_names(ref.atoms, pairs)}" for s, t, pairs in out["final_md_breaks"]]
    runs = f"{out['final_md_runs_intact']:.0f} of {STABILITY_RUNS} runs of {md_ps:.0f} ps at {temperature_k:.0f} K"
    out["md_text"] = f"{runs} kept every bond" + (f" (changed: {'; '.join(breaks)})" if breaks else "")
    return out


def model_points(campaign: Campaign, state, judges: dict[str, list]) -> list[dict]:
    """Every model a finished campaign trained (one per round, then the final ``model.pt``)
    scored on each judge set: ``train_labels`` and ``<judge>_force_mae`` / ``_energy_mae``."""
    s = campaign.session
    models = [(h["round"], s.run.checkpoint(h["round"])) for h in state.history]
    models.append((state.round + 1, s.run.final_model))  # the final model sees every label
    return [score(load_checkpoint(path)[0].eval(), len(s.training_set(rnd)), judges) for rnd, path in models]


def campaign_picks(campaign: Campaign, state) -> list:
    """Every round's picks (rounds/round_NNN/picks.extxyz) of a finished campaign: its MD picks
    and its probes (``info["probe"]``, no replica)."""
    paths = [campaign.session.run.picks(h["round"]) for h in state.history]
    return [a for path in paths if path.exists() for a in read(path, index=":")]


def hot_share(cfg, picks: list) -> float:
    """Fraction of the MD frames among ``picks`` (those with ``info["replica"]``; probes have
    none) whose replica ran above the coolest of ``cfg.temperatures_k`` (``cfg``: the campaign's
    ``sampling``; nan when every replica runs at one temperature or there are no MD picks)."""
    md = [a for a in picks if "replica" in a.info]
    if cfg.temperatures_k is None or not md:
        return math.nan
    coolest = min(cfg.temperatures_k)
    return float(np.mean([temperature_at(cfg, 0, int(a.info["replica"])) > coolest for a in md]))


def score(model, train_labels: int, judges: dict[str, list]) -> dict:
    point = {"train_labels": train_labels}
    for judge, structures in judges.items():
        m = evaluate(model, structures)
        point[f"{judge}_force_mae"], point[f"{judge}_energy_mae"] = m["force_mae"], m["energy_mae"]
    return point


def scratch_model(cfg, structures: list, epochs: int, seed: int | None = None):
    """The campaign's model (``cfg``) trained from scratch on ``structures`` for ``epochs``
    (training seed ``seed``, else the campaign's)."""
    from workers.model import TrainConfig, train

    seed = training_seed(cfg) if seed is None else seed
    tcfg = TrainConfig(**{**cfg.training.model_dump(), "epochs": epochs, "seed": seed})
    return train(tcfg, structures, model_cfg=cfg.model).model.eval()


def scratch_point(cfg, structures: list, epochs: int, judges: dict) -> dict:
    """``scratch_model`` scored like the campaigns' models."""
    return score(scratch_model(cfg, structures, epochs), len(structures), judges)


def retrained_point(cfg, structures: list, epochs: int, judges: dict, cache: Path, tries: int = 1,
                    session: Session | None = None, rnd: int = 0, md_runs: int = 0) -> dict:  # fmt: skip
    """A finished campaign's training labels ``structures`` trained from scratch (``scratch_model``):
    what its warm-started rounds cost or bought against one training on the same labels (what
    ``campaign.final_scratch_epochs`` makes its final model). ``tries`` > 1: guarded as the
    campaign's option is (``final_scratch_tries``): trained again on the next training seed
    while the model has an imaginary mode at a DFT minimum of the campaign (``session``) or
    frequencies there twice as far off as its last round's (``rnd`` - 1) model's
    (``sound_training``), or with ``md_runs`` > 0 one that breaks a bond in that many short MD
    runs (``scratch_md_check``, ``campaign.final_scratch_md_runs``), and the campaign's own final
    model kept when every try has. Kept in
    ``cache`` and the model beside it (``.pt``, for the MD check; a rerun reads both back)."""
    if not (cache.exists() and cache.with_suffix(".pt").exists()):

        def said(k: int, flaw: str) -> None:
            print(f"{cache.parent.name}: training {k} of {tries} from scratch: {flaw}", flush=True)

        refs = []
        if tries > 1:  # the campaign's own references, as its final training would check
            last = checked_calculator(load_checkpoint(session.run.checkpoint(rnd - 1))[0])
            refs = minimum_references(session.reference_paths(), last)
        train = partial(scratch_model, cfg, structures, epochs)
        md = scratch_md_check(cfg, md_runs)
        model, n = sound_training(train, checked_calculator, training_seed(cfg), tries, refs, said, md)
        kept = model is not None
        model = model if kept else load_checkpoint(session.run.final_model)[0]
        save_checkpoint(cache.with_suffix(".pt"), model)
        point = score(model, len(structures), judges)
        cache.write_text(json.dumps({**point, "trainings": n, "from_scratch": kept} if tries > 1 else point))
    return json.loads(cache.read_text())


def passive_points(cfg, pool: list, sizes: list[int], epochs: int, judges: dict, out: Path) -> list[dict]:
    """The campaign's model (``cfg``: seed ``cfg.seed``) trained from scratch on the first N
    frames of a seeded shuffle of the AIMD ``pool`` (nested sets), for each N in ``sizes``;
    scored like the campaigns' models. Kept in ``out/passive-s<seed>-e<epochs>.json`` (a rerun
    reads them back)."""
    cache = out / f"passive-s{cfg.seed}-e{epochs}.json"
    done = {p["train_labels"]: p for p in json.loads(cache.read_text())} if cache.exists() else {}
    order = np.random.default_rng([cfg.seed, 17]).permutation(len(pool))
    for n in sizes:
        if n not in done:
            done[n] = scratch_point(cfg, [pool[int(i)] for i in order[:n]], epochs, judges)
            cache.write_text(json.dumps(sorted(done.values(), key=lambda p: p["train_labels"])))
        test = done[n].get("test_force_mae", math.nan)
        print(f"passive-s{cfg.seed:<14} {n:>3} AIMD frames: test F MAE {test:.3f} eV/Å", flush=True)
    return [done[n] for n in sizes]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--target", type=float, nargs="+", default=[0.15, 0.10, 0.07, 0.05], help="force MAE, eV/Å")
    p.add_argument("--out", type=Path, default=Path("runs/al-bench"))
    p.add_argument("--quick", action="store_true", help="tiny campaigns and sets, 1 seed, 2 members")
    p.add_argument("--set", action="append", default=[], help="extra overrides for every campaign")
    p.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated subset")
    p.add_argument("--passive-sizes", default="24,48,96,160", help="AIMD frames per passive model ('' = none)")
    p.add_argument("--passive-epochs", type=int, default=600, help="from scratch: a cold round's 300 + more")
    p.add_argument(
        "--retrain-epochs",
        type=int,
        default=0,
        help="also train each campaign's final labels from scratch this long (row <strategy>-scratch)",
    )
    p.add_argument(
        "--retrain-tries",
        type=int,
        default=1,
        help="> 1: retrained on the next seed while the DFT minimum's modes flag it (final_scratch_tries)",
    )
    p.add_argument(
        "--retrain-md-runs",
        type=int,
        default=0,
        help="with --retrain-tries > 1: also retrained while it breaks a bond in this many MD runs "
        "(campaign.final_scratch_md_runs; 0: the frequencies alone, as before that option)",
    )
    p.add_argument("--scenario", choices=list(SCENARIOS), default="demo",
                   help="demo; hot, ramp, rare, skewed, sparse, cold: beyond the data")  # fmt: skip
    args = p.parse_args()
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if set(strategies) - set(STRATEGIES):
        p.error(f"--strategies from {list(STRATEGIES)}")
    config = "tests/data/tiny_campaign.yaml" if args.quick else args.config
    seeds = [0] if args.quick else list(range(args.seeds))
    cut = 6 if args.quick else None
    scenario_sets, extra_judges = SCENARIOS[args.scenario]
    judges = {name: read(path, index=":")[:cut] for name, path in JUDGES.items()}
    judges |= {name: [a for a in read(path, index=":") if keep(a)][:cut] for name, (path, keep) in extra_judges.items()}
    sizes = [int(s) for s in args.passive_sizes.split(",") if s.strip()]
    if args.quick:
        sizes, args.passive_epochs = [min(s, 8) for s in sizes[:2]], 5
    uri = f"sqlite:///{(args.out / 'mlflow.db').resolve()}"
    args.out.mkdir(parents=True, exist_ok=True)

    # the seeds' DFT minimum + Hessian: computed once, a copy in each campaign (the same DFT work)
    base = [*scenario_sets, *args.set]
    refs = compute_references(load_config(config, base), args.out / "shared")
    curves: dict[str, list[list[dict]]] = {}
    freqs: dict[str, list[float]] = {}  # the final models' harmonic frequency MAE (cm^-1)
    intact: dict[str, list[float]] = {}  # per final model: its MD runs (STABILITY_RUNS) that kept every bond
    holes: dict[str, list[int]] = {}  # per final model: its distortion scans with a hole (workers.model.scans)
    bend_holes: dict[str, list[int]] = {}  # per final model: its bends with a hole
    scan_ref = None  # DFT along the seed's distortion scans, where final models are judged off their data
    if args.scenario in STABILITY_K and not args.quick:
        dft = load_config(config, base).dft
        scan_ref = cached_reference(load_reference(refs[0]).atoms, lambda a: label_energy(a, dft),
                                    args.out / "shared" / "scan_reference.json", kinds=PROBE_KINDS)  # fmt: skip

    def run_in_md(row: str, model_path: Path) -> dict:
        """``stability`` of one row's model, its intact runs and holes tallied under ``row``."""
        md = stability(model_path, refs[0], STABILITY_K[args.scenario], scan_ref=scan_ref)
        intact.setdefault(row, []).append(md["final_md_runs_intact"])
        holes.setdefault(row, []).append(md["holes"])
        bend_holes.setdefault(row, []).append(md["bend_holes"])
        return md

    for strategy in strategies:
        overrides = STRATEGIES[strategy]
        if args.quick and strategy == "committee":
            overrides = [*overrides[:-1], "selection.committee_members=2"]
        for seed in seeds:
            name = f"{strategy}-s{seed}" if args.scenario == "demo" else f"{strategy}-{args.scenario}-s{seed}"
            sets = [
                "selection.probes_per_round=0",  # the demo config's probes: only the rows that name them
                *overrides, *base, f"name={name}", f"seed={seed}", f"out_dir={args.out / name}",
                f"tracking.uri={uri}", "tracking.experiment=active-learning",
            ]  # fmt: skip
            cfg = load_config(config, sets)
            resume = (args.out / name / "state.json").exists()
            if not resume:
                install_references(refs, cfg.output_dir)
            campaign = Campaign(cfg, Reporter(Console(file=io.StringIO())))
            state = campaign.run(resume=resume)  # a finished campaign just reports
            judged = {"holdout": campaign.session.store.holdout_structures(), **judges}
            points = model_points(campaign, state, judged)
            curves.setdefault(strategy, []).append(points)
            final = points[-1]
            if args.retrain_epochs:  # the same labels, one training from scratch
                labels = campaign.session.training_set(state.round + 1)
                tried = f"-t{args.retrain_tries}" if args.retrain_tries > 1 else ""
                tried += f"-md{args.retrain_md_runs}" if args.retrain_tries > 1 and args.retrain_md_runs else ""
                cache = args.out / name / f"retrained-e{args.retrain_epochs}{tried}.json"
                point = retrained_point(cfg, labels, args.retrain_epochs, judged, cache, args.retrain_tries,
                                        campaign.session, state.round, args.retrain_md_runs)  # fmt: skip
                curves.setdefault(f"{strategy}-scratch", []).append([point])
                if args.scenario in STABILITY_K and not args.quick:  # run like the final models
                    md = run_in_md(f"{strategy}-scratch", cache.with_suffix(".pt"))
                    freqs.setdefault(f"{strategy}-scratch", []).append(md["final_freq_mae_cm"])
                    print(f"{name + '-scratch':<22} {len(labels):>3} training labels from scratch: dev "
                          f"{point['dev_force_mae']:.3f}, test_wide {point['test_wide_force_mae']:.3f} eV/Å; "
                          f"{md['md_text']}; {md['holes_text']}; {md['bend_holes_text']}", flush=True)  # fmt: skip
            wall = sum(h.get(k, 0.0) for h in state.history for k in ("time_train_s", "time_sample_s", "time_label_s"))
            others = "".join(f", {j} {final[f'{j}_force_mae']:.3f}" for j in ["test_wide", *extra_judges])
            if args.scenario in STABILITY_K and not args.quick:
                md = run_in_md(strategy, campaign.session.run.final_model)
                stable = f"{md['md_text']}; {md['holes_text']}; {md['bend_holes_text']}"
            else:  # the final model's own check, one run at the sampling temperature
                md = state.round_info
                kept = "bonds intact" if md.get("final_md_bonds_intact") else "a bond broke"
                stable = f"{md.get('final_md_ps_run', 0):.1f} ps MD at {cfg.sampling.temperature_k:.0f} K: {kept}"
            share = hot_share(cfg.sampling, campaign_picks(campaign, state))
            hot = f"; picks from the hotter replicas {100 * share:.0f}%" if math.isfinite(share) else ""
            freqs.setdefault(strategy, []).append(md.get("final_freq_mae_cm", math.nan))
            print(
                f"{name:<22} {final['train_labels']:>3} training labels: final model F MAE hold-out "
                f"{final['holdout_force_mae']:.3f}, dev {final['dev_force_mae']:.3f}, "
                f"test {final['test_force_mae']:.3f}{others} eV/Å{hot}; frequencies {freqs[strategy][-1]:.1f} cm^-1; "
                f"{stable}; rounds' phases {wall:.0f} s",
                flush=True,
            )
    pool = read(POOL, index=":") if sizes else []  # read when needed (a campaign's hours may come first)
    if sizes:
        curves["passive"] = [
            passive_points(load_config(config, [*base, f"seed={s}"]), pool, sizes, args.passive_epochs, judges,
                           args.out)
            for s in seeds
        ]  # fmt: skip
    stride = int(pool[1].info["step"] - pool[0].info["step"]) if len(pool) > 1 else 1
    campaigns = {k: v for k, v in curves.items() if k != "passive"}
    summarise(campaigns, "holdout", [], args.out)
    summarise(curves, "dev", [], args.out)
    for judge in [*extra_judges, "test_wide"]:
        summarise(curves, judge, args.target, args.out)
    plot = summarise(curves, "test", args.target, args.out)
    for judge in ["dev", *extra_judges, "test", "test_wide"]:
        verdict(curves, judge, args.target, stride, BASELINE)
    print("final models' harmonic frequency MAE vs DFT (cm^-1), mean [min, max] over seeds")
    for strategy, f in freqs.items():
        print(f"  {strategy:<14} {statistics.mean(f):.1f} [{min(f):.1f}, {max(f):.1f}]")
    if intact:
        print(f"final models' MD at {STABILITY_K[args.scenario]:.0f} K: runs that kept every bond, per seed")
        for strategy, n in intact.items():
            print(f"  {strategy:<14} {', '.join(f'{k:.0f}' for k in n)} ({sum(n):.0f} of {STABILITY_RUNS * len(n)})")
        scanned = {"distortion scans (pinched H pairs, stretched bonds)": holes,
                   "bends (each H turned onto its centre's other heavy neighbours)": bend_holes}  # fmt: skip
        for paths, tally in scanned.items():
            print(f"final models' {paths} with a hole, per seed")
            for strategy, n in tally.items():
                print(f"  {strategy:<14} {', '.join(map(str, n))} ({sum(n)} holes)")
    print(f"\nplot: {plot}\nMLflow: mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000")


if __name__ == "__main__":
    main()
