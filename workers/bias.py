"""Uncertainty-biased MD (``MDConfig.bias_ev``; hyperactive learning, van der Oord et al. 2023):
the bias on a model's latent distance (``workers.model.latent.bias_energy``) and its forces, which
the batched MD engine (``workers.sampling.run_batched``) adds to the model's own (pure torch)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workers.model import latent
from workers.model.graph import Batch
from workers.model.potential import Potential


@dataclass(frozen=True)
class LatentBias:
    """Uncertainty-biased MD's bias (``MDConfig.bias_ev``) on a model's latent distance."""

    index: latent.LatentIndex
    typical: torch.Tensor  # [119] a familiar training atom's latent distance, per element
    neighbours: int
    strength_ev: float

    @classmethod
    def of(cls, model: Potential, strength_ev: float) -> LatentBias:
        if not model.latent_fitted:
            raise ValueError("bias_ev (uncertainty-biased MD) needs a model with a latent index (fit_latent)")
        index, k = latent.index_of(model), model.cfg.latent_neighbours
        return cls(index, latent.typical_distance(index, k), k, strength_ev)

    def forces(self, model: Potential, batch: Batch, with_model: bool) -> tuple:
        """``(forces [n_atoms, 3] eV/Å, bias_energy [n_structures] eV, out)``: the forces of the
        bias (plus the model's energy ``with_model``), float64 on the CPU, detached."""
        pos = batch.positions.detach().requires_grad_(True)
        batch.positions = pos
        out = model(batch, forces=False, bare=True)
        per_atom = latent.bias_energy(
            self.index, out["last_layer"], batch.numbers, self.typical, self.neighbours, self.strength_ev
        )
        bias = per_atom.new_zeros(batch.n_structures).index_add(0, batch.structure, per_atom)
        total = bias.sum() + (out["energy"].sum() if with_model else 0.0)
        (grad,) = torch.autograd.grad(total, pos)
        return -grad.detach().cpu().double(), bias.detach().cpu().double(), out
