"""The seeds' DFT minima and Hessians: normal-mode sampling in round 0, checks of the final model.

Each seed's reference (``harmonic/seed_NNN.npz``) is computed once on a DFT worker, stored
before it is used, charged to the budget's DFT hours, and read back on resume: never redone.
Benchmarks and tests that run many campaigns of one system compute them once
(``compute_references``) and give each campaign a copy (``install_references``): the
campaign reads them back, charged to its hours, as on resume.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from orchestrator.config import CampaignConfig
from orchestrator.outputs.console import Reporter
from orchestrator.records.budget import Ledger
from orchestrator.records.rundir import RunDir
from workers.dft import Status
from workers.harmonic import harmonic_reference, load_reference, save_reference
from workers.model.checks import potential_figures
from workers.normal_modes import NormalModes, normal_modes


def reference_paths(cfg: CampaignConfig, out: Path, n_seeds: int) -> list[Path]:
    """Where each seed's DFT minimum + Hessian lives (normal-mode sampling only)."""
    if cfg.system.initial != "normal_modes":
        return []
    run = RunDir(out)
    return [run.harmonic(k) for k in range(min(n_seeds, cfg.system.initial_labels))]


def seed_minima(seeds: list, paths: list[Path]) -> list:
    """Each seed at its stored DFT minimum (``paths[k]``, where it exists), else as given; no
    calculator. Same atoms in the same order: only the positions change."""
    out = []
    for k, seed in enumerate(seeds):
        a = seed.copy()
        a.calc = None
        if k < len(paths) and paths[k].exists():
            a.positions = load_reference(paths[k]).atoms.positions
        out.append(a)
    return out


def compute_references(cfg: CampaignConfig, folder: Path) -> list[Path]:
    """The seeds' DFT minima + Hessians for ``cfg``, computed in this process into ``folder``
    (``folder/harmonic/seed_NNN.npz``) unless already there; raises if one fails."""
    from workers.structures import load_seed_structures

    seeds = load_seed_structures(cfg.system.structures)
    paths = reference_paths(cfg, folder, len(seeds))
    for k, path in enumerate(paths):
        if not path.exists():
            ref = harmonic_reference(seeds[k], cfg.dft_config())
            if ref.status is not Status.OK:
                raise RuntimeError(f"seed {k}: {ref.reason}")
            path.parent.mkdir(parents=True, exist_ok=True)
            save_reference(path, ref)
    return paths


def install_references(paths: list[Path], out: Path) -> None:
    """Copies of ``compute_references``' files in campaign directory ``out``, where the
    campaign stores its own: it reads them back (and charges them) instead of computing them."""
    folder = RunDir(out).harmonic_dir
    for path in paths:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / path.name)


def seed_normal_modes(
    cfg: CampaignConfig, paths: list[Path], seeds: list, pool, ledger: Ledger, say: Reporter
) -> list[NormalModes] | None:
    """Each seed's normal modes at the campaign's DFT level (computed on a worker of the DFT
    ``pool`` when not stored yet); None when the initial set is not normal-mode sampled."""
    dft_cfg = cfg.dft_config()
    out = []
    for k, path in enumerate(paths):
        if path.exists():
            ref = load_reference(path)
        else:
            with say.phase(f"seed {k}: DFT minimum + Hessian ({dft_cfg.method}/{dft_cfg.basis})"):
                ref = pool.harmonic(seeds[k])
            if ref.status is not Status.OK:
                raise RuntimeError(f"system.initial: normal_modes, seed {k}: {ref.reason} (try initial: rattle)")
            path.parent.mkdir(exist_ok=True)
            save_reference(path, ref)
            ledger.charge_other(ref.cost_s)
            if ref.note:
                say.say(f"  [yellow]note[/]: {ref.note}")
        nm = normal_modes(ref.atoms, ref.hessian_ev_a2)
        freqs = nm.frequencies_cm
        imaginary = f", [red]{nm.n_imaginary} imaginary[/]" if nm.n_imaginary else ""
        say.say(
            f"  seed {k}: minimum after {ref.relax_steps} BFGS steps, {ref.hessian_method} Hessian, "
            f"{ref.wall_s:.1f} s; modes {freqs.min():.0f}-{freqs.max():.0f} cm^-1{imaginary}"
        )
        out.append(nm)
    return out or None


def final_figures(cfg: CampaignConfig, paths: list[Path], model, say: Reporter) -> dict:
    """Frequencies against the first seed's stored DFT Hessian and a short Langevin run at the
    sampling temperature, for the final model ({} without a stored reference)."""
    paths = [p for p in paths if p.exists()]
    if not paths:
        return {}
    ref = load_reference(paths[0])
    t_md, md_ps = cfg.sampling.temperature_k, cfg.final_check_md_ps
    with say.phase(f"final checks: frequencies vs DFT, {md_ps:g} ps MD at {t_md:g} K"):
        figures = potential_figures(model, ref.atoms, ref.hessian_ev_a2, t_md, md_ps)
    text = f"  harmonic frequencies vs DFT: MAE {figures['final_freq_mae_cm']:.0f} cm^-1, "
    text += f"{figures['final_n_imaginary']:.0f} imaginary"
    if "final_md_bonds_intact" in figures:
        intact = "bonds intact" if figures["final_md_bonds_intact"] else "[red]a bond broke[/]"
        text += f"; MD {figures['final_md_ps_run']:.1f} ps: {intact}"
        text += f", mean T {figures['final_md_mean_temperature_k']:.0f} K"
    say.say(text)
    return figures
