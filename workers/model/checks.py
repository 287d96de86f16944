"""Is the potential usable? Accuracy on reference frames, harmonic frequencies at its own
minimum against DFT's, and a Langevin run that must keep every bond (pure, no Ray).

Used by ``benchmarks/potential_check.py`` (any ``model.pt`` against any reference set) and by
the campaign, which logs the cheap ones (frequencies, a short MD) for its final model.
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass

import numpy as np
from ase import Atoms, units
from ase.neighborlist import natural_cutoffs, neighbor_list

from workers.normal_modes import finite_difference_hessian, normal_modes


def accuracy(calc, frames: list[Atoms]) -> dict:
    """Energy MAE (eV, no offset removed; and per atom) and force MAE (eV/Å) on labelled frames."""
    from workers.model.calculator import predict

    preds = predict(calc.model, frames)
    de = np.array([p["energy"] - a.get_potential_energy() for p, a in zip(preds, frames, strict=True)])
    df = np.concatenate([(p["forces"] - a.get_forces()).ravel() for p, a in zip(preds, frames, strict=True)])
    n = np.array([len(a) for a in frames])
    return {
        "energy_mae": float(np.abs(de).mean()),
        "energy_mean_error": float(de.mean()),  # the offset part of the error
        "energy_mae_per_atom": float(np.abs(de / n).mean()),
        "force_mae": float(np.abs(df).mean()),
        "zero_force_mae": float(np.mean(np.concatenate([np.abs(a.get_forces()).ravel() for a in frames]))),
    }


def relax_with(calc, atoms: Atoms, fmax_ev_a: float = 1e-3, steps: int = 2000) -> Atoms:
    """The potential's own minimum nearest ``atoms`` (BFGS)."""
    from ase.optimize import BFGS

    a = atoms.copy()
    a.calc = calc
    BFGS(a, logfile=io.StringIO()).run(fmax=fmax_ev_a, steps=steps)
    return a


def model_hessian(calc, atoms: Atoms, step_a: float = 1e-3) -> np.ndarray:
    """Cartesian Hessian ``[3N, 3N]`` (eV/Å²) of the potential by central differences of its
    (analytic) forces, symmetrised."""

    def forces(a: Atoms) -> np.ndarray:
        a.calc = calc
        return a.get_forces()

    return finite_difference_hessian(forces, atoms, step_a)


def frequencies_vs_reference(calc, dft_minimum: Atoms, dft_hessian_ev_a2: np.ndarray) -> dict:
    """Harmonic wavenumbers (cm^-1) at the potential's own minimum against DFT's at DFT's.

    Modes are compared in ascending order; ``n_imaginary`` counts the potential's
    imaginary modes (below -20 cm^-1)."""
    ref = normal_modes(dft_minimum, dft_hessian_ev_a2).frequencies_cm
    own_min = relax_with(calc, dft_minimum)
    own = normal_modes(own_min, model_hessian(calc, own_min))
    freqs = own.frequencies_cm
    return {
        "freq_mae_cm": float(np.abs(np.sort(freqs) - np.sort(ref)).mean()),
        "freq_max_error_cm": float(np.abs(np.sort(freqs) - np.sort(ref)).max()),
        "n_imaginary": own.n_imaginary,
        "model_cm": np.sort(freqs),
        "dft_cm": np.sort(ref),
        "minimum_rmsd_a": float(np.sqrt(((own_min.positions - dft_minimum.positions) ** 2).sum(1).mean())),
    }


def checked_calculator(model):
    """A calculator for checks of ``model`` (a float64 copy, no error bars): ``model`` is left as given."""
    from workers.model.calculator import CatalCalculator

    return CatalCalculator(copy.deepcopy(model).double().eval(), uncertainty=False)


# a model trained again from scratch may read the DFT minimum's harmonic frequencies at most this
# many times worse (MAE) than the model it replaces: a larger loss is a training gone wrong
# (one in five on the sparse pool: 106 cm^-1 against its campaign's 28), not the labels' doing
FREQ_MAE_RATIO = 2.0


def minimum_flaw(calc, references: list) -> str:
    """Why the potential ``calc`` is not one to ship ('' when it is): at some DFT minimum of
    ``references`` (``(atoms [N], hessian [3N, 3N] eV/Å², label, freq_limit_cm)``) its own
    nearest minimum has more imaginary modes than DFT's, or its harmonic frequencies there
    (``frequencies_vs_reference``) are off by more than ``freq_limit_cm`` (MAE)."""
    for atoms, hessian_ev_a2, label, limit_cm in references:
        freq = frequencies_vs_reference(calc, atoms, hessian_ev_a2)
        dft, mae = normal_modes(atoms, hessian_ev_a2).n_imaginary, freq["freq_mae_cm"]
        if freq["n_imaginary"] > dft:
            return (f"{freq['n_imaginary']} imaginary mode{'s' if freq['n_imaginary'] > 1 else ''} at {label}'s "
                    f"DFT minimum (DFT {dft}; frequency MAE {mae:.0f} cm^-1)")  # fmt: skip
        if mae > limit_cm:
            return f"frequency MAE {mae:.0f} cm^-1 at {label}'s DFT minimum (at most {limit_cm:.0f})"
    return ""


def frequency_limits(references: list, calc, ratio: float = FREQ_MAE_RATIO) -> list:
    """``references`` (``minimum_flaw``'s) with each frequency limit ``ratio`` x the frequency
    MAE of the potential ``calc`` (the model a new training would replace) at that minimum."""
    out = []
    for atoms, hessian_ev_a2, label, _ in references:
        mae = frequencies_vs_reference(calc, atoms, hessian_ev_a2)["freq_mae_cm"]
        out.append((atoms, hessian_ev_a2, label, ratio * mae))
    return out


def bonds(atoms: Atoms, scale: float = 1.2) -> set[tuple[int, int]]:
    """Pairs closer than ``scale`` x the sum of covalent radii."""
    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=scale))
    return {(a, b) for a, b in zip(i.tolist(), j.tolist(), strict=True) if a < b}


@dataclass
class MDCheck:
    steps_run: int
    mean_temperature_k: float
    bonds_intact: bool
    first_break_fs: float | None  # when the bond topology first changed
    # mean kinetic temperature (K) after equilibration
    broken: list  # pairs formed or broken at that moment


def langevin_stability(
    calc,
    atoms: Atoms,
    temperature_k: float = 500.0,
    time_ps: float = 10.0,
    dt_fs: float = 0.5,
    check_every: int = 20,
    seed: int = 0,
    friction_per_fs: float = 0.02,
    equilibrate_ps: float = 1.0,
) -> MDCheck:
    """Langevin NVT with the potential (ASE, ``fixcm=False``: ``fixcm=True`` runs small
    molecules hot; friction as in benchmarks/make_reference.py); stops at the first change
    of bond topology. The mean kinetic temperature is over the run after ``equilibrate_ps``
    (20 friction times): for an 8-atom molecule over 9 ps its standard error is ~3%."""
    from ase.md.langevin import Langevin

    from workers.structures import thermalize

    a = atoms.copy()
    a.calc = calc
    rng = np.random.default_rng(seed)
    thermalize(a, temperature_k, rng)
    reference = bonds(a)
    dyn = Langevin(
        a, timestep=dt_fs * units.fs, temperature_K=temperature_k, friction=friction_per_fs / units.fs,
        fixcm=False, rng=rng,
    )  # fmt: skip
    n_steps = int(round(time_ps * 1000.0 / dt_fs))
    temps, done = [], 0
    while done < n_steps:
        dyn.run(check_every)
        done += check_every
        if done * dt_fs > 1000.0 * min(equilibrate_ps, 0.5 * time_ps):
            temps.append(a.get_temperature())
        now = bonds(a)
        if now != reference:
            return MDCheck(done, float(np.mean(temps)) if temps else float("nan"), False, done * dt_fs,
                           sorted(now ^ reference))  # fmt: skip
    return MDCheck(done, float(np.mean(temps)), True, None, [])


def langevin_runs(calc, atoms: Atoms, temperature_k: float, time_ps: float, seeds) -> list[MDCheck]:
    """``langevin_stability`` once per seed in ``seeds`` (velocities and thermostat noise differ):
    how often a potential keeps its bonds, not whether one trajectory happened to."""
    return [langevin_stability(calc, atoms, temperature_k, time_ps, seed=int(s)) for s in seeds]


def pair_names(atoms: Atoms, pairs) -> str:
    """Atom pairs ``[(i, j), ...]`` of ``atoms`` as ``C1-H3,O2-H4`` (symbol and index)."""
    sym = atoms.get_chemical_symbols()
    return ",".join(f"{sym[i]}{i}-{sym[j]}{j}" for i, j in pairs)


# velocity and thermostat seeds of md_flaw's runs: none of the stability checks' (0, 1, ...), so a
# guard that runs MD does not pass the very trajectories a benchmark later judges the model on
GUARD_MD_SEED = 1000


def md_flaw(calc, references: list, temperature_k: float, time_ps: float, runs: int) -> str:
    """Why the potential ``calc`` is not one to ship ('' when it is), by MD: in one of ``runs``
    Langevin runs (``langevin_stability``, seeds ``GUARD_MD_SEED`` + k) of ``time_ps`` at
    ``temperature_k`` from a DFT minimum of ``references`` (``minimum_flaw``'s tuples) a bond
    formed or broke. Stops at the first such run."""
    for atoms, _, label, _ in references:
        for k in range(runs):
            md = langevin_stability(calc, atoms, temperature_k, time_ps, seed=GUARD_MD_SEED + k)
            if not md.bonds_intact:
                pairs = pair_names(atoms, md.broken)
                return (f"bonds changed ({pairs}) {md.first_break_fs / 1000:.2f} ps into MD run {k + 1} of {runs} "
                        f"at {temperature_k:.0f} K from {label}'s DFT minimum")  # fmt: skip
    return ""


def potential_figures(
    model, dft_minimum: Atoms, dft_hessian_ev_a2: np.ndarray, temperature_k: float, md_ps: float, md_runs: int = 1
) -> dict:
    """The cheap checks a campaign logs for its final model: frequencies against the stored DFT
    Hessian and (``md_ps`` > 0) a short Langevin run at the sampling temperature (velocity and
    noise seed 0). ``md_runs`` > 1 adds runs with seeds 1, 2, ...: ``final_md_runs_intact``
    counts the runs that kept every bond and ``final_md_breaks`` lists the others'
    ``(seed, first_break_fs, pairs)`` (run 0's own figures are unchanged)."""
    calc = checked_calculator(model)  # MD and frequencies read no error bar
    freq = frequencies_vs_reference(calc, dft_minimum, dft_hessian_ev_a2)
    out = {
        "final_freq_mae_cm": freq["freq_mae_cm"],
        "final_freq_max_error_cm": freq["freq_max_error_cm"],
        "final_n_imaginary": float(freq["n_imaginary"]),
    }
    if md_ps > 0:
        runs = langevin_runs(calc, dft_minimum, temperature_k, md_ps, range(max(md_runs, 1)))
        md = runs[0]
        out["final_md_bonds_intact"] = float(md.bonds_intact)
        out["final_md_mean_temperature_k"] = md.mean_temperature_k
        out["final_md_ps_run"] = md.steps_run * 0.5e-3
        if md_runs > 1:
            out["final_md_runs_intact"] = float(sum(r.bonds_intact for r in runs))
            out["final_md_breaks"] = [(s, r.first_break_fs, r.broken) for s, r in enumerate(runs) if not r.bonds_intact]
    return out
