"""Potential checks (frequencies at the potential's own minimum, MD stability, bonds) with a
known calculator: ASE's EMT, whose own Hessian is the reference."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from workers.model.checks import (
    bonds,
    frequencies_vs_reference,
    frequency_limits,
    langevin_runs,
    langevin_stability,
    md_flaw,
    minimum_flaw,
    model_hessian,
    relax_with,
)
from workers.normal_modes import normal_modes


@pytest.fixture(scope="module")
def emt_minimum():
    return relax_with(EMT(), molecule("H2O"), fmax_ev_a=1e-4)


def test_frequencies_against_the_same_potential_agree(emt_minimum):
    hessian = model_hessian(EMT(), emt_minimum)
    assert np.allclose(hessian, hessian.T)
    out = frequencies_vs_reference(EMT(), emt_minimum, hessian)
    assert out["freq_mae_cm"] < 1.0 and out["n_imaginary"] == 0
    assert out["minimum_rmsd_a"] < 1e-3
    # a reference with stiffer bonds: the MAE is the difference of the mode frequencies
    stiffer = frequencies_vs_reference(EMT(), emt_minimum, 1.21 * hessian)
    ref = normal_modes(emt_minimum, hessian).frequencies_cm
    assert stiffer["freq_mae_cm"] == pytest.approx(0.1 * ref.mean(), rel=0.02)  # sqrt(1.21) = 1.1


def test_bond_topology_sees_a_broken_bond():
    a = molecule("H2O")
    assert bonds(a) == {(0, 1), (0, 2)}
    a.positions[1] += [3.0, 0.0, 0.0]
    assert bonds(a) == {(0, 2)}


@pytest.fixture(scope="module")
def emt_n2():
    """EMT's N2 (bond 1.00 Å, well inside the 1.70 Å bond criterion; EMT's H2O bonds are 1.10 Å)."""
    return relax_with(EMT(), molecule("N2"), fmax_ev_a=1e-4)


def test_short_langevin_run_keeps_bonds_and_reports_temperature(emt_n2):
    md = langevin_stability(EMT(), emt_n2, temperature_k=300.0, time_ps=1.0, equilibrate_ps=0.2, seed=1)
    assert md.bonds_intact and md.first_break_fs is None and md.steps_run == 2000
    assert 100.0 < md.mean_temperature_k < 600.0  # 2 atoms over 0.8 ps: a loose bound


def test_langevin_run_stops_at_the_first_bond_change(emt_n2):
    hot = langevin_stability(EMT(), emt_n2, temperature_k=200000.0, time_ps=2.0, seed=0)
    assert not hot.bonds_intact and hot.first_break_fs is not None and hot.broken
    assert hot.steps_run < 4000


def test_langevin_runs_differ_by_seed_and_the_first_is_seed_zero(emt_n2):
    """Each run its own velocities and noise: at 20000 K every run breaks N2, at
    different moments; run k is ``langevin_stability`` with seed k."""
    runs = langevin_runs(EMT(), emt_n2, temperature_k=20000.0, time_ps=2.0, seeds=range(3))
    assert [r.bonds_intact for r in runs] == [False, False, False]
    assert len({r.first_break_fs for r in runs}) > 1  # 30, 310, 20 fs with this ASE
    one = langevin_stability(EMT(), emt_n2, temperature_k=20000.0, time_ps=2.0, seed=1)
    assert runs[1].first_break_fs == one.first_break_fs and runs[1].steps_run == one.steps_run
    cool = langevin_runs(EMT(), emt_n2, temperature_k=300.0, time_ps=0.2, seeds=[0, 1])
    assert all(r.bonds_intact and r.steps_run == 400 for r in cool)


class Tether(Calculator):
    """Every atom on a spring to where it started (``k_ev_a2``): a potential whose every mode is real."""

    implemented_properties = ("energy", "forces")

    def __init__(self, home_a: np.ndarray, k_ev_a2: float = 30.0):
        super().__init__()
        self.home_a, self.k = home_a, k_ev_a2

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        d = self.atoms.positions - self.home_a
        self.results = {"energy": 0.5 * self.k * float((d**2).sum()), "forces": -self.k * d}


@pytest.fixture(scope="module")
def linear_water(emt_minimum):
    """H-O-H straightened (EMT's bond length): a saddle of EMT, its bend two imaginary modes."""
    d = emt_minimum.get_distance(0, 1)
    return Atoms("OH2", positions=[[0.0, 0.0, 0.0], [d, 0.0, 0.0], [-d, 0.0, 0.0]])


def test_a_potential_with_imaginary_modes_the_reference_lacks_is_flawed(emt_minimum, linear_water):
    # at its own minimum, with its own Hessian: nothing to flag
    assert minimum_flaw(EMT(), [(emt_minimum, model_hessian(EMT(), emt_minimum), "seed 0", np.inf)]) == ""
    # a reference minimum (all modes real) where EMT relaxes onto its linear saddle (forces keep it linear)
    flaw = minimum_flaw(EMT(), [(linear_water, 10.0 * np.eye(9), "seed 3", np.inf)])
    assert flaw.startswith("2 imaginary modes at seed 3's DFT minimum (DFT 0;")
    # a reference that has the imaginary modes itself: the potential matches it
    linear = relax_with(EMT(), linear_water, fmax_ev_a=1e-4)
    saddle = model_hessian(EMT(), linear)
    assert normal_modes(linear, saddle).n_imaginary == 2
    assert minimum_flaw(EMT(), [(linear, saddle, "seed 3", np.inf)]) == ""


def test_frequencies_further_off_than_the_limit_are_a_flaw(emt_minimum):
    """The limit: a ratio of the frequency MAE of the model a new training replaces (here EMT
    itself, against a reference 1.21x stiffer: every mode 10% off)."""
    stiffer = [(emt_minimum, 1.21 * model_hessian(EMT(), emt_minimum), "seed 1", np.inf)]
    mae = frequencies_vs_reference(EMT(), emt_minimum, stiffer[0][1])["freq_mae_cm"]
    assert mae > 50.0  # a tenth of water's mean wavenumber
    lenient, strict = frequency_limits(stiffer, EMT(), ratio=2.0), frequency_limits(stiffer, EMT(), ratio=0.5)
    assert lenient[0][3] == pytest.approx(2 * mae) and strict[0][3] == pytest.approx(mae / 2)
    assert minimum_flaw(EMT(), lenient) == ""
    assert (
        minimum_flaw(EMT(), strict) == f"frequency MAE {mae:.0f} cm^-1 at seed 1's DFT minimum (at most {mae / 2:.0f})"
    )


def test_a_flawed_training_is_tried_again_on_the_next_seed_then_given_up(linear_water):
    from orchestrator.seeds import retry_seed
    from orchestrator.steps import sound_training

    refs = [(linear_water, 10.0 * np.eye(9), "seed 0", np.inf)]
    tether = Tether(linear_water.positions.copy())
    trained, heard = [], []

    def train(seed: int) -> int:
        trained.append(seed)
        return seed

    # EMT (flawed) for the first two seeds, the tether (sound) after: the third training is kept
    calc_of = lambda seed: EMT() if len(trained) < 3 else tether  # noqa: E731
    out, n = sound_training(train, calc_of, 5, 4, refs, lambda k, flaw: heard.append((k, flaw[:17])))
    assert (out, n) == (retry_seed(5, 2), 3) and trained == [5, retry_seed(5, 1), retry_seed(5, 2)]
    assert heard == [(1, "2 imaginary modes"), (2, "2 imaginary modes")]
    assert len(set(trained) | {5 + 7919 * k for k in range(1, 100)}) == 3 + 99  # no campaign's training seed
    trained.clear()
    assert sound_training(train, lambda seed: EMT(), 5, 2, refs) == (None, 2) and len(trained) == 2
    trained.clear()  # no reference stored (initial: rattle): the first training is kept unchecked
    assert sound_training(train, lambda seed: EMT(), 5, 2, []) == (5, 1) and trained == [5]


def test_md_flaw_names_the_first_guard_run_that_changed_bonds(emt_n2):
    """EMT's N2 keeps its bond at 300 K and loses it at 20000 K; the flaw is the first guard run
    (seed GUARD_MD_SEED, not a stability check's 0, 1, ...) and its moment."""
    from workers.model.checks import GUARD_MD_SEED

    refs = [(emt_n2, np.eye(6), "seed 0", np.inf)]
    assert md_flaw(EMT(), refs, 300.0, 0.2, runs=2) == ""
    flaw = md_flaw(EMT(), refs, 20000.0, 2.0, runs=2)
    first = langevin_stability(EMT(), emt_n2, 20000.0, 2.0, seed=GUARD_MD_SEED)
    assert not first.bonds_intact
    when = f"{first.first_break_fs / 1000:.2f} ps"
    assert flaw == f"bonds changed (N0-N1) {when} into MD run 1 of 2 at 20000 K from seed 0's DFT minimum"
    assert md_flaw(EMT(), refs, 20000.0, 2.0, runs=0) == ""


def test_a_training_sound_at_the_minimum_but_broken_in_md_is_tried_again(linear_water, emt_n2):
    """``sound_training``'s ``md`` check runs where the minimum has no flaw: a training whose MD
    breaks a bond is retrained on the next seed, and given up when every one does."""
    from orchestrator.seeds import retry_seed
    from orchestrator.steps import sound_training

    refs = [(linear_water, 10.0 * np.eye(9), "seed 0", np.inf)]
    tether = Tether(linear_water.positions.copy())
    trained, checked = [], []

    def train(seed: int) -> int:
        trained.append(seed)
        return seed

    def md(calc, references) -> str:  # the first training's MD breaks a bond, the second's does not
        checked.append((calc, references))
        return "bonds changed" if len(trained) < 2 else ""

    out, n = sound_training(train, lambda seed: tether, 5, 3, refs, None, md)
    assert (out, n) == (retry_seed(5, 1), 2) and checked == [(tether, refs), (tether, refs)]
    trained.clear(), checked.clear()
    assert sound_training(train, lambda seed: tether, 5, 2, refs, None, lambda c, r: "broke") == (None, 2)
    trained.clear()  # a flaw at the minimum: no MD run for that training
    assert sound_training(train, lambda seed: EMT(), 5, 1, refs, None, md) == (None, 1) and checked == []
