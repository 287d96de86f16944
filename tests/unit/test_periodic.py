"""Periodic cells: the radius graph with images, stress by autograd, invariances, MD in a box,
and the xtb / ase labellers on cells (float64, tiny real systems)."""

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.neighborlist import neighbor_list

from workers.model.backbone import BackboneConfig
from workers.model.calculator import CatalCalculator
from workers.model.graph import batch_edges, collate
from workers.model.potential import ModelConfig, Potential
from workers.periodic import water_box


def _labelled(atoms, n=3):
    out = []
    for k in range(n):
        a = atoms.copy()
        a.rattle(0.05, seed=k)
        a.calc = SinglePointCalculator(a, energy=-2.0 * k, forces=np.zeros((len(a), 3)))
        out.append(a)
    return out


@pytest.fixture(scope="module")
def box_model():
    torch.manual_seed(0)
    cfg = ModelConfig(num_bins=32, backbone=BackboneConfig(features=16, layers=2))
    box = water_box(4, seed=1)  # a 4.9 Å cell under a 5 Å cutoff: every atom sees its own images
    model = Potential.fit(cfg, _labelled(box)).double()
    with torch.no_grad():  # non-trivial weights, as after training
        for p in model.location.parameters():
            p.normal_(0.0, 0.3)
    return model, box


@pytest.mark.parametrize("cell", ["water4", "water32", "cu_primitive", "triclinic"])
def test_periodic_edges_equal_ase_neighbor_list(cell):
    if cell.startswith("water"):
        a = water_box(int(cell[5:]), seed=3)
    elif cell == "cu_primitive":
        a = bulk("Cu")  # 1 atom, 2.55 Å nearest neighbours: many images of itself
    else:
        a = bulk("Cu", "fcc", a=3.6) * (2, 1, 1)
        a.set_cell(a.cell.array + [[0, 0, 0], [0.7, 0, 0], [0.3, 0.9, 0]], scale_atoms=True)
    a.rattle(0.1, seed=0)
    a.positions += 4.3  # positions outside the cell are as good as wrapped ones
    for cutoff in (2.0, 5.0):
        i, j, vec = batch_edges(collate([a, molecule("H2O")]), torch.from_numpy(np.concatenate([a.positions,
                                molecule("H2O").positions])), cutoff)  # fmt: skip
        n = len(a)
        mask = i < n
        got = sorted(zip(i[mask].tolist(), j[mask].tolist(), np.round(vec[mask].norm(dim=-1).numpy(), 8),
                         strict=True))  # fmt: skip
        ii, jj, dd = neighbor_list("ijd", a, cutoff)
        want = sorted(zip(ii.tolist(), jj.tolist(), np.round(dd, 8), strict=True))
        assert got == want
        assert int((~mask).sum()) == 6  # the molecule beside it: its own 6 ordered pairs, no images


def test_stress_equals_finite_differences_of_the_energy_under_strain(box_model):
    model, box = box_model
    a = box.copy()
    a.rattle(0.05, seed=5)
    a.set_cell(a.cell.array @ np.array([[1.02, 0.01, 0.0], [0.0, 0.99, 0.02], [0.0, 0.0, 1.01]]), scale_atoms=True)
    calc = CatalCalculator(model)
    a.calc = calc
    stress = a.get_stress(voigt=False)
    assert np.abs(stress).max() > 1e-4  # a stress to check, not zeros (eV/Å^3)
    h, v = 1e-5, a.get_volume()
    numeric = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            energies = []
            for sign in (1, -1):
                b = a.copy()
                eps = np.zeros((3, 3))
                eps[i, j] = eps[j, i] = sign * h  # a symmetric strain
                b.set_cell(a.cell.array @ (np.eye(3) + eps), scale_atoms=True)
                b.calc = calc
                energies.append(b.get_potential_energy())
            numeric[i, j] = (energies[0] - energies[1]) / (2 * h) / v / (1 if i == j else 2)
    np.testing.assert_allclose(stress, numeric, atol=1e-9 * max(1.0, np.abs(numeric).max()) + 1e-10)


def test_energy_and_forces_invariant_to_translation_wrapping_and_image_choice(box_model):
    model, box = box_model
    calc = CatalCalculator(model)
    a = box.copy()
    a.rattle(0.05, seed=6)
    a.calc = calc
    e0, f0, s0 = a.get_potential_energy(), a.get_forces(), a.get_stress()
    moved = a.copy()
    moved.positions += [3.3, -7.1, 12.0]  # a translation, atoms leaving the cell
    imaged = a.copy()
    imaged.positions[::3] += a.cell.array[0] - 2 * a.cell.array[2]  # some atoms by a lattice vector
    wrapped = moved.copy()
    wrapped.wrap()
    for b in (moved, imaged, wrapped):
        b.calc = calc
        assert abs(b.get_potential_energy() - e0) < 1e-9
        np.testing.assert_allclose(b.get_forces(), f0, atol=1e-9)
        np.testing.assert_allclose(b.get_stress(), s0, atol=1e-10)
    double = a.repeat((2, 1, 1))  # the same crystal in a cell twice the size: extensive energy
    double.calc = calc
    assert abs(double.get_potential_energy() - 2 * e0) < 1e-8
    np.testing.assert_allclose(double.get_forces(), np.concatenate([f0, f0]), atol=1e-9)
    np.testing.assert_allclose(double.get_stress(), s0, atol=1e-10)


@pytest.mark.slow
def test_the_stress_loss_fits_stress_labels():
    """EMT copper (consistent energies, forces, stress): the same training with the stress term
    ends with a much smaller stress error than without it."""
    from ase.calculators.emt import EMT

    from workers.model.training import TrainConfig, evaluate, train

    rng = np.random.default_rng(0)
    frames = []
    for k in range(8):
        a = bulk("Cu", cubic=True)
        a.set_cell(a.cell.array @ (np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))), scale_atoms=True)
        a.rattle(0.05, seed=k)
        a.calc = EMT()
        a.calc = SinglePointCalculator(a, energy=a.get_potential_energy(), forces=a.get_forces(),
                                       stress=a.get_stress())  # fmt: skip
        frames.append(a)
    cfg = ModelConfig(num_bins=32, heads=1, llpr_samples=0, backbone=BackboneConfig(features=16, layers=2))
    mae = {}
    for w in (0.0, 10.0):
        tc = TrainConfig(epochs=40, batch_size=4, val_fraction=0.0, lr=5e-3, w_stress=w, ema_decay=0.0)
        mae[w] = evaluate(train(tc, frames, model_cfg=cfg).model, frames)["stress_mae"]
    assert mae[10.0] < 0.5 * mae[0.0], mae


def test_md_in_a_box_keeps_the_cell_and_wraps_frames(box_model):
    from workers.sampling import MDConfig, run_md

    model, _ = box_model
    box = water_box(32, seed=4)
    frames = run_md(model.float(), [box], MDConfig(replicas=2, steps=20, stride=10, temperature_k=300,
                                                   stops={"check_topology": False}))  # fmt: skip
    model.double()
    assert len(frames) == 4
    for f in frames:
        assert f.pbc.all() and np.allclose(f.cell.array, box.cell.array)
        frac = f.get_scaled_positions(wrap=False)
        assert (frac >= -1e-9).all() and (frac < 1 + 1e-9).all()
        assert np.isfinite(f.info["model_energy"])


def test_stop_rules_see_minimum_image_distances():
    from workers.sampling import StopRules, check_stops, topology

    box = water_box(4, seed=1)
    batch = collate([box])
    rules = StopRules()
    topo = topology(batch, batch.positions, rules)
    aux = {"energy": torch.zeros(1, dtype=torch.float64)}
    x = batch.positions.clone()
    assert check_stops(x, torch.zeros_like(x), aux, batch.structure, topo, rules) == [""]
    x = x + torch.from_numpy(box.cell.array[1])  # every atom one lattice vector away: the same crystal
    assert check_stops(x, torch.zeros_like(x), aux, batch.structure, topo, rules) == [""]
    y = x.clone()
    y[3] = y[0] + torch.from_numpy(box.cell.array[0]) + 0.3  # atom 3 on an image of atom 0
    reason = check_stops(y, torch.zeros_like(y), aux, batch.structure, topo, rules)[0]
    assert reason.startswith("min distance 0.52")  # below the 0.6 Å rule, through the image


def test_xtb_labels_a_cell_with_stress_and_failures_are_data():
    pytest.importorskip("tblite")
    from workers.dft import DFTConfig, Status
    from workers.labeller import label

    box = water_box(4, seed=1)
    cfg = DFTConfig(kind="xtb", method="gfn1-xtb")
    r = label(box, cfg)
    assert r.status is Status.OK and r.code == "xtb"
    assert r.forces_ev_a.shape == (12, 3) and r.stress_ev_a3.shape == (6,)
    h = 1e-4  # xTB's stress is its energy's strain derivative (the labels are consistent)
    plus, minus = box.copy(), box.copy()
    plus.set_cell(box.cell.array * (1 + h), scale_atoms=True)
    minus.set_cell(box.cell.array * (1 - h), scale_atoms=True)
    pressure_fd = (label(plus, cfg).energy_ev - label(minus, cfg).energy_ev) / (2 * h) / box.get_volume() / 3
    assert abs(r.stress_ev_a3[:3].mean() - pressure_fd) < 2e-3 * max(abs(pressure_fd), 1e-2)
    odd = label(molecule("CH3"), cfg)  # 9 electrons, spin 0
    assert odd.status is Status.REJECTED and "parity" in odd.reason
    slab = box.copy()
    slab.pbc = [True, True, False]
    assert label(slab, cfg).status is Status.REJECTED


def test_ase_labeller_labels_a_metal_and_returns_a_calculator_error_as_data():
    from workers.dft import DFTConfig, Status
    from workers.labeller import label

    cfg = DFTConfig(kind="ase", calculator="ase.calculators.emt:EMT")
    cu = bulk("Cu", cubic=True) * (2, 2, 2)
    cu.rattle(0.05, seed=0)
    r = label(cu, cfg)
    assert r.status is Status.OK and r.code == "ase:ase.calculators.emt:EMT"
    from ase.calculators.emt import EMT

    cu.calc = EMT()
    np.testing.assert_allclose(r.stress_ev_a3, cu.get_stress(), atol=1e-12)
    si = bulk("Si")  # EMT has no parameters for Si: NotImplementedError, a failed label
    bad = label(si, cfg)
    assert bad.status is Status.FAILED and "Si" in bad.reason


def test_a_calculator_without_stress_still_labels_a_cell():
    """A periodic label from a code that has no stress (ASE's TIP3P): energy and forces, OK."""
    from workers.dft import DFTConfig, Status
    from workers.labeller import label

    cfg = DFTConfig(kind="ase", calculator="ase.calculators.tip3p:TIP3P", calculator_kwargs={"rc": 4.5})
    r = label(water_box(32, seed=1), cfg)
    assert r.status is Status.OK, r.reason
    assert r.forces_ev_a.shape == (96, 3) and np.abs(r.forces_ev_a).max() > 0.1
    assert r.stress_ev_a3 is None
