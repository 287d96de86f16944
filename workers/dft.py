"""DFT labels with PySCF: ``label(atoms, DFTConfig) -> LabelResult`` (pure, no Ray).

Energies in eV, forces in eV/Å (ASE units). PySCF does not raise when the SCF fails to
converge, so ``mf.converged`` is checked here and a ladder of remedies is walked:
damping + level shift, then second-order SCF (``.newton()``), then a longer run, each
starting from the previous rung's density. Expected failures never raise: a structure
that never converges is ``Status.FAILED``; one PySCF rejects is ``Status.REJECTED``.
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from typing import Literal

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.units import Bohr, Hartree
from pydantic import Field, ValidationInfo, field_validator, model_validator
from pyscf import dft, gto, lib, scf

from workers.errors import ConfigError
from workers.labels import LabelCalculatorBase, LabelResult, Status  # noqa: F401 - Status re-exported
from workers.schema import Section

HARTREE_PER_BOHR_TO_EV_PER_A = Hartree / Bohr
# Å: two nuclei closer than this are a broken structure, not chemistry (the shortest bond,
# H2, is 0.74 Å); PySCF itself only notices coincident nuclei, deep inside the SCF
MIN_DISTANCE_A = 0.3
RUNGS = ("plain", "damp_levelshift", "newton", "long")


XTB_METHODS = ("gfn2-xtb", "gfn1-xtb", "ipea1-xtb")


class DFTConfig(Section):
    # the labeller (workers/labeller.py). pyscf: molecules at any method/basis below (CPU or
    # gpu4pyscf); xtb: GFN-xTB by tblite, molecules and periodic cells (about a second a label);
    # ase: any ASE calculator (calculator + calculator_kwargs: ORCA, CP2K, Psi4, VASP, EMT ...)
    kind: Literal["pyscf", "xtb", "ase"] = "pyscf"
    # pyscf: "hf" or any PySCF/libxc functional name: b3lyp, pbe, wb97m-v, ...;
    # xtb: gfn2-xtb (its default), gfn1-xtb or ipea1-xtb
    method: str = "hf"
    # pyscf: any basis PySCF knows: sto-3g (demo), 6-31g, def2-svp, def2-tzvpd (OMol25) ...
    basis: str = "sto-3g"
    # ase: the calculator class as "module:Class" (ase.calculators.emt:EMT, tblite.ase:TBLite)
    calculator: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    # ase: its keyword arguments (numbers, strings, lists, mappings; part of the content key)
    calculator_kwargs: dict = {}
    # total charge and 2S (= n_alpha - n_beta); spin 0 with an odd electron count is rejected
    charge: int = 0
    spin: int = Field(0, ge=0)
    # RI-J/K with an automatic auxiliary basis: much faster beyond minimal bases
    density_fit: bool = False
    # SCF energy convergence threshold (Ha); forces need ~1e-9
    conv_tol: float = Field(1e-9, gt=0.0, lt=1e-3)
    max_cycle: int = Field(100, ge=1)
    # walk damping -> newton -> long run when the SCF does not converge
    ladder: bool = True
    # OpenMP threads per label: also the CPUs a DFT worker reserves
    threads: int = Field(1, ge=1)
    # gpu = gpu4pyscf (needs it installed and a CUDA device); auto picks gpu when present
    backend: Literal["auto", "cpu", "gpu"] = "auto"
    # benchmarks only: a DFT worker waits this long after each label, timed and charged with
    # it, to stand for a slower DFT level on remote nodes (benchmarks/async.py); 0 for science
    emulated_latency_s: float = Field(0.0, ge=0.0, le=3600.0)

    @model_validator(mode="before")
    @classmethod
    def _xtb_default(cls, data):
        if isinstance(data, dict) and data.get("kind") == "xtb" and data.get("method") is None:
            return {**data, "method": "gfn2-xtb"}
        return data

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str, info: ValidationInfo) -> str:
        v = v.strip().lower()
        kind = info.data.get("kind", "pyscf")
        if kind == "xtb" and v not in XTB_METHODS:
            raise ValueError(f"unknown xTB method {v!r} (kind: xtb takes {', '.join(XTB_METHODS)})")
        if kind == "pyscf" and v != "hf":
            try:
                dft.libxc.parse_xc(v)
            except (KeyError, ValueError) as err:
                raise ValueError(f"unknown DFT method {v!r} (not 'hf' nor a libxc functional)") from err
        return v

    @model_validator(mode="after")
    def _ase_calculator(self):
        if self.kind == "ase" and not self.calculator:
            raise ValueError("kind: ase needs calculator: module:Class (e.g. ase.calculators.emt:EMT)")
        return self

    @property
    def level(self) -> str:
        """The level of theory in one word: ``hf/sto-3g``, ``xtb gfn1-xtb``, ``ase:module:Class``."""
        if self.kind == "xtb":
            return f"xtb {self.method}"
        if self.kind == "ase":
            return f"ase:{self.calculator}"
        return f"{self.method}/{self.basis}"

    def settings_key(self) -> dict:
        """The settings that change a label's value (part of the label's content hash)."""
        if self.kind == "xtb":
            return {"kind": "xtb", "method": self.method, "charge": self.charge, "spin": self.spin}
        if self.kind == "ase":
            return {"kind": "ase", "calculator": self.calculator, "calculator_kwargs": self.calculator_kwargs,
                    "charge": self.charge, "spin": self.spin}  # fmt: skip
        return {  # pyscf: the keys labels had before there were other labellers
            "method": self.method,
            "basis": self.basis.lower(),
            "charge": self.charge,
            "spin": self.spin,
            "density_fit": self.density_fit,
        }


def structure_settings(atoms: Atoms, cfg: DFTConfig) -> DFTConfig:
    """``cfg`` with the charge and 2S a structure carries in ``info["charge"]`` /
    ``info["spin"]`` (each system of a campaign its own); ``cfg`` itself when it carries none."""
    charge, spin = atoms.info.get("charge", cfg.charge), atoms.info.get("spin", cfg.spin)
    if (charge, spin) == (cfg.charge, cfg.spin):
        return cfg
    return cfg.model_copy(update={"charge": int(charge), "spin": int(spin)})


def gpu_available() -> bool:
    if importlib.util.find_spec("gpu4pyscf") is None:
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except (ImportError, RuntimeError):
        return False


def resolve_backend(cfg: DFTConfig) -> str:
    """``cpu`` or ``gpu``; asking for ``gpu`` without gpu4pyscf + CUDA is a ConfigError."""
    if cfg.backend == "cpu":
        return "cpu"
    has_gpu = gpu_available()
    if cfg.backend == "gpu" and not has_gpu:
        raise ConfigError("dft.backend=gpu but gpu4pyscf or a CUDA device is not available")
    return "gpu" if has_gpu else "cpu"


def geometry_problem(atoms: Atoms, min_distance_a: float = MIN_DISTANCE_A, periodic: bool = False) -> str | None:
    """One line saying why ``atoms`` is no structure to compute, or None. Periodic cells are a
    problem unless ``periodic`` (the labeller takes them); their distances are minimum-image."""
    if atoms.pbc.any() and not periodic:
        return f"periodic structure (pbc={atoms.pbc.tolist()}); molecular DFT only (dft.kind: xtb or ase takes cells)"
    if len(atoms) == 0:
        return "empty structure (0 atoms)"
    pos = atoms.positions
    if not np.isfinite(pos).all():
        bad = int(np.flatnonzero(~np.isfinite(pos).all(axis=1))[0])
        return f"atom {bad} ({atoms.get_chemical_symbols()[bad]}) has a non-finite position"
    if len(atoms) > 1:
        if atoms.pbc.any():
            d = atoms.get_all_distances(mic=True)
        else:
            d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
        d[np.diag_indices(len(atoms))] = np.inf
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        if d[i, j] < min_distance_a:
            sym = atoms.get_chemical_symbols()
            return (
                f"atoms {min(i, j)} ({sym[min(i, j)]}) and {max(i, j)} ({sym[max(i, j)]}) are "
                f"{d[i, j]:.3f} Å apart (< {min_distance_a} Å)"
            )
    return None


def build_molecule(atoms: Atoms, cfg: DFTConfig) -> gto.Mole:
    """A PySCF molecule in Å (no SCF: cheap); raises ``ValueError`` with a one-line reason
    if rejected: broken geometry, unknown element or basis, electrons inconsistent with spin."""
    problem = geometry_problem(atoms)
    if problem:
        raise ValueError(problem)
    mol = gto.Mole()
    mol.atom = [(s, tuple(p)) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions, strict=True)]
    mol.unit = "Angstrom"
    mol.basis = cfg.basis
    mol.charge, mol.spin = cfg.charge, cfg.spin
    mol.verbose, mol.output = 0, None
    try:
        with warnings.catch_warnings():  # "basis may be in basis-set-exchange" noise
            warnings.simplefilter("ignore", UserWarning)
            mol.build()
    except RuntimeError as err:  # spin/charge inconsistency, basis missing for an element
        settings = f"dft.basis {cfg.basis!r}, charge {cfg.charge}, spin {cfg.spin}"
        raise ValueError(f"{str(err).splitlines()[0]} ({settings})") from err
    except KeyError as err:  # an element symbol PySCF does not know
        raise ValueError(f"element {err.args[0]!r} unknown to PySCF") from err
    return mol


def mean_field(mol: gto.Mole, cfg: DFTConfig, backend: str):
    """The unconverged SCF object for ``mol`` at ``cfg``'s level (HF or KS with its functional,
    density fitting and tolerances) on ``backend``; ``label`` and ``harmonic_reference`` run it."""
    if cfg.method == "hf":
        mf = scf.HF(mol)
    else:
        mf = dft.KS(mol)
        mf.xc = cfg.method
    if cfg.density_fit:
        mf = mf.density_fit()
    if backend == "gpu":
        mf = mf.to_gpu()
    mf.conv_tol = cfg.conv_tol
    mf.max_cycle = cfg.max_cycle
    mf.verbose = 0
    return mf


def _apply_rung(mf, rung: str, cfg: DFTConfig):
    if rung == "damp_levelshift":
        mf.damp, mf.level_shift, mf.diis_start_cycle = 0.5, 0.3, 3
    elif rung == "newton":
        mf = mf.newton()
    elif rung == "long":
        mf.max_cycle = max(4 * cfg.max_cycle, 200)
    return mf


def label(atoms: Atoms, cfg: DFTConfig) -> LabelResult:
    """Energy (eV) and forces (eV/Å) of one molecule (its charge and spin from ``info``
    where it carries them: ``structure_settings``); failures are returned, not raised."""
    t0 = time.perf_counter()
    cfg = structure_settings(atoms, cfg)
    backend = resolve_backend(cfg)
    base = {"threads": cfg.threads, "backend": backend}
    try:
        mol = build_molecule(atoms, cfg)
    except ValueError as err:
        return LabelResult(Status.REJECTED, reason=str(err), wall_s=time.perf_counter() - t0, **base)

    rungs = RUNGS if cfg.ladder else RUNGS[:1]
    cycles, dm, mf = 0, None, None
    with lib.with_omp_threads(cfg.threads):
        for rung in rungs:
            mf = _apply_rung(mean_field(mol, cfg, backend), rung, cfg)
            mf.kernel(dm0=dm)
            cycles += int(getattr(mf, "cycles", 0) or 0)
            if mf.converged:
                break
            dm = mf.make_rdm1()
        if not mf.converged:
            return LabelResult(
                Status.FAILED,
                reason=f"SCF not converged after rungs {'/'.join(rungs)} ({cycles} cycles)",
                wall_s=time.perf_counter() - t0,
                scf_cycles=cycles,
                rung=rung,
                **base,
            )
        grad_ha_bohr = np.asarray(mf.nuc_grad_method().kernel())
    return LabelResult(
        Status.OK,
        energy_ha=float(mf.e_tot),
        energy_ev=float(mf.e_tot) * Hartree,
        forces_ev_a=-grad_ha_bohr * HARTREE_PER_BOHR_TO_EV_PER_A,
        wall_s=time.perf_counter() - t0,
        scf_cycles=cycles,
        rung=rung,
        **base,
    )


def labelled_atoms(atoms: Atoms, result: LabelResult) -> Atoms:
    """A copy of ``atoms`` carrying the label as a SinglePointCalculator (ASE convention)."""
    out = atoms.copy()
    out.calc = result.calculator(out)
    return out


class PySCFCalculator(LabelCalculatorBase, Calculator):
    """ASE calculator over ``label`` (PySCF): energy/free_energy (eV) and forces (eV/Å); an SCF
    that never converges raises ``SCFError``, a rejected structure ``CalculationFailed``."""

    def __init__(self, cfg: DFTConfig | None = None, **kwargs):
        super().__init__(cfg or DFTConfig(), **kwargs)

    def _label(self, atoms: Atoms) -> LabelResult:
        return label(atoms, self.cfg)
