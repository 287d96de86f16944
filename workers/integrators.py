"""Batched MD integrators: a state object passed through pure steps (torch-sim style).

Units are ASE's: positions Å, masses amu, forces eV/Å, time in ASE units (``fs *
ase.units.fs``), velocities Å per ASE time unit. The steps reproduce ASE's
``VelocityVerlet`` and ``Langevin`` (``fixcm=False``) updates term for term, so the batched
engine and the ASE engine follow the same trajectory from the same start (NVE), and the
same stationary distribution (NVT).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

# forces_fn(positions [n_atoms, 3]) -> (forces [n_atoms, 3], aux dict of per-structure tensors)
ForcesFn = Callable[[torch.Tensor], tuple[torch.Tensor, dict]]


@dataclass(frozen=True)
class MDState:
    positions: torch.Tensor  # [n_atoms, 3] Å, float64
    velocities: torch.Tensor  # [n_atoms, 3] Å / ASE time
    forces: torch.Tensor  # [n_atoms, 3] eV/Å at ``positions``
    masses: torch.Tensor  # [n_atoms, 1] amu
    moving: torch.Tensor  # [n_atoms, 1] 1.0 for atoms of running replicas, 0.0 when stopped
    aux: dict  # model outputs at ``positions`` (energy, entropy, ...) per structure
    step: int = 0


def verlet_step(state: MDState, forces_fn: ForcesFn, dt: float) -> MDState:
    """One velocity-Verlet step (ASE's ``VelocityVerlet.step``); stopped atoms stay put."""
    m = state.moving
    v = state.velocities + m * 0.5 * dt * state.forces / state.masses
    x = state.positions + m * dt * v
    f, aux = forces_fn(x)
    v = v + m * 0.5 * dt * f / state.masses
    return replace(state, positions=x, velocities=v, forces=f, aux=aux, step=state.step + 1)


@dataclass(frozen=True)
class LangevinCoefficients:
    c1: float
    c2: float
    c3: torch.Tensor  # [n_atoms, 1]
    c4: torch.Tensor
    c5: torch.Tensor


def langevin_coefficients(dt: float, kt_ev: float | torch.Tensor, friction: float, masses: torch.Tensor):
    """ASE ``Langevin.updatevars``: friction in 1 / ASE time, ``kt_ev = k_B T`` in eV (a float, or
    [n_atoms, 1] when replicas run at their own temperatures)."""
    sigma = torch.sqrt(2.0 * kt_ev * friction / masses)
    c1 = dt / 2.0 - dt * dt * friction / 8.0
    c2 = dt * friction / 2.0 - dt * dt * friction * friction / 8.0
    c3 = math.sqrt(dt) * sigma / 2.0 - dt**1.5 * friction * sigma / 8.0
    c5 = dt**1.5 * sigma / (2.0 * math.sqrt(3.0))
    c4 = friction / 2.0 * c5
    return LangevinCoefficients(c1, c2, c3, c4, c5)


def langevin_step(
    state: MDState,
    forces_fn: ForcesFn,
    dt: float,
    coef: LangevinCoefficients,
    generator: torch.Generator,
) -> MDState:
    """One step of ASE's Langevin integrator (Vanden-Eijnden & Ciccotti), ``fixcm=False``."""
    m = state.moving
    xi = torch.randn(state.positions.shape, generator=generator, dtype=state.positions.dtype)
    eta = torch.randn(state.positions.shape, generator=generator, dtype=state.positions.dtype)
    rnd_pos = coef.c5 * eta
    rnd_vel = coef.c3 * xi - coef.c4 * eta
    v = state.velocities + m * (coef.c1 * state.forces / state.masses - coef.c2 * state.velocities + rnd_vel)
    x = state.positions + m * (dt * v + rnd_pos)
    f, aux = forces_fn(x)
    v = v + m * (coef.c1 * f / state.masses - coef.c2 * v + rnd_vel)
    return replace(state, positions=x, velocities=v, forces=f, aux=aux, step=state.step + 1)


def kinetic_energy(state: MDState, structure: torch.Tensor, n_structures: int) -> torch.Tensor:
    """Kinetic energy per structure ``[n_structures]`` (eV)."""
    per_atom = 0.5 * (state.masses * state.velocities**2).sum(dim=-1)
    return torch.zeros(n_structures, dtype=per_atom.dtype).index_add(0, structure, per_atom)
