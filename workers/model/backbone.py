"""The backbone interface: per-atom invariant features ``[n_atoms, F]`` for the heads.

A backbone is an ``nn.Module`` with

* ``forward(numbers [n_atoms], i [n_edges], j [n_edges], vec [n_edges, 3]) -> [n_atoms, F]``:
  edges ``i <- j`` within ``cutoff`` and ``vec = r_j - r_i`` in Å, differentiable (forces
  are ``-dE/dr`` by autograd through the backbone);
* ``out_features`` (F) and ``cutoff`` (Å);
* ``metadata()``: what, beyond ``BackboneConfig``, rebuilds its architecture (plain numbers,
  strings and lists, so checkpoints load with ``weights_only=True``).

Two kinds: ``painn`` (catal's PaiNN, pure torch, the light default) and ``mace`` (MACE's
blocks from mace-torch, an optional extra). ``build_backbone`` makes a fresh one from the
training structures; ``backbone_from_metadata`` rebuilds one for a checkpoint.
"""

from __future__ import annotations

from typing import Literal

from ase import Atoms
from pydantic import Field, model_validator
from torch import nn

from workers.model.painn import MAX_Z, PaiNN
from workers.schema import Section

__all__ = ["MAX_Z", "BackboneConfig", "backbone_from_metadata", "build_backbone"]

DEFAULT_RBF = {"painn": 20, "mace": 8}


class BackboneConfig(Section):
    # painn: catal's built-in PaiNN (pure torch, fastest on CPU); mace: MACE's blocks from
    # mace-torch (pip install 'catal[mace]'), slower per structure, more accurate per label
    kind: Literal["painn", "mace"] = "painn"
    # width: PaiNN's channels; MACE's channels per irrep (32 -> 32x0e+32x1o at max_l 1)
    features: int = Field(64, ge=4, le=1024)
    # message-passing layers (MACE: interactions); receptive field = layers * cutoff
    layers: int = Field(3, ge=1, le=12)
    # radial basis functions; None = the kind's default (PaiNN 20 Gaussians, MACE 8 Bessel)
    rbf: int | None = Field(None, ge=2, le=256)
    # Å; molecules of ~10 atoms are fully connected at 5 Å
    cutoff: float = Field(5.0, gt=0.5, le=20.0)
    # mace only: highest l of the hidden features (1: 0e+1o, MACE's usual small model)
    max_l: int = Field(1, ge=0, le=3)
    # mace only: highest l of the edges' spherical harmonics
    max_ell: int = Field(3, ge=1, le=6)
    # mace only: correlation order of the product basis (body order - 1)
    correlation: int = Field(3, ge=1, le=4)
    # mace only: a backbone file written by `catal import-mace MODEL` (a trained or
    # foundation MACE's blocks), fine-tuned under a fresh head; its architecture replaces
    # features, layers, rbf, cutoff, max_l, max_ell and correlation
    pretrained: str | None = None

    @model_validator(mode="after")
    def _pretrained_is_mace(self):
        if self.pretrained is not None and self.kind != "mace":
            raise ValueError("pretrained needs kind: mace")
        return self

    @property
    def n_rbf(self) -> int:
        return self.rbf if self.rbf is not None else DEFAULT_RBF[self.kind]


def build_backbone(cfg: BackboneConfig, structures: list[Atoms]) -> nn.Module:
    """A fresh backbone for ``structures`` (MACE needs their elements and neighbour counts)."""
    if cfg.kind == "painn":
        return PaiNN(cfg.features, cfg.layers, cfg.n_rbf, cfg.cutoff)
    from workers.model import mace_backbone

    return mace_backbone.build(cfg, structures)


def backbone_from_metadata(cfg: BackboneConfig, meta: dict) -> nn.Module:
    """The backbone a checkpoint describes (weights loaded by the caller)."""
    if cfg.kind == "painn":
        return PaiNN(cfg.features, cfg.layers, cfg.n_rbf, cfg.cutoff)
    from workers.model import mace_backbone

    return mace_backbone.MaceBackbone(meta["arch"])
