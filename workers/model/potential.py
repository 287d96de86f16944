"""The interatomic potential: a backbone (PaiNN or MACE) + categorical (HL-Gauss) or scalar head.

Target per structure: the per-atom referenced energy ``y = (E - sum_i ref[Z_i]) / n_atoms``
(eV/atom), normalised as ``(y - y_mean) / y_std``. References are fitted by least squares
on the training set (fairchem's convention). Energy is ``n_atoms * y + sum_i ref[Z_i]``;
forces are ``-dE/dr`` by autograd (conservative).

Heads (``ModelConfig.head`` x ``ModelConfig.histogram``):

* ``scalar``: a location ``mu`` regressed from per-atom contributions (``readout``).
* ``categorical`` + ``centred`` (default): the same location ``mu`` plus a histogram over
  *offsets* ``delta_k`` from it, symmetric about 0 (logits averaged with their mirror
  image), so the predicted distribution of ``y`` (mass ``p_k`` at ``mu + delta_k``) has
  expected value exactly ``mu``: the energy is the histogram's mean, and forces take the
  scalar head's smooth path. The cross-entropy against the HL-Gauss histogram of the
  label's offset from ``mu`` (detached) shapes the histogram and, through the shared
  backbone, the features; the histogram's spread is the model's error bar. The offsets'
  support is ``[-relative_span, relative_span]`` (normalised units: multiples of y_std).
* ``categorical`` + ``relative``: as centred but asymmetric, so the energy is
  ``mu + sum_k p_k delta_k``; the offset's mean adds noise to energies (ablation only).
* ``categorical`` + ``absolute``: the first design, bins fixed over the training range and
  logits from mean-pooled features; its mean saturates at the support's edges and it
  trails the scalar head (docs/results.md), kept for the ablation.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from ase import Atoms
from pydantic import Field
from torch import nn

from workers.model import hlgauss
from workers.model.backbone import MAX_Z, BackboneConfig, backbone_from_metadata, build_backbone
from workers.model.graph import Batch, edges_within_cutoff
from workers.schema import Section


class ModelConfig(Section):
    # categorical predicts a histogram (entropy = uncertainty); scalar is the MSE baseline
    head: Literal["categorical", "scalar"] = "categorical"
    # "Stop Regressing": 128 bins match scalar accuracy
    num_bins: int = Field(128, ge=8, le=4096)
    # HL-Gauss sigma in bin widths (0.75 is the paper's default)
    sigma_ratio: float = Field(0.75, gt=0.0, le=10.0)
    # centred: a symmetric histogram of offsets from a regressed location, whose mean is that
    # location (scalar-level accuracy, sharp histograms); relative: the same, asymmetric;
    # absolute: bins fixed over the training range (the first design). docs/results.md
    histogram: Literal["centred", "relative", "absolute"] = "centred"
    # centred/relative: half-width of the offsets' support in units of the training set's
    # per-atom energy std (2.0 = ±0.4 eV for ethanol at 300-800 K; bins of 6 meV)
    relative_span: float = Field(2.0, gt=0.0, le=100.0)
    # absolute histogram: support padding beyond the training range, in sigmas ...
    pad_sigmas: float = Field(3.0, ge=0.0)
    # ... plus this fraction of the range: room for the higher energies AL explores
    pad_fraction: float = Field(0.25, ge=0.0, le=5.0)
    # location: per-atom contributions averaged (atomwise, the usual locality) or one MLP
    # on mean-pooled features (pooled)
    readout: Literal["atomwise", "pooled"] = "atomwise"
    backbone: BackboneConfig = BackboneConfig()


def per_atom_targets(structures: list[Atoms], refs: np.ndarray) -> np.ndarray:
    """``(E - sum_i ref[Z_i]) / n_atoms`` (eV/atom) for labelled structures ``[n]``."""
    return np.array([(a.get_potential_energy() - refs[a.numbers].sum()) / len(a) for a in structures])


def fit_element_refs(structures: list[Atoms]) -> np.ndarray:
    """Per-element reference energies ``[MAX_Z + 1]`` (eV) by least squares on composition.

    Rank-deficient compositions (e.g. every structure is ethanol) get the minimum-norm
    solution, which is fine: only the referenced residual is learned.
    """
    counts = np.zeros((len(structures), MAX_Z + 1))
    for k, a in enumerate(structures):
        np.add.at(counts[k], a.numbers, 1.0)
    energies = np.array([a.get_potential_energy() for a in structures])
    present = counts.sum(axis=0) > 0
    sol, *_ = np.linalg.lstsq(counts[:, present], energies, rcond=None)
    refs = np.zeros(MAX_Z + 1)
    refs[present] = sol
    return refs


class Potential(nn.Module):
    """Energy, forces, and (categorical head) entropy for batches of molecules."""

    def __init__(
        self,
        cfg: ModelConfig,
        element_refs: torch.Tensor,
        y_mean: float,
        y_std: float,
        support: hlgauss.Support | None,
        backbone: nn.Module,
    ):
        super().__init__()
        if cfg.head == "categorical" and support is None:
            raise ValueError("the categorical head needs an HL-Gauss support")
        self.cfg = cfg
        self.support = support
        self.y_mean, self.y_std = float(y_mean), float(y_std)
        self.register_buffer("element_refs", element_refs.clone().double())
        self.backbone = backbone  # per-atom features [n_atoms, F] (workers/model/backbone.py)
        f = backbone.out_features
        self.absolute = cfg.head == "categorical" and cfg.histogram == "absolute"
        if not self.absolute:  # the regressed location [n_structures]
            self.location = nn.Sequential(nn.Linear(f, f), nn.SiLU(), nn.Linear(f, 1))
        if cfg.head == "categorical":  # logits over the bins
            self.head = nn.Sequential(nn.Linear(f, f), nn.SiLU(), nn.Linear(f, cfg.num_bins))

    @classmethod
    def fit(cls, cfg: ModelConfig, structures: list[Atoms]) -> Potential:
        """A fresh model whose references, normalisation and support come from ``structures``."""
        if len(structures) < 2:
            raise ValueError(f"need at least 2 labelled structures to fit a model, got {len(structures)}")
        refs = fit_element_refs(structures)
        y = per_atom_targets(structures, refs)
        y_mean, y_std = float(y.mean()), max(float(y.std()), 1e-4)
        support = None
        if cfg.head == "categorical" and cfg.histogram != "absolute":
            support = hlgauss.Support(-cfg.relative_span, cfg.relative_span, cfg.num_bins, cfg.sigma_ratio)
        elif cfg.head == "categorical":
            support = hlgauss.fit_support(
                torch.from_numpy((y - y_mean) / y_std),
                cfg.num_bins,
                cfg.sigma_ratio,
                cfg.pad_sigmas,
                cfg.pad_fraction,
            )
        return cls(cfg, torch.from_numpy(refs), y_mean, y_std, support, build_backbone(cfg.backbone, structures))

    def normalised_targets(self, batch: Batch) -> torch.Tensor:
        """Labels as normalised per-atom referenced energies ``[n_structures]``."""
        ref = self._ref_sum(batch, torch.float64)
        y = (batch.energy_ev.double() - ref) / batch.n_atoms.double()
        return ((y - self.y_mean) / self.y_std).to(batch.positions.dtype)

    def histogram_targets(self, batch: Batch, out: dict) -> tuple[torch.Tensor, int]:
        """HL-Gauss target histograms ``[n_structures, num_bins]`` and the count clamped.

        Relative histogram: the label's offset from the (detached) location, so the
        cross-entropy shapes the histogram and leaves the location to the regression.
        """
        y = self.normalised_targets(batch)
        if not self.absolute:
            y = y - out["location"].detach()
        return hlgauss.to_histogram(y, self.support)

    @staticmethod
    def _mean(batch: Batch, per_atom: torch.Tensor) -> torch.Tensor:
        """Per-structure mean ``[n_structures, k]`` of per-atom rows ``[n_atoms, k]``."""
        total = per_atom.new_zeros(batch.n_structures, per_atom.shape[1]).index_add(0, batch.structure, per_atom)
        return total / batch.n_atoms.to(per_atom.dtype)[:, None]

    def _ref_sum(self, batch: Batch, dtype) -> torch.Tensor:
        per_atom = self.element_refs[batch.numbers].to(dtype)
        return torch.zeros(batch.n_structures, dtype=dtype, device=per_atom.device).index_add(
            0, batch.structure, per_atom
        )

    def forward(self, batch: Batch, forces: bool = True, create_graph: bool = False) -> dict:
        """Predictions for a batch.

        Returns ``energy`` [n_structures] eV, ``forces`` [n_atoms, 3] eV/Å (if asked),
        ``y_norm`` [n_structures] normalised target, ``embedding`` [n_structures, F]
        (pooled features, detached), ``location`` [n_structures] (the regressed location
        in normalised units; absent for the absolute histogram), and for the categorical
        head ``logits`` [n_structures, num_bins], ``entropy`` [n_structures] nats,
        ``energy_std`` [n_structures] eV (histogram spread, scaled to the structure's
        energy), ``energy_std_per_atom`` [n_structures] eV/atom (comparable across sizes)
        and ``excess_entropy`` [n_structures] (entropy minus the HL-Gauss target's own).
        """
        pos = batch.positions
        if forces and not pos.requires_grad:
            pos = pos.detach().requires_grad_(True)
        i, j, vec = edges_within_cutoff(pos, batch.pair_i, batch.pair_j, self.backbone.cutoff)
        feats = self.backbone(batch.numbers, i, j, vec)  # [n_atoms, F]
        n = batch.n_atoms.to(feats.dtype)
        pooled = self._mean(batch, feats)
        out: dict = {"embedding": pooled.detach()}
        y_norm = None
        if not self.absolute:
            if self.cfg.readout == "atomwise":  # per-atom contributions, averaged
                loc = self._mean(batch, self.location(feats))[:, 0]
            else:
                loc = self.location(pooled)[:, 0]
            out["location"] = loc
            y_norm = loc
        if self.cfg.head == "categorical":
            logits = self.head(pooled)
            if self.cfg.histogram == "centred":  # symmetric about 0: the mean is the location
                logits = 0.5 * (logits + logits.flip(-1))
            out["logits"] = logits
            offset = hlgauss.expected_value(logits, self.support)  # absolute: the value itself
            if self.absolute:
                y_norm = offset
            elif self.cfg.histogram == "relative":
                y_norm = y_norm + offset
            out["entropy"] = hlgauss.entropy(logits).detach()
            spread = (self.y_std * hlgauss.std(logits, self.support)).detach()
            out["energy_std_per_atom"] = spread
            out["energy_std"] = n * spread
            # entropy beyond the floor that the HL-Gauss smoothing itself imposes
            floor = hlgauss.target_entropy(offset.detach(), self.support)
            out["excess_entropy"] = out["entropy"] - floor
        out["y_norm"] = y_norm
        # summed in float64: a molecule's total energy (~1e3-1e5 eV) would lose meV in float32
        per_atom = (self.y_mean + self.y_std * y_norm).double()
        energy = n.double() * per_atom + self._ref_sum(batch, torch.float64)
        out["energy"] = energy
        if forces:
            (grad,) = torch.autograd.grad(energy.sum(), pos, create_graph=create_graph, retain_graph=create_graph)
            out["forces"] = -grad
        return out

    # -- checkpoints (weights_only-safe: tensors, numbers, strings, dicts, lists) --------
    def metadata(self) -> dict:
        return {
            "model_config": self.cfg.to_dict(),
            "y_mean": self.y_mean,
            "y_std": self.y_std,
            "support": self.support.to_dict() if self.support else None,
            "backbone": self.backbone.metadata(),
        }

    @classmethod
    def from_metadata(cls, meta: dict, state_dict: dict) -> Potential:
        support = hlgauss.Support.from_dict(meta["support"]) if meta["support"] else None
        cfg = ModelConfig.from_dict(meta["model_config"])
        model = cls(
            cfg,
            state_dict["element_refs"],
            meta["y_mean"],
            meta["y_std"],
            support,
            backbone_from_metadata(cfg.backbone, meta["backbone"]),
        )
        model.load_state_dict(state_dict)
        return model


CHECKPOINT_FORMAT = "catal-potential-v3"  # v3: backbone kind + its metadata (v2 read as PaiNN)


def save_checkpoint(path, model: Potential, extra: dict | None = None) -> None:
    """Write model weights + config + refs + support (+ ``extra``, e.g. optimizer, epoch).

    Written to a temporary file and renamed, so a crash never leaves a half checkpoint.
    """
    import os

    payload = {"format": CHECKPOINT_FORMAT, **model.metadata(), "state_dict": model.state_dict()}
    payload.update(extra or {})
    tmp = f"{path}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, map_location="cpu") -> tuple[Potential, dict]:
    """Load with ``weights_only=True``; returns the model and the raw checkpoint dict."""
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if isinstance(ckpt, dict) and ckpt.get("format") == "catal-potential-v1":
        raise ValueError(f"{path} is a catal checkpoint from before the centred-histogram head (v1); retrain it")
    if isinstance(ckpt, dict) and ckpt.get("format") == "catal-potential-v2":
        ckpt = {**ckpt, "format": CHECKPOINT_FORMAT, "backbone": {}}  # v2: always PaiNN, same weights
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a catal checkpoint")
    return Potential.from_metadata(ckpt, ckpt["state_dict"]), ckpt


def model_payload(model: Potential, copy: bool = False) -> dict:
    """A model as plain CPU tensors + metadata, for ``ray.put`` (shipped once per round);
    ``copy``: tensors of their own, not views of the live weights of a CPU model in training."""
    return {
        "meta": model.metadata(),
        "state_dict": {k: v.detach().to("cpu", copy=copy) for k, v in model.state_dict().items()},
    }


def model_from_payload(payload: dict, device: str = "auto", dtype: str = "float32") -> Potential:
    """The model ``model_payload`` shipped, on ``device`` in ``dtype``, in eval mode."""
    from workers.model.training import DTYPES, resolve_device

    model = Potential.from_metadata(payload["meta"], payload["state_dict"])
    return model.to(device=resolve_device(device), dtype=DTYPES[dtype]).eval()
