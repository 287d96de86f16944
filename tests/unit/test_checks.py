"""Potential checks (frequencies at the potential's own minimum, MD stability, bonds) with a
known calculator: ASE's EMT, whose own Hessian is the reference."""

import numpy as np
import pytest
from ase.build import molecule
from ase.calculators.emt import EMT

from workers.model.checks import (
    bonds,
    frequencies_vs_reference,
    langevin_runs,
    langevin_stability,
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
