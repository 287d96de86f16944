"""Normal modes from PySCF Hessians and Boltzmann sampling along them (H2O, CO2 at HF/STO-3G)."""

import numpy as np
import pytest
from ase import units
from ase.build import molecule

from workers.dft import DFTConfig, Status, label
from workers.harmonic import finite_difference_hessian, harmonic_reference, load_reference, save_reference
from workers.normal_modes import normal_modes, sample_displacements, sample_structures


@pytest.fixture(scope="module")
def water():
    ref = harmonic_reference(molecule("H2O"), DFTConfig())
    assert ref.status is Status.OK, ref.reason
    return ref


def test_minimum_and_analytic_hessian_match_finite_differences(water):
    assert water.hessian_method == "analytic" and water.note == ""
    assert water.max_force_ev_a < 0.01  # BFGS fmax
    nm = normal_modes(water.atoms, water.hessian_ev_a2)
    fd = normal_modes(water.atoms, finite_difference_hessian(water.atoms, DFTConfig()))
    assert nm.frequencies_cm.shape == (3,)  # 3N - 6
    assert np.abs(nm.frequencies_cm - fd.frequencies_cm).max() < 2.0  # cm^-1
    # HF/STO-3G water: bend ~2170, stretches ~4140 / ~4391 cm^-1 (HF overestimates)
    assert nm.frequencies_cm == pytest.approx([2170.0, 4140.0, 4391.0], abs=15.0)
    assert nm.n_imaginary == 0


def test_linear_molecule_keeps_3n_minus_5_modes():
    ref = harmonic_reference(molecule("CO2"), DFTConfig())
    assert ref.status is Status.OK
    nm = normal_modes(ref.atoms, ref.hessian_ev_a2)
    assert nm.frequencies_cm.shape == (4,)
    assert (nm.frequencies_cm > 400.0).all()


def test_harmonic_energy_per_mode_is_kt_over_2(water):
    """Equipartition: each mode holds kT/2 of potential energy on average."""
    nm = normal_modes(water.atoms, water.hessian_ev_a2)
    t = 400.0
    dx, e_mode = sample_displacements(nm, t, 20000, np.random.default_rng(1))
    ratio = e_mode.mean(0) / (0.5 * units.kB * t)
    # each mode's energy is kT/2 * chi2(1): relative standard error sqrt(2 / 20000) = 1%
    assert ratio == pytest.approx(np.ones(3), abs=0.05)
    # the displacements do not move the centre of mass (rigid-body motion projected out)
    com_shift = np.einsum("i,nij->nj", nm.masses, dx) / nm.masses.sum()
    assert np.abs(com_shift).max() < 1e-10


def test_dft_energy_of_normal_mode_samples_follows_equipartition(water):
    """The real PySCF energies of the sampled structures: <E - E_min> = (3N-6)/2 kT."""
    nm = normal_modes(water.atoms, water.hessian_ev_a2)
    t, n = 300.0, 60
    de = []
    for a in sample_structures(nm, t, n, seed=5):
        r = label(a, DFTConfig())
        assert r.status is Status.OK
        de.append(r.energy_ev - water.energy_ev)
    de = np.array(de)
    expected = 1.5 * units.kB * t  # 3 modes x kT/2 = 38.8 meV
    stderr = np.sqrt(1.5) * units.kB * t / np.sqrt(n)  # chi2(3) spread of a harmonic sum
    assert abs(de.mean() - expected) < 4.0 * stderr, (de.mean(), expected, stderr)
    assert (de > -1e-4).all()  # nothing below the minimum


def test_reference_round_trips_without_pickle(water, tmp_path):
    path = tmp_path / "seed_000.npz"
    save_reference(path, water)
    back = load_reference(path)
    assert np.allclose(back.hessian_ev_a2, water.hessian_ev_a2)
    assert np.allclose(back.atoms.positions, water.atoms.positions)
    assert (back.atoms.numbers == water.atoms.numbers).all()
    assert back.cost_s == pytest.approx(water.cost_s) and back.hessian_method == "analytic"
    assert not list(tmp_path.glob("*.tmp*"))


def test_failed_scf_is_returned_as_data():
    cfg = DFTConfig(max_cycle=1, ladder=False)
    ref = harmonic_reference(molecule("H2O"), cfg)
    assert ref.status is Status.FAILED and "relax/Hessian" in ref.reason


def test_a_relaxation_stuck_on_a_saddle_steps_down_to_the_minimum():
    """Planar NH3 is the top of the inversion barrier: BFGS from a planar start stays planar
    (the forces have no out-of-plane part); the reference steps down the imaginary mode."""
    from ase import Atoms

    planar = Atoms("NH3", positions=[[0, 0, 0], [1.0, 0, 0], [-0.5, 0.866, 0], [-0.5, -0.866, 0]])
    ref = harmonic_reference(planar, DFTConfig())
    assert ref.status is Status.OK and "saddle point" in ref.note
    nm = normal_modes(ref.atoms, ref.hessian_ev_a2)
    assert nm.n_imaginary == 0 and nm.frequencies_cm.min() > 1000  # the umbrella mode, real again
    height = abs(ref.atoms.positions[0, 2] - ref.atoms.positions[1:, 2].mean())
    assert height > 0.3  # pyramidal (RHF/STO-3G: ~0.43 Å)
