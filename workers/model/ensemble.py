"""A categorical shallow ensemble: ``M`` heads on one backbone, and what their spread says.

Each head ``m`` gives a location ``y_m`` (per-atom contributions ``e_im`` averaged) and,
categorical, a histogram ``p_mk`` over offsets from it. The model's prediction is the
heads' mean; the uncertainty splits by the law of total variance:

    Var[y] = E_m[Var_m]  (aleatoric: the histograms' own width beyond the HL-Gauss smoothing)
           + Var_m[y_m]  (epistemic: how far the heads disagree)

and, for the histograms on one energy grid, entropy of the mean = mean entropy (aleatoric)
+ mutual information (epistemic). Heads that share a backbone agree where training
constrained them and drift apart away from it (Kellner & Ceriotti 2024, "Uncertainty
quantification by direct propagation of shallow ensembles"); per-atom contributions put
the disagreement on the atoms it comes from, and the heads' forces give a per-atom force
spread (eV/Å) at the cost of one batched backward pass.

Pure torch; shapes in the docstrings.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class EnsembleMLP(nn.Module):
    """``members`` independent two-layer MLPs evaluated as one: ``[N, in] -> [N, members, out]``."""

    def __init__(self, in_features: int, hidden: int, out_features: int, members: int):
        super().__init__()
        self.members = members
        self.w1 = nn.Parameter(torch.empty(members, in_features, hidden))
        self.b1 = nn.Parameter(torch.empty(members, hidden))
        self.w2 = nn.Parameter(torch.empty(members, hidden, out_features))
        self.b2 = nn.Parameter(torch.empty(members, out_features))
        for w, b, fan_in in ((self.w1, self.b1, in_features), (self.w2, self.b2, hidden)):
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default initialisation, per member
            nn.init.uniform_(w, -bound, bound)
            nn.init.uniform_(b, -bound, bound)

    def forward(self, x: torch.Tensor, hidden: bool = False):
        """``[N, members, out]``; with ``hidden`` also the last layer's inputs ``[N, members, hidden]``."""
        h = torch.nn.functional.silu(torch.einsum("ni,mih->nmh", x, self.w1) + self.b1)
        out = torch.einsum("nmh,mho->nmo", h, self.w2) + self.b2
        return (out, h) if hidden else out


def member_spread(values: torch.Tensor) -> torch.Tensor:
    """Population std over the last (member) axis; 0 for one member. ``[..., M] -> [...]``."""
    if values.shape[-1] < 2:
        return torch.zeros_like(values[..., 0])
    return values.var(dim=-1, unbiased=False).clamp_min(0.0).sqrt()


def excess_variance(hist_var: torch.Tensor, smoothing_sigma: float) -> torch.Tensor:
    """A histogram's variance beyond the HL-Gauss smoothing's own ``sigma^2`` (>= 0).

    Every target histogram is a Gaussian of width ``sigma``, so a fitted histogram is at
    least that wide wherever the model is sure: that floor is the label encoding, not
    uncertainty, and is taken off (a deconvolution of two Gaussians' variances)."""
    return (hist_var - smoothing_sigma**2).clamp_min(0.0)


def mixture_entropy(probs: torch.Tensor, shift_bins: torch.Tensor) -> dict:
    """Entropies of ``M`` histograms placed on one grid, and of their mean.

    ``probs [n, M, K]``: member ``m``'s masses on bins ``k = 0..K-1`` of width ``w``, its
    grid shifted by ``shift_bins [n, M]`` bins (a member's location in bin units). Each
    member's mass is shared between the two common-grid bins around its shifted position
    (cloud-in-cell); member and mean entropies are both taken on that grid, so
    ``entropy = aleatoric + mutual_information`` exactly and ``mutual_information >= 0``,
    zero when the members agree. Returns ``entropy`` (of the mean histogram),
    ``aleatoric`` (mean member entropy) and ``mutual_information`` ``[n]``, nats.
    """
    n, m, k = probs.shape
    rel = shift_bins - shift_bins[:, :1]  # member 0's grid is the common one (its entropy exact)
    floor = rel.floor()
    frac = (rel - floor)[..., None]  # [n, M, 1]
    base = floor - floor.min(dim=-1, keepdim=True).values  # [n, M] >= 0
    size = int(base.max().item()) + k + 1 if probs.numel() else k + 1
    index = (base.long()[..., None] + torch.arange(k, device=probs.device)).clamp_max(size - 2)  # [n, M, K]
    grid = probs.new_zeros(n, m, size)
    grid.scatter_add_(-1, index, probs * (1.0 - frac))
    grid.scatter_add_(-1, index + 1, probs * frac)

    def h(p: torch.Tensor) -> torch.Tensor:
        return -torch.where(p > 0, p * torch.log(p.clamp_min(1e-300)), torch.zeros_like(p)).sum(-1)

    aleatoric = h(grid).mean(-1)
    total = h(grid.mean(1))
    return {"entropy": total, "aleatoric": aleatoric, "mutual_information": (total - aleatoric).clamp_min(0.0)}


def member_forces(member_energy: torch.Tensor, positions: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """Each member's forces ``[M, n_atoms, 3]`` (eV/Å) from its energies ``[n_structures, M]``.

    On an accelerator one batched backward pass (``is_grads_batched``) for all members; on
    the CPU one backward pass per member, which there takes about half the time of the
    batched one (9 columns, 16-45 ethanol frames, PaiNN 64x3: 54 vs 95 ms, 139 vs 248 ms).
    Their mean is the force of the mean energy."""
    m = member_energy.shape[-1]
    total = member_energy.sum(0)  # [M]
    if positions.device.type == "cpu":
        grads = [
            torch.autograd.grad(total[k], positions, create_graph=create_graph, retain_graph=True)[0] for k in range(m)
        ]
        return -torch.stack(grads)
    eye = torch.eye(m, dtype=member_energy.dtype, device=member_energy.device)
    (grad,) = torch.autograd.grad(
        total, positions, grad_outputs=eye, is_grads_batched=True, create_graph=create_graph, retain_graph=True
    )
    return -grad


def forces_spread(forces_m: torch.Tensor) -> torch.Tensor:
    """Per-atom force std ``[n_atoms]`` (eV/Å per Cartesian component) over members ``[M, n_atoms, 3]``.

    ``sqrt(mean_m mean_c (F_mic - <F_ic>)^2)``: DP-GEN's per-atom ``devi_f`` over sqrt(3), so
    that a component's error is compared with it directly."""
    if forces_m.shape[0] < 2:
        return torch.zeros(forces_m.shape[1], dtype=forces_m.dtype, device=forces_m.device)
    dev = forces_m - forces_m.mean(0, keepdim=True)
    return dev.pow(2).mean(dim=(0, 2)).sqrt()
