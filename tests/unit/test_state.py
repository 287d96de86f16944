from pathlib import Path

import numpy as np
import pytest

from orchestrator.config import load_config
from orchestrator.initial import initial_items
from orchestrator.records.state import CampaignState, load_state, save_state
from workers.errors import DamagedFile
from workers.structures import load_seed_structures


@pytest.fixture(scope="module")
def water_modes():
    """H2O's normal modes at HF/STO-3G (a real PySCF minimum + Hessian, under a second)."""
    from ase.build import molecule

    from workers.dft import DFTConfig
    from workers.harmonic import harmonic_reference
    from workers.normal_modes import normal_modes

    ref = harmonic_reference(molecule("H2O"), DFTConfig())
    return [normal_modes(ref.atoms, ref.hessian_ev_a2)]


def _items(overrides, modes):
    cfg = load_config("configs/demo.yaml", ["system.structures=H2O", *overrides])
    return cfg, initial_items(cfg, load_seed_structures("H2O"), modes)


def test_state_round_trips_atomically(tmp_path):
    s = CampaignState(round=3, phase="selected", history=[{"round": 1, "x": 0.5}], round_info={"t": 1.0})
    save_state(tmp_path, s)
    assert load_state(tmp_path) == s
    assert not (tmp_path / "state.tmp").exists()


@pytest.mark.parametrize("initial", ["normal_modes", "rattle"])
def test_initial_items_are_deterministic_and_sized(initial, water_modes):
    modes = water_modes if initial == "normal_modes" else None
    cfg, a = _items([f"system.initial={initial}"], modes)
    _, b = _items([f"system.initial={initial}"], modes)
    origins = [o for _, o in a]
    assert origins.count("seed") == cfg.system.initial_labels
    assert origins.count("holdout") == cfg.budget.holdout_labels
    assert all((x.positions == y.positions).all() for (x, _), (y, _) in zip(a, b, strict=True))
    hold = [x for x, o in a if o == "holdout"]
    train = [x for x, o in a if o == "seed"]
    assert not any((h.positions == t.positions).all() for h in hold for t in train)


def test_stop_reasons_in_order():
    from orchestrator.config import StopConfig
    from orchestrator.steps import stop_reason

    last = {"round": 2, "holdout_force_mae": 0.2, "frac_candidate": 0.3, "budget_refused": 0.0}
    stop = StopConfig(max_rounds=5, target_force_mae=0.1, converged_candidate_fraction=0.1)
    assert stop_reason(last, stop, labels_left=10) == ""
    assert stop_reason(last, stop, labels_left=0) == "budget exhausted"
    assert stop_reason({**last, "budget_refused": 1.0}, stop, 10) == "budget exhausted"
    assert stop_reason({**last, "holdout_force_mae": 0.05}, stop, 10).startswith("hold-out force MAE")
    assert stop_reason({**last, "frac_candidate": 0.02}, stop, 10).startswith("converged")
    assert stop_reason({**last, "round": 5}, stop, 10) == "max rounds (5) reached"


@pytest.mark.parametrize("initial", ["normal_modes", "rattle"])
def test_initial_set_depends_on_system_seed_not_campaign_seed(initial, water_modes):
    modes = water_modes if initial == "normal_modes" else None

    def pos(*overrides):
        return [a.positions for a, _ in _items([f"system.initial={initial}", *overrides], modes)[1]]

    assert all((x == y).all() for x, y in zip(pos(), pos("seed=7"), strict=True))
    assert not all((x == y).all() for x, y in zip(pos(), pos("system.seed=7"), strict=True))


def test_normal_mode_sets_start_at_the_minimum_and_the_holdout_runs_at_the_md_temperature(water_modes):
    cfg, items = _items(["sampling.temperature_k=600", "system.initial_temperature_k=200"], water_modes)
    initial = [a for a, o in items if o == "seed"]
    holdout = [a for a, o in items if o == "holdout"]
    minimum = water_modes[0].atoms
    assert np.allclose(initial[0].positions, minimum.positions)  # the DFT minimum is labelled too

    def rms(frames):
        return np.sqrt(np.mean([((a.positions - minimum.positions) ** 2).mean() for a in frames]))

    # harmonic amplitudes scale as sqrt(T): the 600 K hold-out is ~sqrt(3)x wider than 200 K
    assert 1.2 < rms(holdout) / rms(initial[1:]) < 2.6
    assert all(a.calc is None for a in initial + holdout)


def test_file_initial_set_and_holdout(tmp_path):
    from ase.build import molecule
    from ase.io import write

    frames = []
    for k in range(10):
        a = molecule("H2O")
        a.rattle(0.02, seed=k)
        frames.append(a)
    write(tmp_path / "frames.extxyz", frames)
    cfg = load_config(
        "configs/demo.yaml",
        ["system.structures=H2O", "system.initial=file", f"system.initial_file={tmp_path / 'frames.extxyz'}",
         "system.initial_labels=6", "budget.holdout_labels=4"],
    )  # fmt: skip
    items = initial_items(cfg, load_seed_structures("H2O"))
    assert [o for _, o in items] == ["seed"] * 6 + ["holdout"] * 4
    assert all(np.allclose(a.positions, f.positions) for (a, _), f in zip(items, frames, strict=True))


def test_training_set_does_not_depend_on_label_arrival_order(tmp_path):
    """The DFT pool returns labels in completion order; training data must not."""
    import numpy as np
    from ase.build import molecule

    from orchestrator.records.store import LabelStore, content_key
    from workers.dft import LabelResult, Status
    from workers.structures import rattled_copies

    cfg = load_config("configs/demo.yaml", [f"out_dir={tmp_path}"])
    dft = cfg.dft_config()
    items = [(a, 0, "seed") for a in rattled_copies(molecule("H2O"), 4, seed=0)]
    items += [(a, 1, "md") for a in rattled_copies(molecule("H2O"), 4, seed=1)]
    items.append((molecule("H2O"), 0, "holdout"))
    orders = []
    for k, perm in enumerate(([0, 1, 2, 3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4, 3, 2, 1, 0])):
        store = LabelStore(tmp_path / f"labels{k}.db")
        for i in perm:
            a, rnd, origin = items[i]
            ok = LabelResult(Status.OK, energy_ev=-1.0, forces_ev_a=np.zeros((3, 3)))
            store.put(content_key(a, dft), a, ok, rnd, origin, charged=True)
        orders.append([a.positions.tobytes() for a in store.training_structures(2)])
        assert len(store.training_structures(1)) == 4  # round 0 only, hold-out excluded
    assert len(orders[0]) == 8 and orders[0] == orders[1]


def test_a_share_of_normal_mode_draws_has_its_rotors_turned():
    """``system.torsions``: every other draw (share 0.5) is the same normal-mode draw with
    its rotatable bonds (ethanol's CH3 and OH) turned, bond lengths kept; the rest, the
    minimum and the draws of share 0 are untouched."""
    from workers.harmonic import load_reference
    from workers.normal_modes import normal_modes

    ref = load_reference(Path("benchmarks/data/ethanol_500k_hf_sto3g.hf_sto-3g.minimum.npz"))
    modes = [normal_modes(ref.atoms, ref.hessian_ev_a2)]

    def draws(share):
        cfg = load_config("configs/demo.yaml", [f"system.torsions={share}"])
        return [a for a, _ in initial_items(cfg, load_seed_structures("CH3CH2OH"), modes)]

    plain, turned = draws(0.0), draws(0.5)
    assert len(plain) == len(turned)
    assert np.array_equal(plain[0].positions, turned[0].positions)  # the minimum
    same = [np.array_equal(p.positions, t.positions) for p, t in zip(plain, turned, strict=True)]
    for draws_k in (same[1:24], same[24:]):  # the initial set's 23 draws, the hold-out's 12
        assert all(draws_k[0::2]) and not any(draws_k[1::2])  # draws 1, 3, 5 ... turned
    for p, t in zip(plain[2:24:2], turned[2:24:2], strict=True):
        assert np.allclose(p.get_distance(0, 1), t.get_distance(0, 1)) and np.allclose(
            p.get_distance(1, 2), t.get_distance(1, 2)
        )


def test_the_campaign_seed_seeds_training_but_seed_0_keeps_training_seed():
    from orchestrator.config import parse_config
    from orchestrator.seeds import training_seed

    def seeds(**raw):
        cfg = parse_config({"name": "t", **raw})
        return [training_seed(cfg, member) for member in range(3)]

    assert seeds() == [0, 1009, 2018]  # seed 0: training.seed as given, members apart
    assert seeds(training={"seed": 5}) == [5, 1014, 2023]
    one, two = seeds(seed=1), seeds(seed=2)
    assert len(set(one + two + seeds())) == 9  # no two campaigns' members share a training seed


def test_seed_formulas_are_those_old_campaigns_resume_on():
    """Every stream's seed, pinned: a changed formula would make a resumed campaign draw
    other structures, MD or models than it started with."""
    from orchestrator.config import parse_config
    from orchestrator.seeds import async_md_seed, filler_seed, holdout_seed, initial_seed, round_md_seed, training_seed

    cfg = parse_config({"name": "t", "seed": 3, "system": {"seed": 2}, "training": {"seed": 5}})
    assert round_md_seed(cfg, 4) == 3004
    assert async_md_seed(cfg, 2, 7) == 3000 + 7919 * 2 + 7
    assert training_seed(cfg, 1) == 5 + 7919 * 3 + 1009
    assert initial_seed(cfg) == 2 * 7919
    assert (holdout_seed(cfg), filler_seed(cfg)) == (10_000_019 + 2 * 7919, 20_000_003 + 2 * 7919)


def test_a_damaged_or_missing_state_falls_back_to_the_one_saved_before(tmp_path):
    save_state(tmp_path, CampaignState(round=1, phase="trained"))
    save_state(tmp_path, CampaignState(round=1, phase="selected"))
    said: list[str] = []
    assert load_state(tmp_path, said.append).phase == "selected" and not said
    (tmp_path / "state.json").write_text('{"round": 1, "pha')  # cut short
    assert load_state(tmp_path, said.append).phase == "trained"
    assert "state.json is damaged" in said[-1] and "state.json.bak" in said[-1]
    (tmp_path / "state.json").unlink()
    assert load_state(tmp_path, said.append).phase == "trained" and "state.json is missing" in said[-1]
    (tmp_path / "state.json").write_text("[1, 2]")
    (tmp_path / "state.json.bak").write_text('{"round": 1, "no_such_field": 0}')
    with pytest.raises(DamagedFile, match=r"state.json.bak is damaged .*no_such_field"):
        load_state(tmp_path)


@pytest.mark.parametrize("scratch", [None, 7])
def test_the_final_model_trains_from_scratch_on_every_label_where_the_config_says(tmp_path, scratch):
    """``campaign.final_scratch_epochs``: the final model starts cold (no weights, no optimizer
    state) for that many epochs on every label; rounds stay warm-started either way."""
    from ase.build import molecule

    from orchestrator.records.rundir import RunDir
    from orchestrator.records.store import LabelStore, content_key
    from orchestrator.steps import training_job
    from workers.dft import LabelResult, Status
    from workers.model import ModelConfig, Potential, save_checkpoint
    from workers.model.backbone import BackboneConfig
    from workers.structures import rattled_copies

    cfg = load_config("configs/demo.yaml", [f"out_dir={tmp_path}", "warm_start_epochs=11", "system.structures=H2O"]
                      + [f"campaign.final_scratch_epochs={scratch or 'null'}"])  # fmt: skip
    run, store, dft = RunDir(tmp_path), LabelStore(tmp_path / "labels.db"), cfg.dft_config()
    for rnd in (0, 1):
        for a in rattled_copies(molecule("H2O"), 3, seed=rnd):
            ok = LabelResult(Status.OK, energy_ev=-2000.0 + a.positions[0, 0], forces_ev_a=np.zeros((3, 3)))
            store.put(content_key(a, dft), a, ok, rnd, "md", charged=True)
    model = Potential.fit(ModelConfig(backbone=BackboneConfig(features=8, layers=1)), store.training_structures())
    run.checkpoint(0).parent.mkdir(parents=True)
    save_checkpoint(run.checkpoint(0), model)

    round_job, final_job = training_job(cfg, run, store, 1), training_job(cfg, run, store, 1, final=True)
    assert (len(round_job.structures), len(final_job.structures)) == (3, 6)  # the final one: every label
    assert round_job.warm_payload is not None and round_job.epochs == 11
    if scratch:
        assert final_job.warm_payload is None and final_job.optimizer_state is None and final_job.epochs == 7
    else:
        assert final_job.warm_payload is not None and final_job.epochs == 11
    fallback = training_job(cfg, run, store, 1, final=True, scratch=False)  # when no training from scratch holds
    assert fallback.warm_payload is not None and fallback.epochs == 11 and len(fallback.structures) == 6
    assert final_job.seed == round_job.seed


def test_a_picks_file_cut_at_any_byte_reads_as_damaged_never_as_a_crash(tmp_path):
    """A resumed campaign checks its picks and audit files (``frames_intact``): cut short at any
    byte, the file reads back fewer frames or raises one of ``TRUNCATED`` (ase raises four kinds,
    by where the cut falls), never another exception that would stop the resume."""
    from ase.build import molecule
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    from orchestrator.loop.repairs import TRUNCATED, frames_in

    frames = []
    for k in range(2):
        a = molecule("CH3CH2OH")
        a.info.update(model_energy=-4200.5 - k, forces_std=0.12, replica=k, step=40)
        a.calc = SinglePointCalculator(a, energy=-4201.0 - k, forces=np.full((len(a), 3), 0.1 * k))
        frames.append(a)
    path = tmp_path / "picks.extxyz"
    write(path, frames, format="extxyz")
    data = path.read_bytes()
    assert frames_in(path) == 2
    last_line = data.rindex(b"\n", 0, len(data) - 1) + 1  # a cut within it can still parse (digits lost)
    kinds = set()
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        try:
            n = frames_in(path)
        except TRUNCATED as err:
            kinds.add(type(err).__name__)
            continue
        assert n < 2 or cut > last_line, cut
    assert {"RuntimeError", "ValueError"} <= kinds, kinds  # the cuts reach the reader's several failures
