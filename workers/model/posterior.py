"""The last-layer posterior (LLPR; Bigi et al. 2024) of a potential's location heads (pure torch).

The energy is linear in the heads' last-layer features ``phi`` (``[n_atoms, D]``, summed per
structure): ``E = y_std * sum_i phi_i . w``. A Gaussian posterior on ``w`` from the training
energies and forces gives each prediction a variance: exact for energies (``phi^T C phi``),
and for forces through the forces of a few fixed weight perturbations ``d_k`` (the posterior's
principal directions, or draws ``N(0, C)``), whose spread is distance-aware: large where the
features move along directions training never pinned.
"""

from __future__ import annotations

import torch
from ase import Atoms

from workers.model.graph import Batch, collate

PROBES = 16  # random probes per batch estimating the force features' Gram matrix ...
PROBE_ATOMS = 400  # ... fewer for large structures: each probe costs a backward pass over every
# atom, and a structure's many force components already average (16 up to 25 atoms, 4 at 96)


def covariance(precision: torch.Tensor, reg: float) -> torch.Tensor:
    """Last-layer posterior covariance ``(P + reg * mean_eig(P) I)^-1`` ``[D, D]`` from the
    precision ``P`` the training labels put on the last layer's weights:
    ``sum_s phi_s phi_s^T / sigma_E^2`` over structures plus ``sum J^T J / sigma_F^2`` over
    force components, ``J = d phi / d r``. Large along directions the training set never
    constrained. ``reg`` is relative to the mean eigenvalue, so it is scale-free."""
    a = precision.double()
    lam = reg * max(float(torch.trace(a)) / a.shape[0], 1e-300)
    return torch.linalg.inv(a + lam * torch.eye(a.shape[0], dtype=a.dtype, device=a.device))


def covariance_root(cov: torch.Tensor) -> torch.Tensor:
    """``R [D, D]`` with ``cov = R @ R.T`` (float64 eigendecomposition, negative rounding
    clipped). Variances are then ``|phi @ R|^2``, sums of squares: a quadratic form
    ``phi^T cov phi`` in float32 cancels catastrophically for an ill-conditioned ``cov``
    (stds that moved with the batch they were computed in, or read 0)."""
    evals, evecs = torch.linalg.eigh(cov.double().cpu())
    return evecs * evals.clamp_min(0.0).sqrt()


def weight_draws(root: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """``k`` fixed draws ``[k, D]`` of last-layer weight perturbations from ``N(0, R R^T)``."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(k, root.shape[0], generator=gen, dtype=torch.float64)
    return z @ root.double().T


def principal_directions(root: torch.Tensor, k: int) -> torch.Tensor:
    """The posterior's ``k`` largest-variance directions ``[k, D]``, each ``sqrt(k lambda) u``
    (``cov = R R^T = sum lambda u u^T``): the mean square of their forces is the force variance
    the posterior puts along them, ``sum_k lambda_k |J u_k|^2``, the exact variance truncated to
    the directions the training labels constrained least. Deterministic (no sampling noise)."""
    evals, evecs = torch.linalg.eigh(root.double() @ root.double().T)  # ascending
    top = min(k, len(evals))
    lam = evals[-top:].flip(0).clamp_min(0.0)
    return (evecs[:, -top:].flip(1) * (top * lam).sqrt()).T


def predictive(batch: Batch, phi_ev: torch.Tensor, root: torch.Tensor, draws: torch.Tensor) -> tuple:
    """Raw stds (eV) of the energy ``[n_structures]`` and of each atom's energy ``[n_atoms]``
    (exact: ``|phi @ R|``, ``cov = R R^T``), and the energies ``[n_structures, samples]`` of
    the weight draws, in the graph (their forces are the force spread). ``phi_ev [n_atoms, D]``:
    features in eV units."""
    total = phi_ev.new_zeros(batch.n_structures, phi_ev.shape[1]).index_add(0, batch.structure, phi_ev)
    r = root.to(phi_ev.dtype)
    energy_std = (total.detach() @ r).norm(dim=-1)
    energies_std = (phi_ev.detach() @ r).norm(dim=-1)
    return energy_std, energies_std, total @ draws.to(phi_ev.dtype).T


def fit(model, structures: list[Atoms], batch_size: int = 16) -> torch.Tensor:
    """The posterior covariance ``[D, D]`` of ``model``'s last layer from labelled
    ``structures`` (the training set): energy and force features, each weighted by the
    inverse of the model's mean squared residual on them (eV^2, (eV/Å)^2), so the
    covariance is in eV units."""
    param = next(model.parameters())
    d = model.llpr_root.shape[0]
    p_energy = torch.zeros(d, d, dtype=torch.float64, device=param.device)
    p_forces = torch.zeros_like(p_energy)
    se_e, se_f, n_e, n_f = 0.0, 0.0, 0, 0
    gen = torch.Generator().manual_seed(0)
    mean_atoms = sum(len(a) for a in structures) / max(len(structures), 1)
    n_probes = int(min(PROBES, max(2, round(PROBE_ATOMS / mean_atoms))))
    for start in range(0, len(structures), batch_size):
        batch = collate(structures[start : start + batch_size], with_labels=True).to(param.device, param.dtype)
        with torch.enable_grad():
            out = model(batch, forces=True)  # residuals
            pos = batch.positions.detach().requires_grad_(True)
            batch.positions = pos
            phi = model.y_std * model(batch, forces=False)["last_layer"]
            total = phi.new_zeros(batch.n_structures, d).index_add(0, batch.structure, phi)  # [n, D] eV
            # J^T J = E_v[(J v)(J v)^T] over probes v ~ N(0, I) on the force components:
            # J v by the double-backward trick (two passes per probe, not one per feature)
            w = torch.zeros_like(total, requires_grad=True)
            (g,) = torch.autograd.grad(total, pos, grad_outputs=w, create_graph=True)
            probes = torch.randn(n_probes, *pos.shape, generator=gen, dtype=pos.dtype)
            (jv,) = torch.autograd.grad(g, w, grad_outputs=probes.to(pos.device), is_grads_batched=True)
        t = total.detach().double()
        p_energy += t.T @ t
        jv = jv.detach().double().reshape(-1, d)  # [probes * n_structures, D]
        p_forces += jv.T @ jv / n_probes
        se_e += float(((out["energy"].detach() - batch.energy_ev) ** 2).sum())
        se_f += float(((out["forces"].detach() - batch.forces_ev_a) ** 2).sum())
        n_e, n_f = n_e + batch.n_structures, n_f + batch.forces_ev_a.numel()
    var_e, var_f = max(se_e / n_e, 1e-8), max(se_f / n_f, 1e-8)
    return covariance(p_energy / var_e + p_forces / var_f, model.cfg.llpr_reg)
