"""Checkpoints and payloads of a ``Potential``: weights + metadata, ``weights_only``-safe.

A checkpoint holds the model's config, element references, normalisation, HL-Gauss support,
backbone metadata, calibration and last-layer posterior (buffers), plus what the caller adds
(optimizer state, epoch); a payload is the same as plain CPU tensors for ``ray.put``.
"""

from __future__ import annotations

import pickle
import zipfile

import torch

from workers.errors import DamagedFile, first_line
from workers.files import torch_bytes, write_atomic
from workers.model.device import DTYPES, resolve_device
from workers.model.potential import Potential

CHECKPOINT_FORMAT = "catal-potential-v5"  # v5: the posterior stored as a covariance root


def save_checkpoint(path, model: Potential, extra: dict | None = None) -> None:
    """Write model weights + config + refs + support (+ ``extra``, e.g. optimizer, epoch).

    Written to a temporary file and renamed, so a crash never leaves a half checkpoint.
    """
    payload = {"format": CHECKPOINT_FORMAT, **model.metadata(), "state_dict": model.state_dict()}
    payload.update(extra or {})
    write_atomic(path, torch_bytes(payload))


def load_checkpoint(path, map_location="cpu") -> tuple[Potential, dict]:
    """Load with ``weights_only=True``; returns the model and the raw checkpoint dict. A file
    that does not read back (truncated, overwritten) is a ``DamagedFile``."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        reason = first_line(err)
        raise DamagedFile(path, reason, "delete it and run `catal resume`: the model is trained again") from None
    if isinstance(ckpt, dict) and ckpt.get("format") == "catal-potential-v1":
        raise ValueError(f"{path} is a catal checkpoint from before the centred-histogram head (v1); retrain it")
    if isinstance(ckpt, dict) and ckpt.get("format") in ("catal-potential-v2", "catal-potential-v3"):
        raise ValueError(f"{path} is a catal checkpoint from before the ensemble heads (v2/v3); retrain it")
    if isinstance(ckpt, dict) and ckpt.get("format") == "catal-potential-v4":
        raise ValueError(f"{path} is a catal checkpoint with a float32-unstable posterior (v4); retrain it")
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
    model = Potential.from_metadata(payload["meta"], payload["state_dict"])
    return model.to(device=resolve_device(device), dtype=DTYPES[dtype]).eval()
