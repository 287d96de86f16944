"""The latent distance: k-th nearest training atom in standardised feature space, in the model."""

import numpy as np
import pytest
import torch
from ase.build import molecule

from tests.unit.helpers import rattled_ethanols
from workers.model import latent
from workers.model.backbone import BackboneConfig
from workers.model.calculator import predict
from workers.model.checkpoint import load_checkpoint, save_checkpoint
from workers.model.graph import collate
from workers.model.potential import ModelConfig, Potential


def brute_force(ref, ref_z, x, z, k):
    """Per query atom: standardise by the reference's mean / std, sort distances to same-element atoms."""
    mean, std = ref.mean(0), ref.std(0)
    r, q = (ref - mean) / std, (x - mean) / std
    out = []
    for row, element in zip(q, z, strict=True):
        known = r[ref_z == element] if (ref_z == element).sum() >= k else r
        out.append(np.sort(np.linalg.norm(known - row, axis=1))[min(k, len(known)) - 1])
    return np.array(out)


def test_distance_is_the_kth_nearest_same_element_training_atom():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(60, 7)) * rng.uniform(0.1, 5.0, size=7)  # features of different scales
    ref_z = np.array([1] * 40 + [6] * 17 + [8] * 3)  # 3 oxygens: fewer than k, compared with all
    x = rng.normal(size=(12, 7)) * 2.0
    z = np.array([1, 6, 8] * 4)
    index = latent.build_index(torch.from_numpy(ref), torch.from_numpy(ref_z))
    got = latent.distance(index, torch.from_numpy(x), torch.from_numpy(z), k=5).numpy()
    assert np.allclose(got, brute_force(ref, ref_z, x, z, 5), rtol=1e-5)
    # a training atom is at distance 0 from itself: k = 1 gives 0 on the training features
    self_d = latent.distance(index, torch.from_numpy(ref), torch.from_numpy(ref_z), k=1).numpy()
    assert np.allclose(self_d, 0, atol=1e-5)


def test_large_training_sets_keep_a_seeded_subsample_per_element(monkeypatch):
    monkeypatch.setattr(latent, "MAX_ATOMS_PER_ELEMENT", 10)
    feats, z = torch.randn(50, 4), torch.tensor([1] * 30 + [6] * 20)
    index = latent.build_index(feats, z)
    assert torch.bincount(index.z).tolist()[1] == 10 and torch.bincount(index.z).tolist()[6] == 10
    assert torch.equal(index.ref, latent.build_index(feats, z).ref)  # the same atoms every time


@pytest.fixture(scope="module")
def fitted():
    torch.manual_seed(0)
    cfg = ModelConfig(num_bins=32, heads=2, backbone=BackboneConfig(features=16, layers=2))
    train = rattled_ethanols(8)
    model = Potential.fit(cfg, train).double()
    model.fit_uncertainty(train)
    return model, train


def test_the_model_reports_each_atoms_distance_and_keeps_it_in_its_checkpoint(fitted, tmp_path):
    model, train = fitted
    assert model.latent_fitted and model.latent_ref.shape == (8 * 9, 2 * 16)
    far = molecule("CH3CH2OH")
    far.positions[0] += [0.0, 0.0, 0.8]  # a carbon pulled out of its bonds
    near, moved = predict(model, [train[0], far])
    # a training structure sits at its own atoms' 5th neighbour distance; the pulled one far beyond
    assert near["latent_distance"].shape == (9,) and near["latent_distance_max"] == near["latent_distance"].max()
    assert moved["latent_distance_max"] > 2 * near["latent_distance_max"]
    save_checkpoint(tmp_path / "m.pt", model)
    loaded, _ = load_checkpoint(tmp_path / "m.pt")
    again = predict(loaded.double(), [far])[0]
    assert np.allclose(again["latent_distance"], moved["latent_distance"], rtol=1e-6)


def test_a_model_without_a_latent_index_loads_unfitted_and_reports_none(fitted):
    model, _ = fitted
    meta = model.metadata()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("latent_")}  # an older checkpoint
    old = Potential.from_metadata(meta, state)
    assert not old.latent_fitted
    assert "latent_distance" not in predict(old.double(), [molecule("CH3CH2OH")])[0]
    off = Potential.fit(ModelConfig(num_bins=32, latent_neighbours=0, backbone=BackboneConfig(features=8, layers=1)),
                        rattled_ethanols())  # fmt: skip
    off.fit_uncertainty(rattled_ethanols())
    assert not off.latent_fitted and not hasattr(off, "latent_ref")


def test_typical_distance_is_the_median_kth_neighbour_among_training_atoms():
    # hydrogens on a line at 0, 1, ..., 9 (one feature): an inner one's 2nd nearest other atom is
    # 1 away, an end one's 2 (median 1); carbons at 0, 3, 6: 6, 3 and 6 away (median 6)
    feats = torch.tensor([[float(x)] for x in range(10)] + [[0.0], [3.0], [6.0]])
    z = torch.tensor([1] * 10 + [6] * 3)
    index = latent.build_index(feats, z)
    typical = latent.typical_distance(index, k=2)
    scale = float(index.scale[0])  # the index's standardisation
    assert typical[1] == pytest.approx(1.0 / scale, rel=1e-6)
    assert typical[6] == pytest.approx(6.0 / scale, rel=1e-6)
    assert typical[8] == 1.0  # an element the index lacks


def test_the_bias_is_bounded_lowest_far_out_and_its_forces_are_its_gradient(fitted):
    """Uncertainty-biased MD's bias: -strength (1 - exp(-u^2/2)) per atom, lower the less
    familiar the atoms; the forces the MD engine applies are minus its gradient (finite
    differences), and with the model's energy they add the model's own forces."""
    from workers.bias import LatentBias

    model, train = fitted
    bias = LatentBias.of(model, 0.2)
    assert torch.all(bias.typical[[1, 6, 8]] > 0)
    far = molecule("CH3CH2OH")
    far.positions[0] += [0.0, 0.0, 0.8]
    _, e_near, _ = bias.forces(model, collate([train[0]]).to(dtype=torch.float64), with_model=False)
    forces, e_far, _ = bias.forces(model, collate([far]).to(dtype=torch.float64), with_model=False)
    assert -0.2 * 9 < e_far.item() < e_near.item() < 0.0
    h = 1e-5

    def energy(atoms):
        return bias.forces(model, collate([atoms]).to(dtype=torch.float64), with_model=False)[1].item()

    fd = np.zeros((9, 3))
    for i in range(9):
        for d in range(3):
            p, m = far.copy(), far.copy()
            p.positions[i, d] += h
            m.positions[i, d] -= h
            fd[i, d] = -(energy(p) - energy(m)) / (2 * h)
    assert np.allclose(forces.numpy(), fd, rtol=1e-4, atol=1e-7)
    total, _, _ = bias.forces(model, collate([far]).to(dtype=torch.float64), with_model=True)
    own = predict(model, [far])[0]["forces"]
    assert np.allclose(total.numpy(), own + forces.numpy(), rtol=1e-6, atol=1e-8)
