"""Several systems in one campaign: config entries, shares, tags, per-system selection and MD
starts, per-structure charge and spin (orchestrator.systems, workers.dft)."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

from orchestrator.config import load_config
from orchestrator.initial import initial_items
from orchestrator.records.store import content_key
from orchestrator.selection import SelectionConfig, rank_frames, selection_rng
from orchestrator.steps import md_starts
from orchestrator.systems import apportion, load_systems, pick_quotas, shares
from workers.dft import DFTConfig, build_molecule, structure_settings
from workers.errors import ConfigError

THREE = [
    "system.structures=[CH3CH2OH, {structures: H2O, weight: 2}, {name: methanol, smiles: CO}]",
    "budget.holdout_labels=8",
]


def _cfg(*overrides):
    return load_config("configs/demo.yaml", [*THREE, *overrides])


def test_apportion_sums_follows_weights_and_keeps_a_floor():
    assert apportion(12, [1, 1, 1]) == [4, 4, 4]
    assert apportion(12, [1, 2, 1]) == [3, 6, 3]
    assert sum(apportion(7, [1, 1, 1])) == 7
    assert apportion(10, [100, 1, 1], floor=1) == [8, 1, 1]  # no system starves
    assert apportion(2, [1, 1, 1], floor=1) == [1, 1, 0]  # a floor the total cannot give is dropped
    assert apportion(0, [1, 2]) == [0, 0]


def test_pick_quotas_share_half_by_weight_and_half_by_need():
    # equal weights, system 0 far more uncertain: it gets the half shared by need, the others
    # keep their share of the half shared by weight (no system under 1/6 of the picks)
    q = pick_quotas(24, [1, 1, 1], [0.9, 0.05, 0.05])
    assert sum(q) == 24 and q[0] > q[1] and min(q) >= 4, q
    assert pick_quotas(24, [1, 1, 1], [0.1, 0.1, 0.1]) == [8, 8, 8]
    # no need known (random picks, or no candidates): by weight alone
    assert pick_quotas(12, [1, 2, 1], [np.nan] * 3) == [3, 6, 3]


def test_a_single_name_is_one_system_as_before():
    cfg = load_config("configs/demo.yaml")
    (entry,) = cfg.system.entries()
    assert entry.label == "CH3CH2OH" and (entry.charge, entry.spin) == (0, 0)
    systems, seeds = load_systems(cfg.system)
    assert [s.name for s in systems] == ["CH3CH2OH"] and seeds[0].info["system"] == "CH3CH2OH"


def test_a_list_of_entries_loads_names_files_and_smiles_tagged():
    cfg = _cfg()
    systems, seeds = load_systems(cfg.system)
    assert [s.name for s in systems] == ["CH3CH2OH", "H2O", "methanol"]
    assert [s.weight for s in systems] == [1.0, 2.0, 1.0]
    assert [a.get_chemical_formula() for a in seeds] == ["C2H6O", "H2O", "CH4O"]
    assert [a.info["system"] for a in seeds] == ["CH3CH2OH", "H2O", "methanol"]
    assert shares(cfg.system, 24) == {"CH3CH2OH": 6, "H2O": 12, "methanol": 6}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["system.structures=[H2O, H2O]"], "distinct names"),
        (["system.structures=[{structures: H2O, smiles: O}]"], "one of structures"),
        (["system.structures=[H2O, {smiles: 'C(C'}]"], "system.structures[1]: SMILES 'C(C': RDKit cannot parse it"),
        (["budget.holdout_labels=2"], "budget.holdout_labels (2) must be at least one per system (3)"),
        (["sampling.replicas=2"], "sampling.replicas (2) must be at least one per system (3)"),
        (["system.structures=[H2O, {structures: OH, spin: 0}]"], "system.structures[1]"),  # odd electrons
    ],
)
def test_bad_system_entries_are_one_line(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config("configs/demo.yaml", [*THREE, *overrides])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_initial_set_and_holdout_are_shared_by_weight_and_tagged():
    cfg = _cfg("system.initial=rattle", "system.initial_labels=8")
    _, seeds = load_systems(cfg.system)
    items = initial_items(cfg, seeds)
    by = {}
    for a, origin in items:
        by.setdefault((origin, a.info["system"]), []).append(a)
    counts = {k: len(v) for k, v in by.items()}
    assert counts == {("seed", "CH3CH2OH"): 2, ("seed", "H2O"): 4, ("seed", "methanol"): 2,
                      ("holdout", "CH3CH2OH"): 2, ("holdout", "H2O"): 4, ("holdout", "methanol"): 2}  # fmt: skip
    formula = {"CH3CH2OH": "C2H6O", "H2O": "H2O", "methanol": "CH4O"}
    assert all(a.get_chemical_formula() == formula[a.info["system"]] for a, _ in items)
    # a lone system draws what it drew before systems existed (system 0's streams unchanged)
    lone = load_config("configs/demo.yaml", ["system.structures=H2O", "system.initial=rattle",
                                             "system.initial_labels=8", "budget.holdout_labels=4"])  # fmt: skip
    _, water = load_systems(lone.system)
    first = [a.positions for a, _ in initial_items(lone, water)]
    assert len(first) == 12 and np.allclose(first[1], initial_items(lone, [molecule("H2O")])[1][0].positions)


def test_md_starts_give_each_system_its_replicas_from_its_own_labels():
    cfg = _cfg()
    systems, seeds = load_systems(cfg.system)
    labelled = [a.copy() for a in seeds for _ in range(3)]
    for k, a in enumerate(labelled):
        a.positions += 0.01 * k
        a.info = {"system": a.info["system"]}  # as the store gives them back: the name only
    starts = md_starts(seeds, [], labelled, 8, systems)
    assert [a.info["system"] for a in starts] == ["CH3CH2OH"] * 2 + ["H2O"] * 4 + ["methanol"] * 2
    assert all(a.info["charge"] == 0 and a.info["spin"] == 0 for a in starts)
    assert np.allclose(starts[0].positions, seeds[0].positions)  # its minimum first, then its newest labels
    assert np.allclose(starts[1].positions, labelled[1].positions)  # its last 2 labels: 1, 2


def _frames(system: str, scores: list[float], start: int) -> list[Atoms]:
    out = []
    for k, score in enumerate(scores):
        a = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
        a.info.update(system=system, forces_std_max=score, embedding=np.array([start + k, 0.0]), stop_reason="")
        out.append(a)
    return out


def test_each_system_ranks_its_own_frames_for_its_share():
    # system a's frames are all more uncertain than any of b's: one ranking on one scale would
    # give a every pick; per system, b keeps its share by weight (and a gets the need share)
    frames = _frames("a", list(np.linspace(1.0, 2.0, 20)), 0) + _frames("b", list(np.linspace(0.01, 0.1, 20)), 100)
    cfg = SelectionConfig(
        strategy="forces_std", draw="top", picks_per_round=12, window_lo=0.0, window_hi=1.0, diversity=False
    )
    ranked = rank_frames(frames, cfg, 0, None, None, selection_rng(0, 1), {"a": 1.0, "b": 1.0})
    got = [frames[int(i)].info["system"] for i in ranked.picks]
    assert got.count("b") >= 3 and got.count("a") > got.count("b") and len(got) == 12
    assert ranked.selection.counts["picked/b"] == got.count("b")
    # within b, its most uncertain frames
    picked = [frames[int(i)].info for i in ranked.picks]
    b_scores = sorted(info["forces_std_max"] for info in picked if info["system"] == "b")
    assert b_scores[0] >= 0.08
    one = rank_frames(frames, cfg, 0, None, None, selection_rng(0, 1))
    assert all(frames[int(i)].info["system"] == "a" for i in one.picks)  # the one-scale ranking it replaces


def test_a_structure_carries_its_charge_and_spin_to_dft():
    cfg = DFTConfig()
    ion = molecule("NH3")
    ion += Atoms("H", positions=[[0.0, 0.0, -1.0]])
    assert structure_settings(ion, cfg) is cfg  # untagged: the campaign's settings
    ion.info.update(charge=1, spin=0)
    assert build_molecule(ion, structure_settings(ion, cfg)).charge == 1
    neutral = ion.copy()
    neutral.info.update(charge=0)
    assert content_key(ion, cfg) != content_key(neutral, cfg)  # the label's settings are in its key
    plain = neutral.copy()
    plain.info.clear()
    assert content_key(neutral, cfg) == content_key(plain, cfg)  # tags equal to the defaults change nothing


def test_async_fillers_take_the_systems_in_turn_and_a_lone_system_draws_as_before():
    from orchestrator.initial import filler_structures

    cfg = _cfg("system.initial=rattle")
    _, seeds = load_systems(cfg.system)
    fillers = filler_structures(cfg, seeds, None, 0, 6)
    assert [a.info["system"] for a in fillers] == ["CH3CH2OH", "H2O", "methanol"] * 2
    lone = load_config("configs/demo.yaml", ["system.structures=H2O", "system.initial=rattle"])
    _, water = load_systems(lone.system)
    one_by_one = [filler_structures(lone, water, None, k, 1)[0].positions for k in range(3)]
    at_once = [a.positions for a in filler_structures(lone, water, None, 0, 3)]
    assert np.allclose(np.stack(one_by_one), np.stack(at_once))
