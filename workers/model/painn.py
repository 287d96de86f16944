"""A small PaiNN-style equivariant message-passing backbone (Schütt et al. 2021), pure torch.

Per atom it keeps invariant features ``s [n_atoms, F]`` and equivariant vector features
``v [n_atoms, 3, F]``. Messages depend on distances (radial basis with a smooth cosine
cutoff, so energies stay smooth as atoms cross the cutoff) and on unit bond vectors, so
the invariant output is unchanged by rotation, translation and permutation of atoms.
"""

from __future__ import annotations

import math

import torch
from torch import nn

MAX_Z = 118  # embeddings cover every element


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

    def __init__(self, features: int, layers: int, rbf: int, cutoff: float):
        super().__init__()
        self.out_features, self.cutoff = features, float(cutoff)
        self.embed = nn.Embedding(MAX_Z + 1, features)
        self.rbf = RadialBasis(rbf, cutoff)
        self.messages = nn.ModuleList(Message(features, rbf) for _ in range(layers))
        self.updates = nn.ModuleList(Update(features) for _ in range(layers))
        self.norm = nn.LayerNorm(features)

    def metadata(self) -> dict:
        return {}  # the architecture is all in BackboneConfig

    def forward(self, numbers, i, j, vec) -> torch.Tensor:
        """``numbers [n_atoms]``, edges ``i <- j`` with ``vec = r_j - r_i [n_edges, 3]`` Å."""
        d = torch.sqrt((vec * vec).sum(dim=-1) + 1e-12)  # [n_edges]
        unit = vec / d[:, None]
        rbf = self.rbf(d)
        fcut = cosine_cutoff(d, self.cutoff)
        s = self.embed(numbers)
        v = s.new_zeros(s.shape[0], 3, s.shape[1])
        for layer, (msg, upd) in enumerate(zip(self.messages, self.updates, strict=True)):
            s, v = msg(s, v, i, j, unit, rbf, fcut, v_is_zero=layer == 0)
            s, v = upd(s, v)
        return self.norm(s)
