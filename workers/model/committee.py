"""A committee of independently seeded potentials: DP-GEN's uncertainty, catal's baseline.

The committee's uncertainty of a structure is DP-GEN's ``max_devi_f``: the largest, over
atoms, deviation of the members' forces from their mean,
``max_i sqrt(mean_m |F_i^m - <F_i>|^2)`` (eV/Å). It costs ``members`` trainings and
``members`` evaluations, against one of each for the categorical head's entropy.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from workers.model.calculator import predict
from workers.model.potential import ModelConfig, Potential
from workers.model.training import TrainConfig, train

MEMBER_SEED_STRIDE = 1009  # member k trains with seed + 1009 k (catal's committee members too)


def train_committee(
    cfg: TrainConfig, structures: list[Atoms], model_cfg: ModelConfig, members: int = 4
) -> list[Potential]:
    """``members`` models that differ only in their seed (initialisation, shuffling, split)."""
    if members < 2:
        raise ValueError(f"a committee needs at least 2 members, got {members}")
    return [
        train(cfg.model_copy(update={"seed": cfg.seed + MEMBER_SEED_STRIDE * k}), structures, model_cfg=model_cfg).model
        for k in range(members)
    ]


def committee_predictions(models: list[Potential], structures: list[Atoms]) -> dict:
    """Mean energy ``[n]`` (eV), mean forces (list of ``[n_atoms, 3]``) and deviations."""
    per_model = [predict(m, structures) for m in models]
    energies = np.array([[r["energy"] for r in preds] for preds in per_model])  # [M, n]
    mean_forces, max_devi_f = [], []
    for k in range(len(structures)):
        f = np.stack([preds[k]["forces"] for preds in per_model])  # [M, n_atoms, 3]
        mean = f.mean(axis=0)
        mean_forces.append(mean)
        max_devi_f.append(float(np.sqrt(((f - mean) ** 2).sum(-1).mean(0)).max()))
    return {
        "energy": energies.mean(axis=0),
        "energy_std": energies.std(axis=0),
        "forces": mean_forces,
        "max_devi_f": np.array(max_devi_f),
    }
