"""Symmetries and conservative forces of the potential (float64, both heads)."""

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from scipy.spatial.transform import Rotation

from workers.model.backbone import BackboneConfig
from workers.model.graph import collate
from workers.model.potential import ModelConfig, Potential, fit_element_refs


def _fake_labelled(n=4):
    out = []
    for k in range(n):
        a = molecule("CH3CH2OH")
        a.rattle(0.05, seed=k)
        a.calc = SinglePointCalculator(a, energy=-4139.0 + 0.1 * k, forces=np.zeros((9, 3)))
        out.append(a)
    return out


def _model(head):
    torch.manual_seed(0)
    cfg = ModelConfig(head=head, num_bins=32, backbone=BackboneConfig(features=16, layers=2))
    return Potential.fit(cfg, _fake_labelled()).double()


def _energy(model, atoms):
    return model(collate([atoms]).to(dtype=torch.float64), forces=True)


@pytest.mark.parametrize("head", ["categorical", "scalar"])
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


@pytest.mark.parametrize("head", ["categorical", "scalar"])
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
    if head == "categorical":
        assert out["entropy"].item() == pytest.approx(ref["entropy"].item(), abs=1e-9)


def test_batched_equals_single():
    model = _model("categorical")
    mols = [molecule("CH3CH2OH"), molecule("H2O"), molecule("CH4")]
    for k, m in enumerate(mols):
        m.rattle(0.05, seed=k)
    together = model(collate(mols).to(dtype=torch.float64))
    for k, m in enumerate(mols):
        alone = _energy(model, m)
        assert together["energy"][k].item() == pytest.approx(alone["energy"].item(), abs=1e-9)
        assert together["entropy"][k].item() == pytest.approx(alone["entropy"].item(), abs=1e-9)


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


def test_periodic_structures_are_refused_with_a_clear_error():
    a = molecule("H2O", pbc=True, cell=[5, 5, 5])
    with pytest.raises(ValueError, match="periodic"):
        collate([a])
