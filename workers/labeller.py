"""Labellers: one contract for every code that labels a structure (pure, no Ray).

``label(atoms, DFTConfig) -> LabelResult`` whatever ``cfg.kind``: ``pyscf`` (molecules;
``workers.dft``), ``xtb`` (GFN-xTB by tblite: molecules and periodic cells) or ``ase`` (any
ASE calculator named ``module:Class`` with ``calculator_kwargs``). Energies eV, forces eV/Å,
stress eV/Å^3 (Voigt) for periodic cells. It never raises for a structure: one the labeller
refuses is ``Status.REJECTED`` and one whose calculation fails (SCF not converged, the code
exits with an error) ``Status.FAILED``, each with a one-line reason; wall time and threads
go to the ledger like PySCF's.
"""

from __future__ import annotations

import importlib
import os
import time

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, CalculatorError, PropertyNotImplementedError
from ase.data import chemical_symbols

from workers import dft
from workers.dft import DFTConfig, geometry_problem, structure_settings
from workers.labels import LabelCalculatorBase, LabelResult, Status

XTB_MAX_Z = 86  # GFN1/GFN2-xTB parametrise H-Rn
TBLITE_METHODS = {"gfn2-xtb": "GFN2-xTB", "gfn1-xtb": "GFN1-xTB", "ipea1-xtb": "IPEA1-xTB"}
# what a third-party calculator raises when a calculation fails: ASE's CalculationFailed and
# ReadError/CalculatorError, RuntimeError (tblite's SCF), OSError (an executable missing or
# killed), ValueError / ArithmeticError (a code refusing input, a numerical blow-up)
CALCULATION_ERRORS = (CalculatorError, PropertyNotImplementedError, RuntimeError, OSError, ValueError, ArithmeticError)


def label(atoms: Atoms, cfg: DFTConfig) -> LabelResult:
    """Energy (eV), forces (eV/Å) and, for a periodic cell, stress (eV/Å^3) by ``cfg.kind``."""
    if cfg.kind == "pyscf":
        return dft.label(atoms, cfg)
    return calculator_label(atoms, cfg)


def label_energy(atoms: Atoms, cfg: DFTConfig) -> float | None:
    """The label's energy (eV), ``None`` where the calculation failed (a reference scan's point)."""
    result = label(atoms, cfg)
    return result.energy_ev if result.status is Status.OK else None


def code_name(cfg: DFTConfig) -> str:
    """The labeller as stored with each label: ``xtb`` or ``ase:<module:Class>``."""
    return "xtb" if cfg.kind == "xtb" else f"ase:{cfg.calculator}"


def structure_problem(atoms: Atoms, cfg: DFTConfig) -> str | None:
    """One line saying why the labeller cannot take ``atoms`` (None when it can): PySCF builds
    the molecule (basis, charge and spin); xTB knows H-Rn; any ASE calculator gets a sane geometry."""
    cfg = structure_settings(atoms, cfg)
    if cfg.kind == "pyscf":
        try:
            dft.build_molecule(atoms, cfg)
        except ValueError as err:
            return str(err)
        return None
    if atoms.pbc.any() and not atoms.pbc.all():
        return f"periodic in some directions only (pbc={atoms.pbc.tolist()}); give full pbc or none"
    problem = geometry_problem(atoms, periodic=True)
    if problem or cfg.kind != "xtb":
        return problem
    heavy = sorted({int(z) for z in atoms.numbers if z > XTB_MAX_Z or z < 1})
    if heavy:
        return f"element(s) {', '.join(chemical_symbols[z] for z in heavy)} beyond GFN-xTB's H-Rn"
    n_electrons = int(atoms.numbers.sum()) - cfg.charge
    if (n_electrons - cfg.spin) % 2:
        return f"{n_electrons} electrons with spin (2S) {cfg.spin}: parity mismatch (charge {cfg.charge})"
    return None


def check_labeller(cfg: DFTConfig) -> str | None:
    """One line saying why the labeller cannot be made here (a package or class missing), or None."""
    if cfg.kind == "xtb":
        if importlib.util.find_spec("tblite") is None:
            return "dft.kind: xtb needs tblite: pip install 'catal[xtb]'"
        return None
    if cfg.kind == "ase":
        try:
            calculator_class(cfg.calculator)
        except (ImportError, AttributeError, TypeError) as err:
            return f"dft.calculator: cannot load {cfg.calculator!r} ({type(err).__name__}: {err})"
    return None


def calculator_class(path: str) -> type:
    """The class a ``module:Class`` path names; it must be an ASE calculator."""
    module, _, name = path.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and hasattr(cls, "get_potential_energy")):
        raise TypeError(f"{path} is not an ASE calculator class")
    return cls


def make_calculator(cfg: DFTConfig, atoms: Atoms) -> Calculator:
    """A fresh calculator for one label (no state carried between structures)."""
    if cfg.kind == "xtb":
        from tblite.ase import TBLite

        return TBLite(method=TBLITE_METHODS[cfg.method], charge=cfg.charge, multiplicity=cfg.spin + 1, verbosity=0)
    return calculator_class(cfg.calculator)(**cfg.calculator_kwargs)


def calculator_label(atoms: Atoms, cfg: DFTConfig) -> LabelResult:
    """One label by an ASE calculator (xtb or ase); failures returned, not raised."""
    t0 = time.perf_counter()
    cfg = structure_settings(atoms, cfg)
    base = {"threads": cfg.threads, "backend": "cpu", "code": code_name(cfg)}
    problem = structure_problem(atoms, cfg)
    if problem:
        return LabelResult(Status.REJECTED, reason=problem, wall_s=time.perf_counter() - t0, **base)
    a = atoms.copy()
    a.calc = None
    os.environ.setdefault("OMP_NUM_THREADS", str(cfg.threads))
    try:
        a.calc = make_calculator(cfg, a)
        energy = float(a.get_potential_energy())
        forces = np.asarray(a.get_forces(), dtype=np.float64)
        has_stress = a.pbc.all() and "stress" in getattr(a.calc, "implemented_properties", ())
        stress = np.asarray(a.get_stress(voigt=True), dtype=np.float64) if has_stress else None
    except CALCULATION_ERRORS as err:
        first = (str(err).strip().splitlines() or [""])[0][:200]
        return LabelResult(Status.FAILED, reason=f"{type(err).__name__}: {first}", wall_s=time.perf_counter() - t0,
                           **base)  # fmt: skip
    if not (np.isfinite(energy) and np.isfinite(forces).all() and (stress is None or np.isfinite(stress).all())):
        return LabelResult(Status.FAILED, reason="the calculator returned a non-finite value",
                           wall_s=time.perf_counter() - t0, **base)  # fmt: skip
    return LabelResult(
        Status.OK, energy_ev=energy, forces_ev_a=forces, stress_ev_a3=stress, wall_s=time.perf_counter() - t0, **base
    )


class LabelCalculator(LabelCalculatorBase, Calculator):
    """ASE calculator over ``label`` for any labeller (geomeTRIC relaxations, finite-difference
    Hessians): a failed calculation raises ``SCFError``, a refused structure ``CalculationFailed``."""

    def _label(self, atoms: Atoms) -> LabelResult:
        return label(atoms, self.cfg)
