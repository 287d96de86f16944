"""The MACE backbone (mace-torch): features, checkpoints, pretrained import and fine-tuning.

Symmetry and finite-difference force tests for MACE sit beside PaiNN's in test_model.py.
A small MACE is trained here with mace-torch's own trainer (mace_run_train, 2 epochs) and
saved as mace-torch saves models; catal imports it and must reproduce its features.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.io import write

from orchestrator.cli import main as catal
from workers.model import ModelConfig, TrainConfig, evaluate, train
from workers.model import mace_backbone as mb
from workers.model.backbone import BackboneConfig
from workers.model.checkpoint import load_checkpoint, save_checkpoint
from workers.model.graph import collate, edges_within_cutoff
from workers.model.potential import Potential

MACE_RUN_TRAIN = Path(sys.executable).parent / "mace_run_train"


@pytest.fixture(scope="module")
def mace_model_file(ethanol_labels, tmp_path_factory):
    """A tiny ScaleShiftMACE trained by mace-torch itself (``mace_run_train``), as a user's file."""
    work = tmp_path_factory.mktemp("mace_train")
    frames = [a.copy() for a in ethanol_labels[:40]]
    for a, src in zip(frames, ethanol_labels[:40], strict=True):
        a.info["REF_energy"] = src.get_potential_energy()
        a.arrays["REF_forces"] = src.get_forces()
    write(work / "train.xyz", frames[:30])
    write(work / "valid.xyz", frames[30:])
    options = {
        "name": "tiny", "train_file": "train.xyz", "valid_file": "valid.xyz", "E0s": "average", "model": "MACE",
        "num_channels": 8, "max_L": 1, "num_interactions": 2, "correlation": 2, "r_max": 4.0, "batch_size": 10,
        "max_num_epochs": 2, "device": "cpu", "seed": 1, "energy_key": "REF_energy", "forces_key": "REF_forces",
        "default_dtype": "float64",
    }  # fmt: skip
    args = [item for key, value in options.items() for item in (f"--{key}", str(value))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([str(MACE_RUN_TRAIN), *args], cwd=work, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    return work / "tiny.model"


def _mace_potential(structures, head="categorical"):
    torch.manual_seed(0)
    cfg = ModelConfig(head=head, num_bins=32, backbone=BackboneConfig(kind="mace", features=8, layers=2))
    return Potential.fit(cfg, structures)


def test_importing_mace_leaves_torch_load_safe(ethanol_labels):
    # mace sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 for the whole process on import; catal undoes it
    before = os.environ.get(mb.WEIGHTS_ONLY_ENV)
    _mace_potential(ethanol_labels[:4])
    assert os.environ.get(mb.WEIGHTS_ONLY_ENV) == before


def test_mace_features_width_and_elements(ethanol_labels):
    model = _mace_potential(ethanol_labels[:4])
    assert model.backbone.out_features == 2 * 8  # the 0e channels of both layers
    assert model.backbone.elements == [1, 6, 8]
    assert model.backbone.arch["avg_num_neighbors"] == pytest.approx(8.0)  # ethanol: all 8 within 5 Å


def test_mace_checkpoint_round_trip_weights_only(ethanol_labels, tmp_path):
    model = _mace_potential(ethanol_labels[:8]).double()
    path = tmp_path / "mace.pt"
    save_checkpoint(path, model)
    torch.load(path, weights_only=True)  # plain tensors and values only
    again, ckpt = load_checkpoint(path)
    assert ckpt["backbone"]["arch"]["hidden_irreps"] == "8x0e+8x1o"
    batch = collate(ethanol_labels[8:12]).to(dtype=torch.float64)
    a, b = model(batch), again.double()(batch)
    assert torch.allclose(a["energy"], b["energy"], atol=1e-9)
    assert torch.allclose(a["forces"], b["forces"], atol=1e-9)
    assert torch.allclose(a["energy_std"], b["energy_std"], atol=1e-9)


def test_unknown_element_is_a_clear_error(ethanol_labels):
    from ase.build import molecule

    model = _mace_potential(ethanol_labels[:4])
    with pytest.raises(ValueError, match=r"Z=\[7\]"):
        model.backbone.check_elements(molecule("NH3").numbers)


@pytest.mark.slow
def test_imported_model_reproduces_mace_torch_features(mace_model_file, ethanol_labels, tmp_path):
    """catal's features from the imported file equal mace-torch's own node features, computed
    with mace-torch's own neighbour list (AtomicData) on the same structures."""
    from mace import data as mace_data
    from mace.tools import torch_geometric, utils

    dest = tmp_path / "backbone.pt"
    before = os.environ.get(mb.WEIGHTS_ONLY_ENV)
    summary = mb.import_model(mace_model_file, dest)  # unpickling imports mace: no side effect left
    assert os.environ.get(mb.WEIGHTS_ONLY_ENV) == before
    assert summary["elements"] == [1, 6, 8] and summary["cutoff_a"] == pytest.approx(4.0)
    backbone = mb.load_pretrained(dest).double()

    frames = ethanol_labels[50:53]
    batch = collate(frames).to(dtype=torch.float64)
    i, j, vec = edges_within_cutoff(batch.positions, batch.pair_i, batch.pair_j, backbone.cutoff)
    ours = backbone.invariants(batch.numbers, i, j, vec).detach()

    source = torch.load(mace_model_file, weights_only=False).double()  # the user's file, trusted here
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        table = utils.AtomicNumberTable(backbone.elements)
        data = [
            mace_data.AtomicData.from_config(mace_data.config_from_atoms(a), z_table=table, cutoff=backbone.cutoff)
            for a in frames
        ]
        theirs = source(next(iter(torch_geometric.dataloader.DataLoader(data, batch_size=3))).to_dict())["node_feats"]
    finally:
        torch.set_default_dtype(old)
    width = 8 + 3 * 8  # layer 1: 8x0e+8x1o; layer 2: 8x0e
    expected = torch.cat([theirs[:, :8], theirs[:, width : width + 8]], dim=-1).detach()
    assert torch.allclose(ours, expected, atol=1e-10)


@pytest.mark.slow
def test_fine_tuning_a_pretrained_mace(mace_model_file, ethanol_labels, tmp_path, capsys):
    dest = tmp_path / "backbone.pt"
    assert catal(["import-mace", str(mace_model_file), str(dest)]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "model.backbone.pretrained=" in out
    assert catal(["import-mace", str(mace_model_file), str(dest)]) == 2  # no silent overwrite
    assert "exists" in capsys.readouterr().err

    pool, test = ethanol_labels[:40], ethanol_labels[40:]
    model_cfg = ModelConfig(num_bins=32, backbone=BackboneConfig(kind="mace", pretrained=str(dest)))
    fresh = Potential.fit(model_cfg, pool)
    start = mb.read_pretrained(dest)["state_dict"]
    for key, value in fresh.backbone.mace.state_dict().items():  # starts from the pretrained weights
        assert torch.equal(value, start[key]), key
    result = train(TrainConfig(epochs=15, batch_size=5, lr=3e-3, ema_decay=0.0, seed=0), pool, model_cfg=model_cfg)
    before, after = result.history[0]["val_force_mae"], result.history[-1]["val_force_mae"]
    assert after < 0.9 * before, (before, after)  # measured 3.48 -> 2.56 eV/Å on these rattled frames
    f_trivial = np.mean(np.concatenate([np.abs(a.get_forces()).ravel() for a in test]))  # zero forces
    assert evaluate(result.model, test)["force_mae"] < 0.995 * f_trivial

    # a mace-torch file handed straight to the config: one line saying how to convert it
    from orchestrator.config import load_config

    demo = Path(__file__).parents[2] / "configs" / "demo.yaml"
    with pytest.raises(Exception, match="catal import-mace") as err:
        load_config(demo, ["model.backbone.kind=mace", f"model.backbone.pretrained={mace_model_file}"])
    assert "\n" not in str(err.value)
    cfg = load_config(demo, ["model.backbone.kind=mace", f"model.backbone.pretrained={dest}"])
    assert cfg.model.backbone.pretrained == str(dest)
    with pytest.raises(Exception, match="Z=\\[7\\]"):
        load_config(demo, [f"model.backbone.pretrained={dest}", "model.backbone.kind=mace", "system.structures=H3CNH2"])
