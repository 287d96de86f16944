"""A seed's minimum and Hessian at the campaign's DFT level (pure PySCF + ASE, no Ray).

``harmonic_reference(atoms, DFTConfig)`` relaxes the structure (geomeTRIC on the labeller's
forces) and computes the Cartesian Hessian there with PySCF's analytic second derivatives
(``mf.Hessian()``). Where PySCF has none for the method (some functionals, back-ends), it
says so in ``note`` and falls back to central finite differences of analytic gradients
(6N gradient calls), as every other labeller (xtb, ase) does. Failures come back as data
(``Status.FAILED`` + reason), as labels do.
"""

from __future__ import annotations

import io
import tempfile
import time
import zipfile
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.units import Bohr, Hartree
from pyscf import lib

from workers.dft import (
    DFTConfig,
    Status,
    build_molecule,
    mean_field,
    resolve_backend,
    structure_settings,
)
from workers.errors import CalculationFailed, DamagedFile, SCFError, first_line
from workers.files import write_atomic
from workers.labeller import LabelCalculator, label
from workers.normal_modes import finite_difference_hessian as fd_hessian
from workers.normal_modes import normal_modes

HESSIAN_AU_TO_EV_A2 = Hartree / Bohr**2
FD_STEP_A = 5e-3  # Å, central differences of gradients: error ~ step^2 x third derivative


@dataclass
class HarmonicReference:
    status: Status
    reason: str = ""
    atoms: Atoms | None = None  # the minimum (positions Å); energy_ev / forces_ev_a at it
    energy_ev: float | None = None
    hessian_ev_a2: np.ndarray | None = None  # [3N, 3N]
    hessian_method: str = ""  # "analytic" or "finite-difference"
    note: str = ""  # why finite differences, when they were used
    relax_steps: int = 0
    max_force_ev_a: float = float("nan")  # at the returned minimum
    wall_s: float = 0.0
    threads: int = 1

    @property
    def cost_s(self) -> float:
        """CPU-seconds charged to the budget: wall seconds x threads."""
        return self.wall_s * self.threads


def relax(atoms: Atoms, cfg: DFTConfig, fmax_ev_a: float = 0.01, max_steps: int = 200) -> tuple[Atoms, int]:
    """The nearest minimum and the optimisation steps taken: geomeTRIC in translation-rotation
    internal coordinates (TRIC) on PySCF forces, converged when every atom's force is below
    ``fmax_ev_a`` (and geomeTRIC's energy and displacement criteria hold). Internal
    coordinates follow torsions and bends that Cartesian BFGS crawls along: 34 steps for the
    alanine dipeptide from its force-field conformer, where ASE's BFGS had not converged
    after 12 CPU-minutes (over 100 steps); 5 for ethanol (BFGS: 15). Raises
    SCFError or CalculationFailed when a step's SCF fails or PySCF rejects the structure,
    CalculationFailed when it has not converged in ``max_steps``."""
    import logging

    from geometric.ase_engine import EngineASE
    from geometric.errors import GeomOptNotConvergedError
    from geometric.internal import DelocalizedInternalCoordinates
    from geometric.molecule import Molecule
    from geometric.nifty import ang2bohr
    from geometric.optimize import Optimize, OptParams

    logging.getLogger("geometric").setLevel(logging.WARNING)  # its step table is INFO
    mol = Molecule()
    mol.elem = atoms.get_chemical_symbols()
    mol.xyzs = [atoms.positions.copy()]
    mol.build_topology()
    calc = LabelCalculator(cfg)  # PySCF, xTB or an ASE calculator, by cfg.kind
    gmax_au = fmax_ev_a / (Hartree / Bohr)  # per-atom gradient norm, Ha/Bohr
    params = OptParams(convergence_gmax=gmax_au, convergence_grms=gmax_au, maxiter=max_steps)
    coords = DelocalizedInternalCoordinates(mol, build=True, connect=False, addcart=False)
    with tempfile.TemporaryDirectory(prefix="catal-relax-") as scratch:
        try:
            progress = Optimize(atoms.positions.ravel() * ang2bohr, mol, coords, EngineASE(mol, calc), scratch, params)
        except GeomOptNotConvergedError as err:
            raise CalculationFailed(f"relaxation not converged in {max_steps} steps ({first_line(err)})") from err
    a = atoms.copy()
    a.positions = progress.xyzs[-1]
    a.calc = calc  # the last step's energy and forces when it ended there, else computed again
    return a, len(progress.xyzs) - 1


def analytic_hessian(atoms: Atoms, cfg: DFTConfig) -> np.ndarray:
    """PySCF's analytic Hessian ``[3N, 3N]`` (eV/Å²); raises NotImplementedError (or the
    AttributeError/TypeError PySCF gives) where the method has none, SCFError if unconverged."""
    mol = build_molecule(atoms, cfg)
    mf = mean_field(mol, cfg, resolve_backend(cfg))
    mf.kernel()
    if not mf.converged:
        raise SCFError(f"SCF not converged at the minimum ({cfg.method}/{cfg.basis})")
    h = np.asarray(mf.Hessian().kernel())  # [N, N, 3, 3] Ha/Bohr^2
    n = len(atoms)
    return h.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n) * HESSIAN_AU_TO_EV_A2


def finite_difference_hessian(atoms: Atoms, cfg: DFTConfig, step_a: float = FD_STEP_A) -> np.ndarray:
    """Central differences of the labeller's forces ``[3N, 3N]`` (eV/Å²), symmetrised."""

    def forces(a: Atoms) -> np.ndarray:
        r = label(a, cfg)
        if r.status is not Status.OK:
            raise SCFError(f"finite-difference Hessian: {r.reason}")
        return r.forces_ev_a

    return fd_hessian(forces, atoms, step_a)


SADDLE_CM = 50.0  # an imaginary mode beyond this (cm^-1) is a saddle, not numerical noise
SADDLE_STEP_A = 0.15  # the largest atom displacement of the step down a saddle's mode (Å)
SADDLE_TRIES = 2
SADDLE_DROP_EV = 1e-3  # a step down that ends less than this below the saddle went back up it


def harmonic_reference(atoms: Atoms, cfg: DFTConfig, fmax_ev_a: float = 0.01) -> HarmonicReference:
    """Relax ``atoms`` and compute the Hessian at the minimum; failures are returned. A
    relaxation that stops on a saddle point (a symmetric start: an eclipsed methyl group, a
    planar amine; an imaginary mode beyond ``SADDLE_CM``) steps down that mode (the other
    way if the first went back), relaxes again, up to ``SADDLE_TRIES`` times (``note``)."""
    t0 = time.perf_counter()
    cfg = structure_settings(atoms, cfg)
    notes, steps = [], 0
    try:
        with lib.with_omp_threads(cfg.threads):
            minimum, energy, forces, hessian, how, n = _relaxed_hessian(atoms, cfg, fmax_ev_a, notes)
            steps += n
            for _ in range(SADDLE_TRIES):
                mode = saddle_mode(minimum, hessian)
                if mode is None:
                    break
                below = _relaxed_hessian(_stepped(minimum, mode, 1), cfg, fmax_ev_a, notes)
                if below[1] > energy - SADDLE_DROP_EV:  # back to the saddle: the other way down
                    below = _relaxed_hessian(_stepped(minimum, mode, -1), cfg, fmax_ev_a, notes)
                steps += below[5]
                notes.append(f"the relaxation stopped on a saddle point: stepped down its imaginary mode, "
                             f"{energy - below[1]:.3f} eV lower")  # fmt: skip
                minimum, energy, forces, hessian, how, _ = below
    except (SCFError, CalculationFailed) as err:
        return HarmonicReference(
            Status.FAILED, reason=f"relax/Hessian: {err}", wall_s=time.perf_counter() - t0, threads=cfg.threads
        )
    minimum.calc = None
    return HarmonicReference(
        Status.OK,
        atoms=minimum,
        energy_ev=float(energy),
        hessian_ev_a2=hessian,
        hessian_method=how,
        note="; ".join(dict.fromkeys(notes)),
        relax_steps=steps,
        max_force_ev_a=float(np.linalg.norm(forces, axis=1).max()),
        wall_s=time.perf_counter() - t0,
        threads=cfg.threads,
    )


def _relaxed_hessian(atoms: Atoms, cfg: DFTConfig, fmax_ev_a: float, notes: list[str]) -> tuple:
    """``(minimum, energy_ev, forces, hessian, how, optimisation steps)`` from ``atoms``."""
    minimum, steps = relax(atoms, cfg, fmax_ev_a)
    energy, forces = minimum.get_potential_energy(), minimum.get_forces()
    if cfg.kind != "pyscf":  # xtb, ase: gradients only
        return minimum, float(energy), forces, finite_difference_hessian(minimum, cfg), "finite-difference", steps
    try:
        hessian, how = analytic_hessian(minimum, cfg), "analytic"
    except (NotImplementedError, AttributeError, TypeError) as err:
        notes.append(
            f"PySCF has no analytic Hessian for {cfg.method} ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'not implemented'}); "
            f"using finite differences of gradients ({6 * len(atoms)} gradient calls)"
        )
        hessian, how = finite_difference_hessian(minimum, cfg), "finite-difference"
    return minimum, float(energy), forces, hessian, how, steps


def saddle_mode(atoms: Atoms, hessian_ev_a2: np.ndarray) -> np.ndarray | None:
    """The Cartesian direction ``[N, 3]`` of the most imaginary vibration when it is beyond
    ``SADDLE_CM`` (a saddle point, not a minimum), else None."""
    nm = normal_modes(atoms, hessian_ev_a2)
    if not len(nm.force_constants) or nm.frequencies_cm.min() > -SADDLE_CM:
        return None
    k = int(np.argmin(nm.force_constants))
    return (nm.modes[k] / np.repeat(np.sqrt(nm.masses), 3)).reshape(len(atoms), 3)


def _stepped(atoms: Atoms, mode: np.ndarray, sign: int) -> Atoms:
    a = atoms.copy()
    a.calc = None
    a.positions = a.positions + sign * SADDLE_STEP_A * mode / np.linalg.norm(mode, axis=1).max()
    return a


def save_reference(path, ref: HarmonicReference) -> None:
    """An OK reference as ``.npz`` (no pickles), written to a temporary file and renamed."""
    if ref.status is not Status.OK:
        raise ValueError(f"only an OK reference is stored, got {ref.status.value}: {ref.reason}")
    buf = io.BytesIO()
    np.savez(
        buf,
        numbers=ref.atoms.numbers,
        positions_a=ref.atoms.positions,
        energy_ev=ref.energy_ev,
        hessian_ev_a2=ref.hessian_ev_a2,
        hessian_method=ref.hessian_method,
        note=ref.note,
        relax_steps=ref.relax_steps,
        max_force_ev_a=ref.max_force_ev_a,
        wall_s=ref.wall_s,
        threads=ref.threads,
    )
    write_atomic(path, buf.getvalue())


def load_reference(path) -> HarmonicReference:
    """A stored reference; one that does not read back is a ``DamagedFile``."""
    try:
        return _read_reference(path)
    except (ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        reason = first_line(err)
        fix = "delete it and run `catal resume`: the seed's DFT minimum and Hessian are computed again"
        raise DamagedFile(path, reason, fix) from None


def _read_reference(path) -> HarmonicReference:
    with np.load(path, allow_pickle=False) as z:
        return HarmonicReference(
            Status.OK,
            atoms=Atoms(numbers=z["numbers"], positions=z["positions_a"]),
            energy_ev=float(z["energy_ev"]),
            hessian_ev_a2=z["hessian_ev_a2"],
            hessian_method=str(z["hessian_method"]),
            note=str(z["note"]),
            relax_steps=int(z["relax_steps"]),
            max_force_ev_a=float(z["max_force_ev_a"]),
            wall_s=float(z["wall_s"]),
            threads=int(z["threads"]),
        )
