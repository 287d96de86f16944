"""A small PaiNN-style equivariant message-passing backbone (Schütt et al. 2021), pure torch.

Per atom it keeps invariant features ``s [n_atoms, F]`` and equivariant vector features
``v [n_atoms, 3, F]``. Messages depend on distances (radial basis with a smooth cosine
cutoff, so energies stay smooth as atoms cross the cutoff) and on unit bond vectors, so
the invariant output is unchanged by rotation, translation and permutation of atoms.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from workers.schema import Section

MAX_Z = 118


class BackboneConfig(Section):
    # width F of scalar and vector channels: 64 is ample for one molecule's PES
    features: int = Field(64, ge=4, le=1024)
    # message + update blocks; receptive field = layers * cutoff
    layers: int = Field(3, ge=1, le=12)
    # Gaussian radial basis functions over [0, cutoff]
    rbf: int = Field(20, ge=2, le=256)
    # Å; molecules of ~10 atoms are fully connected at 5 Å
    cutoff: float = Field(5.0, gt=0.5, le=20.0)


def cosine_cutoff(d: torch.Tensor, cutoff: float) -> torch.Tensor:
    return 0.5 * (torch.cos(d * math.pi / cutoff) + 1.0) * (d < cutoff).to(d.dtype)


class RadialBasis(nn.Module):
    def __init__(self, n: int, cutoff: float):
        super().__init__()
        self.register_buffer("mu", torch.linspace(0.0, cutoff, n))
        self.gamma = 0.5 / (cutoff / (n - 1)) ** 2

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.gamma * (d[:, None] - self.mu) ** 2)


class Message(nn.Module):
    def __init__(self, f: int, n_rbf: int):
        super().__init__()
        self.phi = nn.Sequential(nn.Linear(f, f), nn.SiLU(), nn.Linear(f, 3 * f))
        self.w = nn.Linear(n_rbf, 3 * f)
        self.f = f

    def forward(self, s, v, i, j, unit, rbf, fcut, v_is_zero: bool = False):
        # index_select, not s[j]: its backward is index_add, far cheaper than index_put
        x = self.phi(s).index_select(0, j) * (self.w(rbf) * fcut[:, None])  # [n_edges, 3F]
        ds, dvv, dvs = torch.split(x, self.f, dim=-1)
        dv = dvs[:, None, :] * unit[:, :, None]  # [n_edges, 3, F]
        if not v_is_zero:  # the first layer has no vector features yet
            dv = torch.addcmul(dv, dvv[:, None, :], v.index_select(0, j))
        s = s.index_add(0, i, ds)
        v = v.index_add(0, i, dv)
        return s, v


class Update(nn.Module):
    def __init__(self, f: int):
        super().__init__()
        self.u = nn.Linear(f, f, bias=False)
        self.vv = nn.Linear(f, f, bias=False)
        self.mlp = nn.Sequential(nn.Linear(2 * f, f), nn.SiLU(), nn.Linear(f, 3 * f))
        self.f = f

    def forward(self, s, v):
        uv, vv = self.u(v), self.vv(v)  # [n_atoms, 3, F]
        vnorm = torch.sqrt((vv * vv).sum(dim=1) + 1e-8)  # smooth at 0
        a = self.mlp(torch.cat([s, vnorm], dim=-1))
        a_vv, a_sv, a_ss = torch.split(a, self.f, dim=-1)
        v = v + a_vv[:, None, :] * uv
        s = s + a_ss + a_sv * (uv * vv).sum(dim=1)
        return s, v


class PaiNN(nn.Module):
    """Per-atom invariant features ``[n_atoms, F]`` from numbers and edge vectors."""

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(MAX_Z + 1, cfg.features)
        self.rbf = RadialBasis(cfg.rbf, cfg.cutoff)
        self.messages = nn.ModuleList(Message(cfg.features, cfg.rbf) for _ in range(cfg.layers))
        self.updates = nn.ModuleList(Update(cfg.features) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.features)

    def forward(self, numbers, i, j, vec) -> torch.Tensor:
        d = torch.sqrt((vec * vec).sum(dim=-1) + 1e-12)  # [n_edges]
        unit = vec / d[:, None]
        rbf = self.rbf(d)
        fcut = cosine_cutoff(d, self.cfg.cutoff)
        s = self.embed(numbers)
        v = s.new_zeros(s.shape[0], 3, s.shape[1])
        for layer, (msg, upd) in enumerate(zip(self.messages, self.updates, strict=True)):
            s, v = msg(s, v, i, j, unit, rbf, fcut, v_is_zero=layer == 0)
            s, v = upd(s, v)
        return self.norm(s)
