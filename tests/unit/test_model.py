"""Symmetries and conservative forces of the potential (float64, both heads)."""

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from scipy.spatial.transform import Rotation

from tests.unit.helpers import rattled_ethanols
from workers.model.backbone import BackboneConfig
from workers.model.graph import collate
from workers.model.potential import ModelConfig, Potential
from workers.model.references import fit_element_refs

# head variants on PaiNN, and both heads on the MACE backbone (mace-torch)
HEADS = ["categorical", "scalar", "relative", "absolute", "pooled", "mace", "mace-scalar"]


def _model(head):
    """``head``: scalar, categorical (centred histogram), a categorical variant, or mace[-scalar]."""
    torch.manual_seed(0)
    kw = {"head": "scalar"} if head.endswith("scalar") else {"head": "categorical"}
    if head in ("relative", "absolute"):
        kw["histogram"] = head
    if head == "pooled":
        kw["readout"] = "pooled"
    backbone = BackboneConfig(kind="mace" if head.startswith("mace") else "painn", features=16, layers=2)
    cfg = ModelConfig(num_bins=32, backbone=backbone, **kw)
    model = Potential.fit(cfg, rattled_ethanols()).double()
    with torch.no_grad():  # non-trivial, asymmetric logits, as after training
        if hasattr(model, "head"):
            model.head.w2.normal_(0.0, 0.5)
            model.head.b2.copy_(-((torch.arange(cfg.num_bins) - 12.0) ** 2) / 20.0)  # off-centre peak
    return model


def _energy(model, atoms):
    return model(collate([atoms]).to(dtype=torch.float64), forces=True)


@pytest.mark.parametrize("head", HEADS)
def test_forces_match_central_finite_differences(head):
    model = _model(head)
    a = molecule("CH3CH2OH")
    a.rattle(0.1, seed=3)
    forces = _energy(model, a)["forces"].detach().numpy()
    h = 1e-5
    fd = np.zeros_like(forces)
    for i in range(len(a)):
        for d in range(3):
            plus, minus = a.copy(), a.copy()
            plus.positions[i, d] += h
            minus.positions[i, d] -= h
            ep = _energy(model, plus)["energy"].item()
            em = _energy(model, minus)["energy"].item()
            fd[i, d] = -(ep - em) / (2 * h)
    assert np.abs(forces - fd).max() < 1e-6 * max(1.0, np.abs(forces).max())


@pytest.mark.parametrize("head", HEADS)
def test_energy_invariant_forces_equivariant(head):
    model = _model(head)
    a = molecule("CH3CH2OH")
    a.rattle(0.1, seed=4)
    ref = _energy(model, a)
    e0, f0 = ref["energy"].item(), ref["forces"].detach().numpy()

    rot = Rotation.from_euler("xyz", [0.3, -1.1, 2.0]).as_matrix()
    b = a.copy()
    b.positions = a.positions @ rot.T + np.array([1.5, -2.0, 0.7])
    out = _energy(model, b)
    assert out["energy"].item() == pytest.approx(e0, abs=1e-9)
    assert np.allclose(out["forces"].detach().numpy(), f0 @ rot.T, atol=1e-9)

    perm = np.random.default_rng(0).permutation(len(a))
    c = a[perm]
    out = _energy(model, c)
    assert out["energy"].item() == pytest.approx(e0, abs=1e-9)
    assert np.allclose(out["forces"].detach().numpy(), f0[perm], atol=1e-9)
    if not head.endswith("scalar"):
        assert out["energy_entropy"].item() == pytest.approx(ref["energy_entropy"].item(), abs=1e-9)
        out_rot = _energy(model, b)
        assert out_rot["energy_std"].item() == pytest.approx(ref["energy_std"].item(), abs=1e-9)
    # the per-atom force spread: invariant under rotation, permuted with the atoms
    s0 = model(collate([a]).to(dtype=torch.float64), uncertainty=True)["forces_std"].detach().numpy()
    s_rot = model(collate([b]).to(dtype=torch.float64), uncertainty=True)["forces_std"].detach().numpy()
    s_perm = model(collate([c]).to(dtype=torch.float64), uncertainty=True)["forces_std"].detach().numpy()
    assert np.allclose(s_rot, s0, atol=1e-9) and np.allclose(s_perm, s0[perm], atol=1e-9)


@pytest.mark.parametrize("head", ["categorical", "mace"])
def test_batched_equals_single(head):
    model = _model(head)
    mols = [molecule("CH3CH2OH"), molecule("H2O"), molecule("CH4")]
    for k, m in enumerate(mols):
        m.rattle(0.05, seed=k)
    together = model(collate(mols).to(dtype=torch.float64))
    for k, m in enumerate(mols):
        alone = _energy(model, m)
        assert together["energy"][k].item() == pytest.approx(alone["energy"].item(), abs=1e-9)
        assert together["energy_entropy"][k].item() == pytest.approx(alone["energy_entropy"].item(), abs=1e-9)


@pytest.mark.parametrize("head", ["categorical", "scalar", "relative", "absolute", "pooled"])
def test_a_bare_call_gives_the_same_energy_and_forces_and_no_uncertainty(head):
    """MD's unrecorded steps: energy and forces identical to the full call's, nothing else computed."""
    model = _model(head)
    mols = [molecule("CH3CH2OH"), molecule("H2O")]
    for k, m in enumerate(mols):
        m.rattle(0.05, seed=k)
    batch = collate(mols).to(dtype=torch.float64)
    full, bare = model(batch, uncertainty=True), model(batch, bare=True)
    assert torch.allclose(bare["energy"], full["energy"], rtol=0, atol=1e-10)
    assert torch.allclose(bare["forces"], full["forces"], rtol=0, atol=1e-10)
    assert "forces_std" in full and "energy_std" in full
    assert not {"energy_std", "energies_std", "forces_std", "energy_entropy", "energy_std_heads"} & set(bare)
    with pytest.raises(ValueError, match="bare"):
        model(batch, bare=True, uncertainty=True)


def test_element_refs_fit_composition_exactly():
    # energies that are exactly additive in per-element references are fit exactly
    true = {1: -13.6, 6: -1030.0, 8: -2040.0}
    structures = []
    for name in ["H2O", "CH4", "CH3CH2OH", "CO2", "H2"]:
        a = molecule(name)
        e = sum(true[z] for z in a.numbers)
        a.calc = SinglePointCalculator(a, energy=e, forces=np.zeros((len(a), 3)))
        structures.append(a)
    refs = fit_element_refs(structures)
    for z, v in true.items():
        assert refs[z] == pytest.approx(v, abs=1e-8)


def test_partly_periodic_structures_are_refused_with_a_clear_error():
    a = molecule("H2O", pbc=[True, True, False], cell=[5, 5, 5])
    with pytest.raises(ValueError, match="periodic in some directions only"):
        collate([a])
    with pytest.raises(ValueError, match="no cell"):
        collate([molecule("H2O", pbc=True)])


def test_centred_histogram_is_symmetric_normalised_and_its_mean_is_the_location():
    from workers.model import hlgauss

    model = _model("categorical")
    mols = [molecule("CH3CH2OH"), molecule("H2O")]
    for k, m in enumerate(mols):
        m.rattle(0.05, seed=k)
    out = model(collate(mols).to(dtype=torch.float64))
    probs = torch.softmax(out["logits"], dim=-1)
    heads = model.cfg.heads
    assert out["logits"].shape == (2, heads, 32)
    assert torch.allclose(probs.sum(-1), torch.ones(2, heads, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(probs, probs.flip(-1), atol=1e-12)  # symmetric about offset 0
    # energy = the histograms' expected value = the heads' mean location (offset mean exactly 0)
    assert hlgauss.expected_value(out["logits"], model.support).abs().max() < 1e-12
    assert torch.allclose(out["y_norm"], out["location"], atol=1e-12)
    assert torch.allclose(out["location"], out["location_members"].mean(-1), atol=1e-12)
    # a sharp, non-flat histogram after the asymmetric init: each head's entropy below log(bins)
    assert (hlgauss.entropy(out["logits"]) < np.log(32) - 0.05).all()
    n = torch.tensor([9.0, 3.0], dtype=torch.float64)
    assert torch.allclose(out["energy_std"], n * out["energy_std_per_atom"], atol=1e-12)


def test_relative_histogram_shifts_the_energy_by_its_mean_offset():
    from workers.model import hlgauss

    model = _model("relative")
    out = model(collate([molecule("CH3CH2OH")]).to(dtype=torch.float64))
    offset = hlgauss.expected_value(out["logits"], model.support)  # [1, heads]
    assert offset.abs().min().item() > 1e-3  # the asymmetric init moves the mean
    assert torch.allclose(out["y_members"], out["location_members"] + offset, atol=1e-12)
    assert torch.allclose(out["y_norm"], out["location"] + offset.mean(-1), atol=1e-12)


def test_histogram_targets_are_offsets_from_the_detached_location():
    from workers.model import hlgauss

    model = _model("categorical")
    labelled = rattled_ethanols(3)
    batch = collate(labelled, with_labels=True).to(dtype=torch.float64)
    out = model(batch, forces=False)
    target, clamped = model.histogram_targets(batch, out)
    offsets = model.normalised_targets(batch)[:, None] - out["location_members"]  # [n, heads]
    expected, _ = hlgauss.to_histogram(offsets.detach().reshape(-1), model.support)
    assert target.shape == (3, model.cfg.heads, 32)
    assert torch.allclose(target, expected.reshape(target.shape)) and not target.requires_grad
    assert clamped == int(((offsets < -model.cfg.relative_span) | (offsets > model.cfg.relative_span)).any(-1).sum())
    # support: symmetric, relative_span wide, in normalised units
    assert model.support.v_min == -model.cfg.relative_span and model.support.v_max == model.cfg.relative_span


def test_histogram_targets_absolute_are_the_labels_themselves():
    from workers.model import hlgauss

    model = _model("absolute")
    batch = collate(rattled_ethanols(3), with_labels=True).to(dtype=torch.float64)
    target, _ = model.histogram_targets(batch, model(batch, forces=False))
    expected, _ = hlgauss.to_histogram(model.normalised_targets(batch), model.support)
    assert torch.allclose(target, expected[:, None].expand_as(target))
    assert not hasattr(model, "location")
