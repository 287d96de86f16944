"""CatalCalculator through ASE: checkpoint round trip, FD forces, symmetries, batching."""

import numpy as np
import pytest
import torch
from ase.build import molecule

from tests.unit.helpers import rattled_molecules
from workers.model import CatalCalculator, ModelConfig, Potential, load_checkpoint, save_checkpoint
from workers.model.backbone import BackboneConfig


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    structures = rattled_molecules("CH3CH2OH", 4, -4139.0, step_ev=0.2)
    torch.manual_seed(1)
    cfg = ModelConfig(num_bins=64, backbone=BackboneConfig(features=16, layers=2))
    model = Potential.fit(cfg, structures)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, model, {"epoch": 3})
    return path


def test_checkpoint_loads_with_weights_only(checkpoint):
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 3
    assert ckpt["support"]["num_bins"] == 64
    model, _ = load_checkpoint(checkpoint)
    assert model.cfg.backbone.features == 16


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.pt"
    torch.save({"hello": 1}, bad)
    with pytest.raises(ValueError, match="not a catal checkpoint"):
        load_checkpoint(bad)


def test_calculator_properties_and_fd_forces(checkpoint):
    calc = CatalCalculator.from_checkpoint(checkpoint)
    a = molecule("CH3CH2OH")
    a.rattle(0.08, seed=9)
    a.calc = calc
    e = a.get_potential_energy()
    f = a.get_forces()
    assert a.get_potential_energy(force_consistent=True) == pytest.approx(e)
    assert f.shape == (9, 3)
    r = calc.results
    # entropy of the heads' mean histogram = their mean entropy (at most a flat 64-bin
    # histogram's) + their mutual information (0 <= MI <= log(4 heads))
    mi = r["energy_mutual_information"]
    assert 0.0 <= mi <= np.log(4) + 1e-9
    assert 0.0 <= r["energy_entropy"] - mi <= np.log(64) + 1e-9
    # calibrated: the error bars are the raw stds times the calibration's scales
    from dataclasses import replace

    kept = calc.model.calibration
    raw_e, raw_f = r["energy_std"] / kept.energy_scale, r["forces_std"] / kept.forces_scale
    calc.model.calibration = replace(kept, energy_scale=3.0 * kept.energy_scale, forces_scale=2.0)
    calc.reset()  # same positions: ASE would return the cached results
    a.get_potential_energy()
    assert calc.results["energy_std"] == pytest.approx(3.0 * kept.energy_scale * raw_e, rel=1e-9)
    np.testing.assert_allclose(calc.results["forces_std"], 2.0 * raw_f, rtol=1e-6)
    calc.model.calibration = kept
    calc.reset()
    h = 1e-5
    for i, d in [(0, 0), (3, 1), (8, 2)]:
        b = a.copy()
        b.calc = calc
        b.positions[i, d] += h
        ep = b.get_potential_energy()
        b.positions[i, d] -= 2 * h
        em = b.get_potential_energy()
        assert f[i, d] == pytest.approx(-(ep - em) / (2 * h), abs=1e-6)


def test_calculator_rotation_translation(checkpoint):
    calc = CatalCalculator.from_checkpoint(checkpoint)
    a = molecule("CH3CH2OH")
    a.calc = calc
    e0, f0 = a.get_potential_energy(), a.get_forces()
    b = a.copy()
    b.rotate(73, (1, 2, 3), center="COM")
    b.translate((3.0, -1.0, 2.0))
    b.calc = calc
    assert b.get_potential_energy() == pytest.approx(e0, abs=1e-9)
    c = a.copy()
    c.rotate(73, (1, 2, 3), center=(0, 0, 0))
    c.calc = calc
    rotated = a.copy()
    rotated.positions = f0
    rotated.rotate(73, (1, 2, 3), center=(0, 0, 0))
    assert np.allclose(c.get_forces(), rotated.positions, atol=1e-9)


def test_predict_many_matches_single_calls(checkpoint):
    calc = CatalCalculator.from_checkpoint(checkpoint)
    mols = [molecule("CH3CH2OH") for _ in range(5)]
    for k, m in enumerate(mols):
        m.rattle(0.05, seed=10 + k)
    many = calc.predict_many(mols, batch_size=2)
    for m, r in zip(mols, many, strict=True):
        m.calc = calc
        assert r["energy"] == pytest.approx(m.get_potential_energy(), abs=1e-9)
        assert np.allclose(r["forces"], m.get_forces(), atol=1e-9)
        assert r["energy_entropy"] == pytest.approx(calc.results["energy_entropy"], abs=1e-9)


def test_a_calculator_without_uncertainty_gives_the_same_energy_and_forces_and_no_error_bars(checkpoint):
    """For MD that reads no error bar: the numbers of the full call, none of its uncertainty."""
    a = molecule("CH3CH2OH")
    a.rattle(0.08, seed=4)
    full = CatalCalculator.from_checkpoint(checkpoint)
    bare = CatalCalculator.from_checkpoint(checkpoint, uncertainty=False)
    a.calc = full
    e, f = a.get_potential_energy(), a.get_forces()
    assert {"forces_std", "energy_std", "energy_entropy"} <= set(full.results)
    b = a.copy()
    b.calc = bare
    assert b.get_potential_energy() == pytest.approx(e, abs=1e-10)
    assert np.allclose(b.get_forces(), f, atol=1e-10, rtol=0)
    assert not {"forces_std", "energy_std", "energies_std", "energy_entropy"} & set(bare.results)
