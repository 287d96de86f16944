import copy

import numpy as np
import pytest
import torch
from ase.build import molecule

from workers.model import ModelConfig, TrainConfig
from workers.model.backbone import BackboneConfig
from workers.model.committee import committee_predictions, train_committee


def test_identical_members_have_zero_deviation(small_model):
    mols = [molecule("CH3CH2OH") for _ in range(3)]
    out = committee_predictions([small_model, copy.deepcopy(small_model)], mols)
    assert np.allclose(out["max_devi_f"], 0.0, atol=1e-6)
    assert np.allclose(out["energy_std"], 0.0, atol=1e-6)


def test_max_devi_f_matches_hand_computation(small_model):
    other = copy.deepcopy(small_model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.01 * torch.randn_like(p))
    a = molecule("CH3CH2OH")
    out = committee_predictions([small_model, other], [a])
    from workers.model import predict

    f1, f2 = predict(small_model, [a])[0]["forces"], predict(other, [a])[0]["forces"]
    mean = (f1 + f2) / 2
    per_atom = np.sqrt((((f1 - mean) ** 2).sum(-1) + ((f2 - mean) ** 2).sum(-1)) / 2)
    assert out["max_devi_f"][0] == pytest.approx(per_atom.max(), rel=1e-6)
    assert out["max_devi_f"][0] > 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["painn", "mace"])
def test_train_committee_members_differ(ethanol_labels, kind):
    cfg = TrainConfig(epochs=3, batch_size=8)
    members = train_committee(
        cfg,
        ethanol_labels[:20],
        ModelConfig(head="scalar", backbone=BackboneConfig(kind=kind, features=16 if kind == "painn" else 8, layers=2)),
        2,
    )
    out = committee_predictions(members, ethanol_labels[20:25])
    assert (out["max_devi_f"] > 0).all()
    with pytest.raises(ValueError, match="at least 2"):
        train_committee(cfg, ethanol_labels[:20], ModelConfig(head="scalar"), 1)
