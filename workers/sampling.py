"""MD exploration with the current model: candidate frames for selection (pure, no Ray).

Two engines, same integrator semantics (ASE's Langevin with ``fixcm=False``, or
velocity Verlet for NVE):

* ``ase``: ``ase.md`` dynamics over ``CatalCalculator``, one replica at a time (the
  reference, and the path any ASE calculator can take);
* ``batched``: every replica advanced together, one model call per step for the batch.

Every ``stride`` steps each running replica yields a frame (``ase.Atoms``) whose ``info``
holds the model's ``model_energy`` (eV), its uncertainty (``UNCERTAINTY_KEYS``: ``energy_std``
(eV), ``forces_std_max`` (eV/Å, the largest per-atom force std) and ``forces_std_atom`` (the
index of the atom that has it: the most uncertain atom), ``energy_entropy``,
``energy_mutual_information`` and ``energy_excess_entropy`` (nats), ``latent_distance_max`` (the
most unfamiliar atom's distance to the training atoms in feature space); nan where the model has none),
``embedding`` ([F] pooled features), ``replica``, ``step``, ``stop_reason`` ("" when
fine) and the start's ``CARRIED_INFO`` (its system, charge and spin), and whose
``arrays["model_forces"]`` holds forces (eV/Å). A replica stops at the first frame that
breaks a stop rule; that frame is kept with its reason, never selected. Frames carry no
calculator: model predictions are never mistaken for labels.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from ase import Atoms, units
from ase.data import covalent_radii
from pydantic import Field, model_validator

from workers import integrators as md
from workers.bias import LatentBias
from workers.model.calculator import STRUCTURE_KEYS
from workers.model.graph import Batch, batch_edges, collate
from workers.model.potential import Potential
from workers.schema import Section
from workers.structures import thermalize

# the model's per-structure outputs a frame keeps (one name each in model, predict, frame info);
# not energy_std_per_atom, which is energy_std / len(atoms)
UNCERTAINTY_KEYS = tuple(key for key in STRUCTURE_KEYS if key != "energy_std_per_atom")
AUX_KEYS = ("energy", *UNCERTAINTY_KEYS, "embedding")
# what a frame keeps of its start's info: which system it is, with its charge and spin
CARRIED_INFO = ("system", "charge", "spin")


class StopRules(Section):
    # stop when any two atoms come closer than this (Å): a collapsing, unphysical frame
    min_distance_a: float | None = Field(0.6, gt=0.0)
    # stop when a bond forms or breaks; bonded = d < bond_factor * (r_cov,i + r_cov,j)
    check_topology: bool = True
    bond_factor: float = Field(1.3, gt=0.5, lt=3.0)
    # stop when any force component's norm exceeds this (eV/Å)
    max_force_ev_a: float | None = Field(50.0, gt=0.0)
    # stop above this entropy (nats): the trust window's upper bound, when absolute
    max_entropy: float | None = None


class MDConfig(Section):
    # batched: all replicas per model call (fast); ase: ase.md reference engine
    engine: Literal["batched", "ase"] = "batched"
    # nvt = Langevin thermostat; nve = velocity Verlet
    ensemble: Literal["nvt", "nve"] = "nvt"
    # replicas started round-robin from the seed structures
    replicas: int = Field(8, ge=1)
    # initial Maxwell-Boltzmann temperature and thermostat target (K) ...
    temperature_k: float = Field(500.0, ge=0.0)
    # ... ramped linearly to this over the run when set
    temperature_end_k: float | None = Field(None, ge=0.0)
    # K per replica, cycled (DP-GEN's temps): replica r starts and is held at
    # temperatures_k[r % len] instead of temperature_k (no ramp with it); normal-mode sets
    # still draw at temperature_k unless system.initial/holdout_temperature_k are set
    temperatures_k: list[float] | None = Field(None, min_length=1)
    # 0.5 fs resolves X-H stretches
    timestep_fs: float = Field(0.5, gt=0.0, le=5.0)
    # Langevin friction (1/fs); 0.01 couples gently
    friction_per_fs: float = Field(0.01, ge=0.0)
    steps: int = Field(200, ge=1)
    # keep a frame every `stride` steps
    stride: int = Field(10, ge=1)
    # seeds velocities and the thermostat noise
    seed: int = 0
    # uncertainty-biased MD (hyperactive learning, van der Oord et al. 2023), eV per atom: MD
    # runs on the model's energy plus -bias_ev * (1 - exp(-u^2 / 2)) per atom, u its latent
    # distance over a familiar training atom's, so replicas drift toward what the model does not
    # know (strongest pull at the training data's edge, bounded beyond it). Frames keep the
    # model's own forces and the bias (bias_energy, eV). 0 = plain MD; batched engine only
    bias_ev: float = Field(0.0, ge=0.0, le=10.0)
    stops: StopRules = StopRules()

    @model_validator(mode="after")
    def _one_schedule(self) -> MDConfig:
        if self.bias_ev > 0 and self.engine != "batched":
            raise ValueError("bias_ev (uncertainty-biased MD) needs engine: batched")
        if self.temperatures_k is not None:
            if self.temperature_end_k is not None:
                raise ValueError("temperatures_k (one per replica) and temperature_end_k (a ramp) exclude each other")
            if min(self.temperatures_k) < 0.0:
                raise ValueError(f"temperatures_k must be >= 0 K, got {self.temperatures_k}")
        return self


def temperature_at(cfg: MDConfig, step: int, replica: int = 0) -> float:
    """Thermostat target (K) of global replica ``replica`` at MD step ``step``."""
    if cfg.temperatures_k is not None:
        return cfg.temperatures_k[replica % len(cfg.temperatures_k)]
    if cfg.temperature_end_k is None:
        return cfg.temperature_k
    t = step / max(cfg.steps, 1)
    return cfg.temperature_k + t * (cfg.temperature_end_k - cfg.temperature_k)


def hottest_k(cfg: MDConfig) -> float:
    """The hottest thermostat target (K) any replica of ``cfg`` runs at, at any step."""
    if cfg.temperatures_k is not None:
        return float(max(cfg.temperatures_k))
    return float(max(cfg.temperature_k, cfg.temperature_end_k or 0.0))


def initial_replicas(seeds: list[Atoms], cfg: MDConfig, offset: int = 0) -> list[Atoms]:
    """Replica ``r`` starts at ``seeds[(offset + r) % len(seeds)]`` with MB velocities."""
    out = []
    for r in range(cfg.replicas):
        a = seeds[(offset + r) % len(seeds)].copy()
        a.calc = None
        rng = np.random.default_rng([cfg.seed, offset + r])
        thermalize(a, temperature_at(cfg, 0, offset + r), rng)
        out.append(a)
    return out


@dataclass
class Topology:
    """The batch's bonds at the start of MD: ``bonded0`` keys ``i * n_atoms + j`` of every
    ordered pair closer than ``bond_factor x (r_cov,i + r_cov,j)``, minimum-image in cells."""

    batch: Batch
    radii: torch.Tensor  # [n_atoms] covalent radii (Å)
    cutoff: float  # Å: every pair a stop rule looks at is closer than this
    bonded0: torch.Tensor  # [n_bonds] int64 sorted keys


def close_pairs(batch: Batch, positions: torch.Tensor, cutoff: float) -> tuple[torch.Tensor, ...]:
    """``(i, j, d)`` of every ordered pair closer than ``cutoff`` (Å): a molecule's from its
    candidate pairs, a periodic cell's from a neighbour list with images (``batch_edges``)."""
    i, j, vec = batch_edges(batch, positions.detach(), cutoff)
    return i, j, vec.norm(dim=-1)


def topology(batch: Batch, positions: torch.Tensor, rules: StopRules) -> Topology:
    radii = torch.as_tensor(covalent_radii, dtype=positions.dtype)[batch.numbers]
    cutoff = max(rules.bond_factor * 2 * float(radii.max()), rules.min_distance_a or 0.0) + 1e-6
    topo = Topology(batch, radii, cutoff, torch.zeros(0, dtype=torch.long))
    topo.bonded0 = bond_keys(topo, *close_pairs(batch, positions, cutoff), rules.bond_factor)
    return topo


def bond_keys(topo: Topology, i: torch.Tensor, j: torch.Tensor, d: torch.Tensor, bond_factor: float) -> torch.Tensor:
    """Sorted keys ``i * n_atoms + j`` of the bonded pairs among ``(i, j, d)``."""
    bonded = d < bond_factor * (topo.radii[i] + topo.radii[j])
    return torch.unique(i[bonded] * len(topo.radii) + j[bonded])


def check_stops(
    positions: torch.Tensor,
    forces: torch.Tensor,
    aux: dict,
    structure: torch.Tensor,
    topo: Topology,
    rules: StopRules,
) -> list[str]:
    """Per structure, the first stop rule broken (``""`` if none): pure, shared by engines."""
    n = int(aux["energy"].shape[0])
    reasons = [""] * n

    def flag(mask: torch.Tensor, text) -> None:
        for k in torch.nonzero(mask).flatten().tolist():
            if not reasons[k]:
                reasons[k] = text(k) if callable(text) else text

    finite_atom = torch.isfinite(positions).all(-1) & torch.isfinite(forces).all(-1)
    bad = torch.zeros(n, dtype=torch.bool).index_put_((structure,), ~finite_atom, accumulate=True)
    flag(bad | ~torch.isfinite(aux["energy"]), "non-finite value")
    # a non-finite atom (its structure flagged above) sits at the origin for the pair checks
    i, j, d = close_pairs(topo.batch, torch.where(finite_atom[:, None], positions, 0.0), topo.cutoff)
    if rules.min_distance_a is not None and d.numel():
        dmin = torch.full((n,), torch.inf, dtype=d.dtype).scatter_reduce(0, structure[i], d, reduce="amin")
        flag(dmin < rules.min_distance_a, lambda k: f"min distance {float(dmin[k]):.2f} Å")
    if rules.check_topology:
        now = bond_keys(topo, i, j, d, rules.bond_factor)
        changed = torch.cat([now[~torch.isin(now, topo.bonded0)], topo.bonded0[~torch.isin(topo.bonded0, now)]])
        atom = torch.div(changed, len(topo.radii), rounding_mode="floor")
        flag(torch.zeros(n, dtype=torch.bool).index_put_((structure[atom],), torch.ones_like(atom, dtype=torch.bool),
                                                         accumulate=True), "bond topology changed")  # fmt: skip
    if rules.max_force_ev_a is not None:
        fmax = torch.zeros(n, dtype=forces.dtype).scatter_reduce(0, structure, forces.norm(dim=-1), reduce="amax")
        flag(fmax > rules.max_force_ev_a, lambda k: f"force {float(fmax[k]):.1f} eV/Å above cap")
    if rules.max_entropy is not None and "energy_entropy" in aux:
        ent = aux["energy_entropy"]
        flag(ent > rules.max_entropy, lambda k: f"entropy {float(ent[k]):.2f} above trust window")
    return reasons


def _frame(atoms: Atoms, positions, velocities, forces, aux, k: int, replica: int, step: int, reason: str) -> Atoms:
    a = Atoms(numbers=atoms.numbers, positions=positions, cell=atoms.cell, pbc=atoms.pbc)
    if a.pbc.all():
        a.wrap()  # into the cell: the labeller and the store see one image of each atom
    a.info.update({key: atoms.info[key] for key in CARRIED_INFO if key in atoms.info})
    a.set_velocities(velocities)  # kinetic energy for drift checks
    a.arrays["model_forces"] = forces
    a.info.update(
        {
            "model_energy": float(aux["energy"][k]),
            **{key: float(aux[key][k]) if key in aux else float("nan") for key in UNCERTAINTY_KEYS},
            "embedding": aux["embedding"][k].detach().cpu().double().numpy(),
            "replica": replica,
            "step": step,
            "stop_reason": reason,
        }
    )
    if "bias_energy" in aux:  # uncertainty-biased MD: the bias the frame was sampled under (eV)
        a.info["bias_energy"] = float(aux["bias_energy"][k])
    if np.isfinite(a.info["forces_std_atom"]):  # an atom's index
        a.info["forces_std_atom"] = int(a.info["forces_std_atom"])
    return a


def run_batched(model: Potential, starts: list[Atoms], cfg: MDConfig, replica_offset: int = 0) -> list[Atoms]:
    """All replicas in one batch, one model call per step."""
    param = next(model.parameters())
    batch = collate(starts)
    n = batch.n_structures
    x0 = batch.positions.double()

    recording = [True]  # uncertainty on recorded steps only; the others are bare energy + forces
    bias = LatentBias.of(model, cfg.bias_ev) if cfg.bias_ev > 0 else None

    def forces_fn(x: torch.Tensor):
        b = batch.to(param.device, param.dtype)
        b.positions = x.to(param.device, param.dtype)
        if bias is not None and not recording[0]:  # one pass: the model's energy and the bias
            forces, bias_ev, out = bias.forces(model, b, with_model=True)
            return forces, {k: v.detach().cpu() for k, v in out.items() if k in AUX_KEYS}
        out = model(b, forces=True, uncertainty=recording[0], bare=not recording[0])
        aux = {k: v.detach().cpu() for k, v in out.items() if k in AUX_KEYS}
        forces = out["forces"].detach().cpu().double()
        if bias is None:
            return forces, aux
        bias_forces, aux["bias_energy"], _ = bias.forces(model, b, with_model=False)
        aux["model_forces"] = forces  # what frames keep and the stop rules read
        return forces + bias_forces, aux

    masses = torch.from_numpy(np.concatenate([a.get_masses() for a in starts]))[:, None].double()
    velocities = torch.from_numpy(np.concatenate([a.get_velocities() for a in starts])).double()
    f0, aux0 = forces_fn(x0)
    state = md.MDState(x0, velocities, f0, masses, torch.ones_like(masses), aux0)
    topo = topology(batch, x0, cfg.stops)
    dt = cfg.timestep_fs * units.fs
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + replica_offset)
    atoms_per_replica = batch.n_atoms.numpy()

    def kt_ev(step: int) -> torch.Tensor:  # [n_atoms, 1] k_B T of each atom's replica
        t_k = [temperature_at(cfg, step, replica_offset + k) for k in range(n)]
        return torch.from_numpy(np.repeat(units.kB * np.asarray(t_k), atoms_per_replica))[:, None]

    bounds = np.concatenate([[0], np.cumsum(batch.n_atoms.numpy())])
    running = np.ones(n, dtype=bool)
    frames: list[Atoms] = []
    for step in range(1, cfg.steps + 1):
        recording[0] = step % cfg.stride == 0
        if cfg.ensemble == "nve":
            state = md.verlet_step(state, forces_fn, dt)
        else:
            coef = md.langevin_coefficients(dt, kt_ev(step), cfg.friction_per_fs / units.fs, masses)
            state = md.langevin_step(state, forces_fn, dt, coef, gen)
        if step % cfg.stride:
            continue
        model_forces = state.aux.get("model_forces", state.forces)  # without the bias
        reasons = check_stops(state.positions, model_forces, state.aux, batch.structure, topo, cfg.stops)
        x, v, f = state.positions.numpy(), state.velocities.numpy(), model_forces.numpy()
        for k in np.nonzero(running)[0]:
            lo, hi = bounds[k], bounds[k + 1]
            frames.append(
                _frame(
                    starts[k],
                    x[lo:hi],
                    v[lo:hi],
                    f[lo:hi],
                    state.aux,
                    k,
                    replica_offset + k,
                    step,
                    reasons[k],
                )
            )
            if reasons[k]:
                running[k] = False
        if not running.any():
            break
        # stopped replicas freeze: zero velocity, no further position updates
        moving = torch.from_numpy(np.repeat(running, batch.n_atoms.numpy())).double()[:, None]
        state = replace(state, moving=moving, velocities=state.velocities * moving)
    return frames


def run_ase(model: Potential, starts: list[Atoms], cfg: MDConfig, replica_offset: int = 0) -> list[Atoms]:
    """Reference engine: ``ase.md`` over ``CatalCalculator``, one replica at a time."""
    from ase.md.langevin import Langevin
    from ase.md.verlet import VelocityVerlet

    from workers.model.calculator import CatalCalculator, predict

    frames: list[Atoms] = []
    for k, start in enumerate(starts):
        atoms = start.copy()
        atoms.calc = CatalCalculator(model, uncertainty=False)  # recorded steps call predict below
        dt = cfg.timestep_fs * units.fs
        if cfg.ensemble == "nve":
            dyn = VelocityVerlet(atoms, timestep=dt)
        else:
            rng = np.random.default_rng([cfg.seed, replica_offset + k])
            dyn = Langevin(
                atoms, timestep=dt, temperature_K=temperature_at(cfg, 0, replica_offset + k),
                friction=cfg.friction_per_fs / units.fs, fixcm=False, rng=rng,
            )  # fmt: skip
        batch = collate([atoms])
        topo = topology(batch, batch.positions, cfg.stops)
        for step in range(1, cfg.steps + 1):
            if cfg.ensemble == "nvt" and cfg.temperature_end_k is not None:
                dyn.set_temperature(temperature_K=temperature_at(cfg, step, replica_offset + k))
            dyn.run(1)
            if step % cfg.stride:
                continue
            r = predict(model, [atoms])[0]
            aux = {
                "energy": torch.tensor([r["energy"]], dtype=torch.float64),
                "embedding": torch.from_numpy(r["embedding"])[None],
            }
            for key in UNCERTAINTY_KEYS:
                if key in r:
                    aux[key] = torch.tensor([r[key]], dtype=torch.float64)
            x = torch.from_numpy(atoms.positions.copy())
            f = torch.from_numpy(r["forces"])
            (reason,) = check_stops(x, f, aux, batch.structure, topo, cfg.stops)
            v = atoms.get_velocities()
            frames.append(_frame(atoms, x.numpy(), v, f.numpy(), aux, 0, replica_offset + k, step, reason))
            if reason:
                break
    return frames


def run_md(model: Potential, seeds: list[Atoms], cfg: MDConfig, replica_offset: int = 0) -> list[Atoms]:
    """``cfg.replicas`` replicas from ``seeds`` with the configured engine; returns frames."""
    starts = initial_replicas(seeds, cfg, replica_offset)
    engine = run_batched if cfg.engine == "batched" else run_ase
    with torch.enable_grad():  # forces need autograd even if a caller disabled it
        return engine(model, starts, cfg, replica_offset)


def replica_shares(n_replicas: int, n_actors: int) -> list[tuple[int, int]]:
    """``[(offset, count)]``: replicas split as evenly as possible over actors."""
    base, extra = divmod(n_replicas, n_actors)
    out, offset = [], 0
    for k in range(n_actors):
        count = base + (1 if k < extra else 0)
        if count:
            out.append((offset, count))
        offset += count
    return out


def last_frames(frames: list[Atoms]) -> dict[int, Atoms]:
    """Each replica's frame of the highest step (``info["replica"]``, ``info["step"]``)."""
    last: dict[int, Atoms] = {}
    for f in frames:
        r = f.info["replica"]
        if r not in last or f.info["step"] > last[r].info["step"]:
            last[r] = f
    return last
