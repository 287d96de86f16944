"""Real PySCF labels at HF/STO-3G on H2O and ethanol."""

import numpy as np
import pytest
from ase.build import molecule
from ase.units import Hartree
from pydantic import ValidationError
from pyscf import gto, scf

from workers.dft import DFTConfig, Status, label, resolve_backend
from workers.errors import ConfigError


@pytest.fixture
def water():
    a = molecule("H2O")
    a.rattle(0.03, seed=1)
    return a


def test_energy_matches_direct_pyscf(water):
    r = label(water, DFTConfig(method="hf", basis="sto-3g", backend="cpu"))
    assert r.status is Status.OK and r.rung == "plain"
    mol = gto.M(
        atom=[(s, tuple(p)) for s, p in zip(water.get_chemical_symbols(), water.positions, strict=True)],
        basis="sto-3g",
        unit="Angstrom",
        verbose=0,
    )
    mf = scf.RHF(mol)
    mf.conv_tol = 1e-9
    e_direct = mf.kernel()
    assert abs(r.energy_ha - e_direct) < 1e-8
    assert r.energy_ev == pytest.approx(e_direct * Hartree, abs=1e-6)
    assert r.forces_ev_a.shape == (3, 3)
    assert r.wall_s > 0 and r.scf_cycles > 0 and r.pyscf_version


def test_forces_match_finite_differences_of_pyscf_energies(water):
    cfg = DFTConfig(conv_tol=1e-11, backend="cpu")
    forces = label(water, cfg).forces_ev_a
    h = 1e-3  # Å; central differences, error O(h^2)
    for i in range(3):
        for d in range(3):
            plus, minus = water.copy(), water.copy()
            plus.positions[i, d] += h
            minus.positions[i, d] -= h
            fd = -(label(plus, cfg).energy_ev - label(minus, cfg).energy_ev) / (2 * h)
            assert forces[i, d] == pytest.approx(fd, abs=2e-4)


def test_forced_non_convergence_fails_without_ladder_and_recovers_with_it():
    a = molecule("CH3CH2OH")
    a.rattle(0.05, seed=2)
    failed = label(a, DFTConfig(max_cycle=1, ladder=False))
    assert failed.status is Status.FAILED
    assert "not converged" in failed.reason
    assert failed.energy_ev is None
    rescued = label(a, DFTConfig(max_cycle=1, ladder=True))
    assert rescued.status is Status.OK
    assert rescued.rung in ("damp_levelshift", "newton", "long")
    reference = label(a, DFTConfig())
    assert rescued.energy_ev == pytest.approx(reference.energy_ev, abs=1e-5)


def test_wrong_spin_and_unknown_element_are_rejected():
    oh = molecule("OH")  # 9 electrons
    r = label(oh, DFTConfig(spin=0))
    assert r.status is Status.REJECTED
    assert "spin" in r.reason and "\n" not in r.reason
    assert label(oh, DFTConfig(spin=1)).status is Status.OK

    from ase import Atoms

    uh = Atoms("UH", positions=[[0, 0, 0], [0, 0, 2.0]])
    r = label(uh, DFTConfig(spin=1))
    assert r.status is Status.REJECTED and "U" in r.reason

    periodic = molecule("H2O", pbc=True, cell=[5, 5, 5])
    assert label(periodic, DFTConfig()).status is Status.REJECTED


@pytest.mark.parametrize(
    "case, expect",
    [
        ("coincident", "are 0.000 Å apart"),  # PySCF's own "Ill geometry" RuntimeError, deep in the SCF
        ("close", "are 0.100 Å apart"),
        ("nan", "non-finite position"),
        ("basis", "Basis set not found for Xe"),
        ("unknown basis", "Unknown basis format or basis name"),
        ("odd electrons", "are not consistent"),
        ("empty", "empty structure"),
    ],
)
def test_structures_pyscf_refuses_are_rejected_with_one_line(case, expect):
    from ase import Atoms

    water = molecule("H2O")
    cfg = DFTConfig()
    if case == "coincident":
        water.positions[1] = water.positions[0]
    elif case == "close":
        water.positions[1] = water.positions[0] + [0.0, 0.0, 0.1]
    elif case == "nan":
        water.positions[2, 1] = np.nan
    elif case == "basis":
        water, cfg = Atoms("XeF2", positions=[[0, 0, 0], [0, 0, 1.98], [0, 0, -1.98]]), DFTConfig(basis="6-31g")
    elif case == "unknown basis":
        cfg = DFTConfig(basis="sto-3gg")
    elif case == "odd electrons":
        water = Atoms("H", positions=[[0, 0, 0]])
    elif case == "empty":
        water = Atoms()
    r = label(water, cfg)  # never raises
    assert r.status is Status.REJECTED, r
    assert expect in r.reason and "\n" not in r.reason
    assert r.energy_ev is None and r.cost_s < 1.0


def test_dft_functional_runs(water):
    r = label(water, DFTConfig(method="pbe", basis="sto-3g", density_fit=True))
    assert r.status is Status.OK
    hf = label(water, DFTConfig())
    assert abs(r.energy_ev - hf.energy_ev) > 0.1  # a different method, not HF again


def test_config_errors():
    with pytest.raises(ValidationError, match="unknown DFT method"):
        DFTConfig(method="b3lypp")
    with pytest.raises(ValidationError, match="extra"):
        DFTConfig(basiss="sto-3g")
    with pytest.raises(ConfigError, match="gpu4pyscf"):
        resolve_backend(DFTConfig(backend="gpu"))
    assert resolve_backend(DFTConfig(backend="auto")) in ("cpu", "gpu")
    assert DFTConfig(method=" B3LYP ").method == "b3lyp"


def test_ase_calculator_raises_the_error_hierarchy(water):
    from ase.calculators.calculator import CalculatorError

    from workers.dft import PySCFCalculator
    from workers.errors import CalculationFailed, SCFError

    a = water.copy()
    a.calc = PySCFCalculator(DFTConfig())
    direct = label(water, DFTConfig())
    assert a.get_potential_energy() == pytest.approx(direct.energy_ev, abs=1e-8)
    assert a.get_forces() == pytest.approx(direct.forces_ev_a, abs=1e-8)
    assert a.calc.last_result.rung == "plain"

    b = water.copy()
    b.calc = PySCFCalculator(DFTConfig(max_cycle=1, ladder=False))
    with pytest.raises(SCFError, match="not converged"):
        b.get_potential_energy()
    c = molecule("OH")
    c.calc = PySCFCalculator(DFTConfig(spin=0))
    with pytest.raises(CalculationFailed, match="spin"):
        c.get_potential_energy()
    # code written against ASE's exceptions catches catal's too
    assert issubclass(SCFError, CalculationFailed) and issubclass(SCFError, CalculatorError)
