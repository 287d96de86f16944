"""One visible training loop (nanoGPT-shaped) for the categorical or scalar potential.

loss = w_ce * CE(HL-Gauss target, logits)       (categorical head only)
     + w_energy * MSE(normalised energy)         (the histogram's mean, or the scalar)
     + w_forces * MSE(forces) / force_rms^2
     + w_stress * MSE(stress) / stress_rms^2     (periodic structures with a stress label)

AdamW, cosine or plateau schedule, gradient clipping, an exponential moving average of
the weights (what is validated and returned), early stopping on a validation split; the
best validation state is kept (the last one when fewer than ``MIN_VAL_SELECT`` validate).
Labels that arrive while it runs (``more``) join at the next epoch (an asynchronous
campaign's trainer takes them in rather than training on what it had at its start).
Data are lists of ``ase.Atoms`` carrying energy (eV), forces (eV/Å) and, for periodic cells,
stress (eV/Å^3) through their calculator (as ``ase.io.read`` gives them).
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from ase import Atoms
from pydantic import Field

from workers.model import hlgauss
from workers.model.checkpoint import load_checkpoint, save_checkpoint
from workers.model.device import DTYPES, resolve_device
from workers.model.graph import collate, voigt_to_matrix
from workers.model.potential import ModelConfig, Potential
from workers.schema import Section


class TrainConfig(Section):
    # full passes over the training split (early stopping may end sooner)
    epochs: int = Field(200, ge=1)
    # structures per optimiser step; small sets want small batches
    batch_size: int = Field(16, ge=1)
    # AdamW peak learning rate
    lr: float = Field(3e-3, gt=0.0)
    # AdamW decoupled weight decay
    weight_decay: float = Field(1e-5, ge=0.0)
    # weight of the MSE on the normalised energy (the histogram's mean, or the scalar)
    w_energy: float = Field(0.1, ge=0.0)
    # weight of the HL-Gauss cross-entropy (categorical head). 0.1: sharp histograms whose
    # spread ranks errors, at scalar-level accuracy; 1.0 cost ~10% in forces (benchmarks/heads.py)
    w_ce: float = Field(0.1, ge=0.0)
    # weight of the force MSE (normalised by the training force RMS)
    w_forces: float = Field(10.0, ge=0.0)
    # weight of the stress MSE (normalised by the training stress RMS) on periodic structures
    # with a stress label; molecules have none
    w_stress: float = Field(1.0, ge=0.0)
    # several heads (model.heads > 1): every head fits the forces itself (the losses
    # averaged), so they agree where there are labels and part where there are none; false:
    # the forces of the heads' mean (one backward pass). Each head always fits the energies
    member_losses: bool = False
    # cosine decays to lr * min_lr_ratio; plateau halves on stalled validation
    schedule: Literal["cosine", "plateau"] = "cosine"
    min_lr_ratio: float = Field(0.02, gt=0.0, le=1.0)
    # decay of the exponential moving average of the weights (0 = off); the average is
    # what is validated, kept and returned
    ema_decay: float = Field(0.99, ge=0.0, lt=1.0)
    # max global gradient norm
    grad_clip: float = Field(10.0, gt=0.0)
    # epochs without validation improvement before stopping (with >= 20 validation structures;
    # below that every epoch runs and the last one is kept)
    patience: int = Field(50, ge=1)
    # fraction of labelled structures held out for early stopping
    val_fraction: float = Field(0.15, ge=0.0, lt=0.9)
    # seeds initialisation, shuffling and the validation split
    seed: int = 0
    # float64 only for tests and finite differences
    dtype: Literal["float32", "float64"] = "float32"
    # "auto" = cuda when available
    device: str = "auto"


MIN_VAL_SELECT = 20  # validation structures needed to pick the returned epoch by them


@dataclass
class TrainResult:
    model: Potential
    history: list[dict] = field(default_factory=list)  # one dict per epoch
    best_epoch: int = 0
    support_clamped: int = 0  # training targets outside the HL-Gauss support
    structures_per_s: float = 0.0
    optimizer_state: dict | None = None
    val_metrics: dict = field(default_factory=dict)


def split(structures: list[Atoms], val_fraction: float, seed: int) -> tuple[list, list]:
    """Deterministic train/validation split (at least one of each when there are >= 2).

    The ``round(val_fraction * n)`` structures with the lowest content hash (elements,
    positions, ``seed``) validate, whatever their place in the list: when labels are added,
    a validation structure only ever moves to training, and a training structure moves to
    validation only when the validation set grows past it. A warm start is so validated on
    structures its previous model did not train on (a permutation of the grown list moved
    most of the old training set into validation, where the model before training scored
    best, and warm starts kept their first epochs)."""
    n = len(structures)
    n_val = int(round(val_fraction * n))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    order = np.argsort([_unit_hash(a, seed) for a in structures], kind="stable")
    is_val = np.zeros(n, dtype=bool)
    is_val[order[:n_val]] = True
    val = [a for a, v in zip(structures, is_val, strict=True) if v]
    train = [a for a, v in zip(structures, is_val, strict=True) if not v]
    return train, val


def _take_in(new: list[Atoms], known: set[float], seed: int, cut: float, train_set: list, val_set: list) -> bool:
    """Structures not seen yet join ``train_set`` or ``val_set`` in place: validation when
    their hash is below ``cut``, the highest validating one at the start (as ``split`` of
    the grown list would mostly place them; none moves across; what joins validation is
    below it, so it holds). Returns whether the validation set grew."""
    grew = False
    for a in new:
        h = _unit_hash(a, seed)
        if h in known:
            continue
        known.add(h)
        if h < cut:
            val_set.append(a)
            grew = True
        else:
            train_set.append(a)
    return grew


def _unit_hash(atoms: Atoms, seed: int) -> float:
    """A number in [0, 1) fixed by the structure (elements, positions to 1e-6 Å) and ``seed``."""
    h = hashlib.blake2b(digest_size=8)
    h.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    h.update(np.round(np.asarray(atoms.positions, dtype=np.float64), 6).tobytes())
    h.update(str(seed).encode())
    return int.from_bytes(h.digest(), "little") / 2.0**64


def force_rms(structures: list[Atoms]) -> float:
    f = np.concatenate([a.get_forces().reshape(-1) for a in structures])
    return max(float(np.sqrt(np.mean(f**2))), 1e-3)


def stress_rms(structures: list[Atoms]) -> float | None:
    """RMS of the stress labels' components (eV/Å^3) of periodic structures; None when none has one."""
    s = [voigt_to_matrix(a.calc.results["stress"]).reshape(-1) for a in structures
         if a.pbc.all() and a.calc is not None and a.calc.results.get("stress") is not None]  # fmt: skip
    return max(float(np.sqrt(np.mean(np.concatenate(s) ** 2))), 1e-5) if s else None


def stress_loss(out: dict, batch) -> torch.Tensor | None:
    """Mean squared stress error (eV/Å^3)^2 over the structures with a stress label, or None."""
    if batch.has_stress is None or "stress" not in out:
        return None
    keep = batch.has_stress
    return torch.mean((out["stress"][keep] - batch.stress_ev_a3[keep]) ** 2)


def evaluate(model: Potential, structures: list[Atoms], batch_size: int = 64) -> dict:
    """Energy MAE (eV, eV/atom), force MAE (eV/Å, per component) and RMSEs on labelled data;
    ``stress_mae`` (eV/Å^3, per component) where periodic structures carry stress labels."""
    if not structures:
        return {}
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    e_err, e_err_atom, f_err, s_err = [], [], [], []
    for start in range(0, len(structures), batch_size):
        batch = collate(structures[start : start + batch_size], with_labels=True).to(device, dtype)
        out = model(batch, forces=True, stress=batch.has_stress is not None)
        de = (out["energy"] - batch.energy_ev).detach()
        e_err.append(de.cpu())
        e_err_atom.append((de / batch.n_atoms.to(dtype)).cpu())
        f_err.append((out["forces"] - batch.forces_ev_a).detach().reshape(-1).cpu())
        if batch.has_stress is not None:
            s_err.append((out["stress"] - batch.stress_ev_a3)[batch.has_stress].detach().reshape(-1).cpu())
    e, ea, f = torch.cat(e_err), torch.cat(e_err_atom), torch.cat(f_err)
    metrics = {
        "energy_mae": float(e.abs().mean()),
        "energy_rmse": float(e.pow(2).mean().sqrt()),
        "energy_mae_per_atom": float(ea.abs().mean()),
        "force_mae": float(f.abs().mean()),
        "force_rmse": float(f.pow(2).mean().sqrt()),
    }
    if s_err:
        metrics["stress_mae"] = float(torch.cat(s_err).abs().mean())
    return metrics


def _lr_at(cfg: TrainConfig, epoch: int) -> float:
    t = epoch / max(cfg.epochs - 1, 1)
    lo = cfg.lr * cfg.min_lr_ratio
    return lo + 0.5 * (cfg.lr - lo) * (1.0 + math.cos(math.pi * t))


def train(
    cfg: TrainConfig,
    structures: list[Atoms],
    model: Potential | None = None,
    model_cfg: ModelConfig | None = None,
    optimizer_state: dict | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    more: Callable[[], list[Atoms]] | None = None,
    stop: Callable[[], bool] | None = None,
    snapshot: Callable[[Potential, dict], None] | None = None,
) -> TrainResult:
    """Train ``model`` (warm start) or a fresh one fitted to ``structures`` with ``model_cfg``.

    A warm-started model keeps its element references, normalisation and HL-Gauss support
    (the logits' meaning); targets that fall outside the support are clamped and counted.
    ``more()``, called before each epoch, returns labelled structures that arrived since:
    new ones join the side ``split`` would give them (see ``_take_in``); the force scale and
    the schedule stay as they were. ``stop()``, true after an epoch, ends the run there.
    ``snapshot(model, row)``, after each epoch, sees the model that would be returned (the
    weights' average) as it is then: an asynchronous campaign's MD runs on it mid-training.
    """
    if model is None and model_cfg is None:
        raise ValueError("train() needs a model to warm-start or a model_cfg for a fresh one")
    torch.manual_seed(cfg.seed)
    train_set, val_set = split(structures, cfg.val_fraction, cfg.seed)
    known = {_unit_hash(a, cfg.seed) for a in structures}
    cut = max((_unit_hash(a, cfg.seed) for a in val_set), default=0.0)  # see _take_in
    if not train_set:
        raise ValueError("no training structures after the validation split")
    device, dtype = resolve_device(cfg.device), DTYPES[cfg.dtype]
    if model is None:
        model = Potential.fit(model_cfg, train_set)
    model = model.to(device=device, dtype=dtype)
    f_scale = force_rms(train_set)
    s_scale = stress_rms(train_set)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
    plateau = (
        torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=max(cfg.patience // 4, 2))
        if cfg.schedule == "plateau"
        else None
    )
    rng = np.random.default_rng(cfg.seed)
    categorical = model.cfg.head == "categorical"
    swa = torch.optim.swa_utils
    ema = swa.AveragedModel(model, multi_avg_fn=swa.get_ema_multi_avg_fn(cfg.ema_decay)) if cfg.ema_decay > 0 else None
    judged = model if ema is None else ema.module  # what is validated, kept and returned
    result = TrainResult(model=model)
    best_score, best_state, since_best = math.inf, None, 0
    # early stopping and the best epoch are judged on the validation split only when it is
    # large enough: on a few structures (one may be the minimum, forces ~0) an untrained
    # model's early epoch can score best, and the rest of the run was thrown away
    selects = len(val_set) >= MIN_VAL_SELECT
    n_seen, t_train = 0, 0.0

    for epoch in range(cfg.epochs):
        if more is not None and _take_in(more(), known, cfg.seed, cut, train_set, val_set):
            selects = len(val_set) >= MIN_VAL_SELECT  # a grown validation set: the best epoch from here on
            best_score, since_best = math.inf, 0
        if plateau is None:
            for g in opt.param_groups:
                g["lr"] = _lr_at(cfg, epoch)
        model.train()
        t0 = time.perf_counter()
        order = rng.permutation(len(train_set))
        losses, clamped = [], 0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            batch = collate([train_set[k] for k in idx], with_labels=True).to(device, dtype)
            per_head = cfg.member_losses and model.cfg.heads > 1
            want_stress = s_scale is not None and cfg.w_stress > 0 and batch.has_stress is not None
            out = model(batch, forces=True, create_graph=True, member_forces=per_head, stress=want_stress)
            y = model.normalised_targets(batch)
            f_pred = out["forces_members"] if per_head else out["forces"]
            loss_f = torch.mean((f_pred - batch.forces_ev_a) ** 2) / f_scale**2
            y_pred = out["y_members"]  # every head fits the energies (as cheap as their mean)
            loss = cfg.w_energy * torch.mean((y_pred - y[:, None]) ** 2) + cfg.w_forces * loss_f
            if want_stress:
                loss = loss + cfg.w_stress * stress_loss(out, batch) / s_scale**2
            if categorical:
                target, n_clamped = model.histogram_targets(batch, out)
                clamped += n_clamped
                loss = loss + cfg.w_ce * hlgauss.cross_entropy(out["logits"], target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            losses.append(float(loss.detach()))
            n_seen += len(idx)
        t_train += time.perf_counter() - t0

        judged.eval()
        metrics = evaluate(judged, val_set or train_set)
        # one dimensionless score for early stopping, comparable across heads
        score = metrics["energy_mae_per_atom"] / model.y_std + metrics["force_mae"] / f_scale
        if plateau is not None:
            plateau.step(score)
        row = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)),
            "val_energy_mae": metrics["energy_mae"],
            "val_force_mae": metrics["force_mae"],
            "lr": opt.param_groups[0]["lr"],
            "support_clamped": clamped,
            "n_structures": len(train_set) + len(val_set),
        }
        result.history.append(row)
        if epoch == 0:
            result.support_clamped = clamped
        if on_epoch is not None:
            on_epoch(row)
        if snapshot is not None:
            snapshot(judged, row)
        if not selects:  # too few held-out structures to pick an epoch by: the last one
            result.best_epoch, result.val_metrics = epoch, metrics
        elif score < best_score - 1e-6:
            best_score, since_best, result.best_epoch = score, 0, epoch
            best_state = copy.deepcopy(judged.state_dict())
            result.val_metrics = metrics
        else:
            since_best += 1
            if since_best >= cfg.patience:
                break
        if stop is not None and stop():
            break

    if not selects:
        best_state = copy.deepcopy(judged.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    model.fit_uncertainty(train_set + val_set)  # the last-layer posterior and latent index of the model returned
    result.structures_per_s = n_seen / max(t_train, 1e-9)
    result.optimizer_state = opt.state_dict()
    return result


def save_training_checkpoint(path, result: TrainResult, cfg: TrainConfig, **extra) -> None:
    """Checkpoint = model (weights, config, refs, support) + optimizer state + epoch."""
    save_checkpoint(
        path,
        result.model,
        {
            "optimizer": result.optimizer_state,
            "epoch": len(result.history),
            "best_epoch": result.best_epoch,
            "train_config": cfg.to_dict(),
            **extra,
        },
    )


def load_training_checkpoint(path, map_location="cpu") -> tuple[Potential, dict | None, dict]:
    """``(model, optimizer_state, checkpoint)`` for a warm start."""
    model, ckpt = load_checkpoint(path, map_location)
    return model, ckpt.get("optimizer"), ckpt
