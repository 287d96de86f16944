"""MACE (Batatia et al. 2022) as a catal backbone, from mace-torch's own blocks.

The features are MACE's: one-hot element embedding, Bessel radial basis with MACE's
polynomial cutoff, spherical harmonics of the edges, and its interaction and symmetric
product blocks. The invariant (0e) channels of every layer's product output, concatenated
and layer-normalised, are the per-atom features ``[n_atoms, F]`` under catal's heads
(``F = layers * features`` for a fresh model). MACE's own readouts and atomic energies
are not used: the heads and catal's element references replace them.

An architecture is a dict of plain values (``arch``: irreps as strings, block classes by
name), so a checkpoint stores ``arch`` + state dict and loads with ``weights_only=True``.
A user's trained or foundation MACE model file (a pickled module, as mace-torch saves
them) is converted once, explicitly, by ``import_model`` (``catal import-mace``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from torch import nn

from workers.files import torch_bytes, write_atomic
from workers.model.painn import MAX_Z

BACKBONE_FORMAT = "catal-mace-backbone-v1"
WEIGHTS_ONLY_ENV = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"

# MACE(...) keyword arguments an ``arch`` may carry (all plain values)
ARCH_KEYS = (
    "r_max",
    "num_bessel",
    "num_polynomial_cutoff",
    "max_ell",
    "interaction_cls",
    "interaction_cls_first",
    "num_interactions",
    "hidden_irreps",
    "MLP_irreps",
    "atomic_energies",
    "avg_num_neighbors",
    "atomic_numbers",
    "correlation",
    "gate",
    "radial_MLP",
    "radial_type",
    "distance_transform",
    "edge_irreps",
    "use_edge_irreps_first",
    "use_reduced_cg",
    "use_so3",
    "use_agnostic_product",
    "apply_cutoff",
    "heads",
)


def _mace_modules():
    """``mace.modules``, imported without leaving its side effects on this process.

    Importing ``mace`` sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` for the whole process
    (so its e3nn pin can read its own constants file); catal restores the variable at once,
    so no later ``torch.load`` here or in child processes silently unpickles code.
    """
    before = os.environ.get(WEIGHTS_ONLY_ENV)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore", UserWarning)  # TorchScript notes from e3nn's blocks
            import mace.modules  # (and its print that cuequivariance is absent)
    except ImportError as err:
        raise ImportError(
            "model.backbone.kind: mace needs mace-torch: pip install 'catal[mace]' (or mace-torch==0.3.16)"
        ) from err
    finally:
        if before is None:
            os.environ.pop(WEIGHTS_ONLY_ENV, None)
        else:
            os.environ[WEIGHTS_ONLY_ENV] = before
    return mace.modules


def mace_available() -> bool:
    try:
        _mace_modules()
    except ImportError:
        return False
    return True


def hidden_irreps(features: int, max_l: int) -> str:
    """``32, 1 -> "32x0e+32x1o"``: equal channels for every l, natural parity."""
    return "+".join(f"{features}x{ell}{'e' if ell % 2 == 0 else 'o'}" for ell in range(max_l + 1))


def average_neighbours(structures: list[Atoms], cutoff: float) -> float:
    """Mean number of neighbours within ``cutoff`` Å per atom (MACE normalises messages by it)."""
    counts = []
    for a in structures:
        d = np.linalg.norm(a.positions[:, None] - a.positions[None], axis=-1)
        counts.append(((d < cutoff).sum(axis=1) - 1).astype(float))
    return float(np.concatenate(counts).mean()) if counts else 1.0


def fresh_arch(cfg, structures: list[Atoms]) -> dict:
    """A MACE architecture from ``BackboneConfig`` and the training structures' elements."""
    numbers = sorted({int(z) for a in structures for z in a.numbers})
    return {
        "r_max": float(cfg.cutoff),
        "num_bessel": int(cfg.n_rbf),
        "num_polynomial_cutoff": 5,
        "max_ell": int(cfg.max_ell),
        "interaction_cls": "RealAgnosticResidualInteractionBlock",
        "interaction_cls_first": "RealAgnosticResidualInteractionBlock",
        "num_interactions": int(cfg.layers),
        "hidden_irreps": hidden_irreps(cfg.features, cfg.max_l),
        "MLP_irreps": "16x0e",
        "atomic_energies": [0.0] * len(numbers),
        "avg_num_neighbors": max(average_neighbours(structures, cfg.cutoff), 1.0),
        "atomic_numbers": numbers,
        "correlation": int(cfg.correlation),
        "gate": "silu",
        "radial_MLP": [64, 64, 64],
        "radial_type": "bessel",
    }


def build_mace(arch: dict) -> nn.Module:
    """``mace.modules.MACE`` from a plain ``arch`` dict."""
    modules = _mace_modules()
    from e3nn import o3

    unknown = set(arch) - set(ARCH_KEYS)
    if unknown:
        raise ValueError(f"MACE architecture has unknown keys {sorted(unknown)}")
    kw = dict(arch)
    for key in ("interaction_cls", "interaction_cls_first"):
        kw[key] = modules.interaction_classes[kw[key]]
    for key in ("hidden_irreps", "MLP_irreps", "edge_irreps"):
        if kw.get(key) is not None:
            kw[key] = o3.Irreps(kw[key])
    kw["gate"] = modules.gate_dict[kw["gate"]]
    kw["atomic_energies"] = np.asarray(kw["atomic_energies"], dtype=float)
    kw["num_elements"] = len(kw["atomic_numbers"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TorchScript notes from e3nn's blocks
        return modules.MACE(**kw)


class MaceBackbone(nn.Module):
    """Per-atom invariant features ``[n_atoms, F]`` from MACE's blocks."""

    def __init__(self, arch: dict):
        super().__init__()
        self.arch = dict(arch)
        self.mace = build_mace(arch)
        from e3nn import o3  # importable once build_mace has imported mace

        self.mace.readouts = nn.ModuleList()  # catal's heads read the features instead
        self.cutoff = float(arch["r_max"])
        self.elements = [int(z) for z in arch["atomic_numbers"]]
        index = torch.full((MAX_Z + 1,), -1, dtype=torch.long)
        index[self.elements] = torch.arange(len(self.elements))
        self.register_buffer("z_index", index, persistent=False)
        self.scalar_slices = []  # the 0e block of each layer's product output
        for product in self.mace.products:
            irreps = o3.Irreps(str(product.linear.irreps_out))
            blocks = [s for (_, ir), s in zip(irreps, irreps.slices(), strict=True) if ir.l == 0 and ir.p == 1]
            if len(blocks) != 1:
                raise ValueError(f"MACE layer with irreps {irreps} has no single 0e block")
            self.scalar_slices.append((blocks[0].start, blocks[0].stop))
        self.out_features = sum(b - a for a, b in self.scalar_slices)
        self.norm = nn.LayerNorm(self.out_features)

    def metadata(self) -> dict:
        return {"arch": self.arch}

    def check_elements(self, numbers) -> None:
        missing = sorted({int(z) for z in numbers} - set(self.elements))
        if missing:
            raise ValueError(f"the MACE backbone has no embedding for Z={missing} (it knows Z={self.elements})")

    def invariants(self, numbers, i, j, vec) -> torch.Tensor:
        """The 0e channels of every layer, concatenated ``[n_atoms, F]`` (before the norm)."""
        m = self.mace
        node_attrs = nn.functional.one_hot(self.z_index[numbers], len(self.elements)).to(vec.dtype)
        edge_index = torch.stack([j, i])  # MACE's [sender, receiver]
        vectors = -vec  # MACE's r_receiver - r_sender
        lengths = torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)
        node_feats = m.node_embedding(node_attrs)
        edge_attrs = m.spherical_harmonics(vectors)
        edge_feats, cutoff = m.radial_embedding(lengths, node_attrs, edge_index, m.atomic_numbers)
        feats = []
        for layer, (interaction, product) in enumerate(zip(m.interactions, m.products, strict=True)):
            node_feats, sc = interaction(
                node_attrs=node_attrs,
                node_feats=node_feats,
                edge_attrs=edge_attrs,
                edge_feats=edge_feats,
                edge_index=edge_index,
                cutoff=cutoff,
                first_layer=layer == 0,
            )
            node_feats = product(node_feats=node_feats, sc=sc, node_attrs=node_attrs)
            a, b = self.scalar_slices[layer]
            feats.append(node_feats[:, a:b])
        return torch.cat(feats, dim=-1)

    def forward(self, numbers, i, j, vec) -> torch.Tensor:
        """``numbers [n_atoms]``, edges ``i <- j`` with ``vec = r_j - r_i [n_edges, 3]`` Å."""
        return self.norm(self.invariants(numbers, i, j, vec))


def build(cfg, structures: list[Atoms]) -> MaceBackbone:
    """A fresh MACE backbone, or the pretrained one ``cfg.pretrained`` names."""
    if cfg.pretrained is None:
        return MaceBackbone(fresh_arch(cfg, structures))
    backbone = load_pretrained(cfg.pretrained)
    backbone.check_elements({int(z) for a in structures for z in a.numbers})
    return backbone


# -- pretrained models ---------------------------------------------------------------


def arch_of(model: nn.Module) -> dict:
    """The plain ``arch`` of a mace-torch model (``MACE`` or ``ScaleShiftMACE``)."""
    modules = _mace_modules()
    from mace.tools.scripts_utils import extract_config_mace_model

    if model.__class__.__name__ == "MACE":  # extract_config_mace_model takes ScaleShiftMACE only
        raise ValueError("import a ScaleShiftMACE (what mace_run_train saves), not a bare MACE")
    cfg = extract_config_mace_model(model)
    if "error" in cfg:
        raise ValueError(cfg["error"])
    if cfg.get("embedding_specs"):
        raise ValueError("MACE models with extra embeddings (embedding_specs) are not supported")
    gate = next((name for name, f in modules.gate_dict.items() if f is cfg["gate"]), None)
    if gate is None:
        raise ValueError(f"MACE model with an unknown gate {cfg['gate']}")
    edge = cfg.get("edge_irreps")
    arch = {
        "r_max": float(cfg["r_max"]),
        "num_bessel": int(cfg["num_bessel"]),
        "num_polynomial_cutoff": int(cfg["num_polynomial_cutoff"]),
        "max_ell": int(cfg["max_ell"]),
        "interaction_cls": cfg["interaction_cls"].__name__,
        "interaction_cls_first": cfg["interaction_cls_first"].__name__,
        "num_interactions": int(cfg["num_interactions"]),
        "hidden_irreps": str(cfg["hidden_irreps"]),
        "MLP_irreps": str(cfg["MLP_irreps"]),
        "atomic_energies": np.asarray(cfg["atomic_energies"], dtype=float).tolist(),
        "avg_num_neighbors": float(cfg["avg_num_neighbors"]),
        "atomic_numbers": [int(z) for z in cfg["atomic_numbers"]],
        "correlation": int(cfg["correlation"]),
        "gate": gate,
        "radial_MLP": [int(h) for h in cfg["radial_MLP"]],
        "radial_type": str(cfg["radial_type"]),
        "distance_transform": str(cfg["distance_transform"]),
        "edge_irreps": None if edge is None else str(edge),
        "use_edge_irreps_first": bool(cfg.get("use_edge_irreps_first", False)),
        "use_reduced_cg": bool(cfg.get("use_reduced_cg", False)),
        "use_so3": bool(cfg.get("use_so3", False)),
        "use_agnostic_product": bool(cfg.get("use_agnostic_product", False)),
        "apply_cutoff": bool(cfg.get("apply_cutoff", True)),
        "heads": list(cfg["heads"]),
    }
    return arch


def backbone_of(model: nn.Module) -> MaceBackbone:
    """A ``MaceBackbone`` carrying a mace-torch model's blocks and weights."""
    backbone = MaceBackbone(arch_of(model))
    backbone.to(next(model.parameters()).dtype)  # keep float64 weights float64
    missing, _unused = backbone.mace.load_state_dict(model.state_dict(), strict=False)
    if missing:
        raise ValueError(f"MACE model lacks weights for {missing[:3]} ({len(missing)} in all)")
    return backbone


def import_model(source: str | Path, dest: str | Path) -> dict:
    """Convert a mace-torch model file (a pickled module) into a catal backbone file.

    The source is unpickled (``weights_only=False``: only import files you trust); the
    output holds plain values and tensors and loads with ``weights_only=True``. Returns a
    summary (elements, cutoff, layers, features, sha256 of the source).
    """
    source, dest = Path(source), Path(dest)
    _mace_modules()  # first, so unpickling's import of mace leaves no process-wide side effects
    model = torch.load(source, map_location="cpu", weights_only=False)
    if not isinstance(model, nn.Module):
        raise ValueError(f"{source} holds a {type(model).__name__}, not a MACE model")
    backbone = backbone_of(model)
    summary = {
        "source": source.name,
        "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
        "elements": backbone.elements,
        "cutoff_a": backbone.cutoff,
        "layers": len(backbone.scalar_slices),
        "features": backbone.out_features,
    }
    payload = {
        "format": BACKBONE_FORMAT,
        "arch": backbone.arch,
        "state_dict": backbone.mace.state_dict(),
        "summary": summary,
    }
    write_atomic(dest, torch_bytes(payload))
    return summary


def read_pretrained(path: str | Path) -> dict:
    """The payload of a catal MACE backbone file (``weights_only=True``), checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained backbone not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:  # a pickled module, or not torch at all
        raise ValueError(
            f"{path} is not a catal backbone file (a mace-torch .model? convert it once with "
            f"`catal import-mace {path} OUT.pt`): {str(err).splitlines()[0][:120]}"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != BACKBONE_FORMAT:
        raise ValueError(f"{path} is not a catal backbone file (convert it with `catal import-mace`)")
    return payload


def load_pretrained(path: str | Path) -> MaceBackbone:
    payload = read_pretrained(path)
    backbone = MaceBackbone(payload["arch"])
    dtype = next(t.dtype for t in payload["state_dict"].values() if t.is_floating_point())
    backbone.to(dtype)  # load float64 weights without rounding them through float32
    backbone.mace.load_state_dict(payload["state_dict"])
    return backbone
