"""The seeds' DFT minima and Hessians: normal-mode sampling in round 0, checks of the final model.

Each seed's reference (``harmonic/seed_NNN.npz``) is computed once on a DFT worker, stored
before it is used, charged to the budget's DFT hours, and read back on resume: never redone.
Benchmarks and tests that run many campaigns of one system compute them once
(``compute_references``) and give each campaign a copy (``install_references``): the
campaign reads them back, charged to its hours, as on resume.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np

from orchestrator.config import CampaignConfig
from orchestrator.outputs.console import Reporter
from orchestrator.records.budget import Ledger
from orchestrator.records.rundir import RunDir
from orchestrator.systems import SYSTEM_INFO, load_systems, shares, system_of
from workers.dft import Status
from workers.harmonic import harmonic_reference, load_reference, save_reference
from workers.model.checks import frequency_limits, potential_figures
from workers.normal_modes import NormalModes, normal_modes


def reference_paths(cfg: CampaignConfig, out: Path, seeds: list) -> list[Path]:
    """Where each seed's DFT minimum + Hessian lives (normal-mode sampling only): the seeds
    of each system, up to its share of the initial labels (``systems.shares``)."""
    if cfg.system.initial != "normal_modes":
        return []
    run = RunDir(out)
    paths, first = [], 0
    for name, n_initial in shares(cfg.system, cfg.system.initial_labels).items():
        n = sum(1 for a in seeds if system_of(a, name) == name)
        paths += [run.harmonic(first + k) for k in range(min(n, n_initial))]
        first += n
    return paths


def seed_index(path: Path) -> int:
    """The seed a reference file belongs to (``harmonic/seed_NNN.npz``)."""
    return int(path.stem.rsplit("_", 1)[1])


def seed_minima(seeds: list, paths: list[Path]) -> list:
    """Each seed at its stored DFT minimum (where ``paths`` has one that exists), else as
    given; no calculator. Same atoms in the same order, tags kept: only the positions change."""
    stored = {seed_index(p): p for p in paths if p.exists()}
    out = []
    for k, seed in enumerate(seeds):
        a = seed.copy()
        a.calc = None
        if k in stored:
            a.positions = load_reference(stored[k]).atoms.positions
        out.append(a)
    return out


def minimum_references(paths: list[Path], baseline=None) -> list[tuple]:
    """``(DFT minimum, Hessian [3N, 3N] eV/Å², "seed k", frequency limit cm^-1)`` of each stored
    reference in ``paths``: what ``workers.model.checks.minimum_flaw`` checks a model against;
    the limits ``frequency_limits`` of the potential ``baseline`` (none: no limit)."""
    refs = [(ref.atoms, ref.hessian_ev_a2, f"seed {seed_index(p)}", math.inf)
            for p in paths if p.exists() for ref in [load_reference(p)]]  # fmt: skip
    return frequency_limits(refs, baseline) if baseline is not None and refs else refs


def compute_references(cfg: CampaignConfig, folder: Path) -> list[Path]:
    """The seeds' DFT minima + Hessians for ``cfg``, computed in this process into ``folder``
    (``folder/harmonic/seed_NNN.npz``) unless already there; raises if one fails."""
    _, seeds = load_systems(cfg.system)
    paths = reference_paths(cfg, folder, seeds)
    for path in paths:
        k = seed_index(path)
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


def seed_modes(ref, seed) -> NormalModes:
    """A seed's normal modes from its stored reference, its atoms tagged as the seed (its system)."""
    nm = normal_modes(ref.atoms, ref.hessian_ev_a2)
    nm.atoms.info.update({key: seed.info[key] for key in SYSTEM_INFO if key in seed.info})
    return nm


def stored_modes(paths: list[Path], seeds: list) -> list[NormalModes]:
    """The normal modes of every stored reference in ``paths`` (an asynchronous campaign's
    fillers and round 0 queue read them back)."""
    return [seed_modes(load_reference(p), seeds[seed_index(p)]) for p in paths]


def seed_normal_modes(
    cfg: CampaignConfig, paths: list[Path], seeds: list, pool, ledger: Ledger, say: Reporter
) -> list[NormalModes] | None:
    """Each seed's normal modes at the campaign's DFT level (computed on a worker of the DFT
    ``pool`` when not stored yet), its atoms tagged as the seed (its system); None when the
    initial set is not normal-mode sampled."""
    dft_cfg = cfg.dft_config()
    missing = [path for path in paths if not path.exists()]
    computed = {}
    if missing:  # every missing seed at once, one per DFT worker
        which = ", ".join(str(seed_index(path)) for path in missing)
        with say.phase(f"seed{'s' if len(missing) > 1 else ''} {which}: DFT minimum + Hessian "
                       f"({dft_cfg.level})"):  # fmt: skip
            computed = dict(zip(missing, pool.harmonics([seeds[seed_index(p)] for p in missing]), strict=True))
    for path, ref in computed.items():  # every one that worked is kept before a failure is raised
        if ref.status is Status.OK:
            path.parent.mkdir(exist_ok=True)
            save_reference(path, ref)
            ledger.charge_other(ref.cost_s)
            if ref.note:
                say.say(f"  [yellow]note[/]: {ref.note}")
    for path, ref in computed.items():
        if ref.status is not Status.OK:
            k = seed_index(path)
            raise RuntimeError(f"system.initial: normal_modes, seed {k}: {ref.reason} (try initial: rattle)")
    out = []
    for path in paths:
        k = seed_index(path)
        ref = computed.get(path) or load_reference(path)
        nm = seed_modes(ref, seeds[k])
        freqs = nm.frequencies_cm
        imaginary = f", [red]{nm.n_imaginary} imaginary[/]" if nm.n_imaginary else ""
        say.say(
            f"  seed {k}: minimum after {ref.relax_steps} steps, {ref.hessian_method} Hessian, "
            f"{ref.wall_s:.1f} s; modes {freqs.min():.0f}-{freqs.max():.0f} cm^-1{imaginary}"
        )
        out.append(nm)
    return out or None


def final_figures(cfg: CampaignConfig, paths: list[Path], model, say: Reporter, seeds: list | None = None) -> dict:
    """Frequencies against each system's first stored DFT Hessian and a short Langevin run at
    the sampling temperature, for the final model ({} without a stored reference). With
    several systems (``seeds`` tagged) each system's figures end in ``/<system>`` and the plain
    names summarise them (mean frequency MAE and temperature; imaginary modes summed; bonds
    intact only if intact in every system's run)."""
    firsts: dict[str, Path] = {}
    for path in filter(Path.exists, paths):
        name = system_of(seeds[seed_index(path)]) if seeds else ""
        firsts.setdefault(name, path)
    if not firsts:
        return {}
    t_md, md_ps = cfg.sampling.temperature_k, cfg.final_check_md_ps
    several = len(firsts) > 1
    each = {}
    for name, path in firsts.items():
        ref = load_reference(path)
        what = f" ({name})" if several else ""
        with say.phase(f"final checks{what}: frequencies vs DFT, {md_ps:g} ps MD at {t_md:g} K"):
            each[name] = potential_figures(model, ref.atoms, ref.hessian_ev_a2, t_md, md_ps)
        say.say(("  " + name + ": " if several else "  ") + figures_line(each[name]))
    if not several:
        return next(iter(each.values()))
    out = {f"{k}/{name}": v for name, figures in each.items() for k, v in figures.items()}
    summaries = (("final_freq_mae_cm", np.mean), ("final_n_imaginary", np.sum), ("final_md_bonds_intact", np.min),
                 ("final_md_ps_run", np.min), ("final_md_mean_temperature_k", np.mean))  # fmt: skip
    for key, combine in summaries:
        values = [f[key] for f in each.values() if key in f]
        if values:
            out[key] = float(combine(values))
    return out


def figures_line(figures: dict) -> str:
    text = f"harmonic frequencies vs DFT: MAE {figures['final_freq_mae_cm']:.0f} cm^-1, "
    text += f"{figures['final_n_imaginary']:.0f} imaginary"
    if "final_md_bonds_intact" in figures:
        intact = "bonds intact" if figures["final_md_bonds_intact"] else "[red]a bond broke[/]"
        text += f"; MD {figures['final_md_ps_run']:.1f} ps: {intact}"
        text += f", mean T {figures['final_md_mean_temperature_k']:.0f} K"
    return text
