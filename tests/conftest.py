"""Shared fixtures: tiny real systems and the committed PySCF-labelled ethanol set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# keep torch and OpenMP from oversubscribing the cores (Ray workers set their own): the cores
# shared among pytest-xdist's workers (`make test` runs 2), at most 2 threads each; threads
# that outnumber the cores spin-wait on each other (a 5 s training took 80 s)
os.environ.setdefault("OMP_NUM_THREADS", "1")
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // WORKERS)))

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def ethanol_labels():
    """60 rattled ethanol geometries with RHF/STO-3G energies (eV) and forces (eV/Å)."""
    from ase.io import read

    return read(DATA / "ethanol_hf_sto3g.extxyz", index=":")


@pytest.fixture(scope="session")
def small_model(ethanol_labels):
    """A small categorical potential trained briefly on the real ethanol labels (float32)."""
    from workers.model import ModelConfig, TrainConfig, train
    from workers.model.backbone import BackboneConfig

    cfg = TrainConfig(epochs=40, batch_size=8, lr=2e-3, seed=0)
    model_cfg = ModelConfig(num_bins=64, backbone=BackboneConfig(features=32, layers=2))
    return train(cfg, ethanol_labels, model_cfg=model_cfg).model
