"""Shared fixtures: tiny real systems and the committed PySCF-labelled ethanol set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# two cores: keep torch and OpenMP from oversubscribing them (Ray workers set their own)
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(2)

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def ethanol_labels():
    """60 rattled ethanol geometries with RHF/STO-3G energies (eV) and forces (eV/Å)."""
    from ase.io import read

    return read(DATA / "ethanol_hf_sto3g.extxyz", index=":")
