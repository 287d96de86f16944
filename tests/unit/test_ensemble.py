"""The heads' ensemble (workers/model/ensemble.py) and the error bars it reports."""

import copy
import math

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator

from tests.unit.helpers import rattled_ethanols
from workers.model import ensemble
from workers.model.backbone import BackboneConfig
from workers.model.calibration import (
    Calibration,
)
from workers.model.graph import collate
from workers.model.potential import ModelConfig, Potential


def test_ensemble_mlp_members_are_independent_mlps():
    torch.manual_seed(0)
    mlp = ensemble.EnsembleMLP(5, 7, 3, members=4).double()
    x = torch.randn(6, 5, dtype=torch.float64)
    out = mlp(x)
    assert out.shape == (6, 4, 3)
    for m in range(4):
        h = torch.nn.functional.silu(x @ mlp.w1[m] + mlp.b1[m])
        assert torch.allclose(out[:, m], h @ mlp.w2[m] + mlp.b2[m], atol=1e-12)
    # members differ at initialisation (else their spread would be zero everywhere)
    assert (out[:, 0] - out[:, 1]).abs().max() > 1e-3


def _histograms(n, m, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(n, m, k, generator=g, dtype=torch.float64) * 2, -1)


def test_mixture_entropy_of_identical_members_has_no_mutual_information():
    p = _histograms(3, 1, 32).expand(-1, 4, -1)
    parts = ensemble.mixture_entropy(p, torch.full((3, 4), 2.0, dtype=torch.float64))
    assert torch.allclose(parts["mutual_information"], torch.zeros(3, dtype=torch.float64), atol=1e-12)
    # on an integer shift each member keeps its own entropy exactly
    h = -(p[:, 0] * p[:, 0].log()).sum(-1)
    assert torch.allclose(parts["aleatoric"], h, atol=1e-12)


def test_mixture_entropy_of_disjoint_members_is_log_m_more():
    p = _histograms(2, 1, 16).expand(-1, 4, -1)
    shifts = torch.tensor([[0.0, 20.0, 40.0, 60.0]] * 2, dtype=torch.float64)  # no overlap (16 bins each)
    parts = ensemble.mixture_entropy(p, shifts)
    assert torch.allclose(parts["mutual_information"], torch.full((2,), math.log(4), dtype=torch.float64), atol=1e-12)
    assert torch.allclose(parts["entropy"], parts["aleatoric"] + parts["mutual_information"], atol=1e-12)


def test_mixture_entropy_decomposes_exactly_for_any_shift():
    p = _histograms(5, 3, 24, seed=1)
    shifts = torch.tensor([[0.0, 0.3, 2.7], [1.5, -4.2, 0.0], [0.0, 0.0, 0.0], [9.9, 0.1, 3.3], [-1, -2, -3.5]])
    parts = ensemble.mixture_entropy(p, shifts.double())
    assert torch.allclose(parts["entropy"], parts["aleatoric"] + parts["mutual_information"], atol=1e-12)
    assert (parts["mutual_information"] >= 0).all() and (parts["mutual_information"][3] > 0.1)


def test_member_spread_and_excess_variance():
    v = torch.tensor([[1.0, 3.0], [2.0, 2.0]], dtype=torch.float64)
    assert torch.allclose(ensemble.member_spread(v), torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert torch.allclose(ensemble.member_spread(v[:, :1]), torch.zeros(2, dtype=torch.float64))
    var = torch.tensor([0.01, 0.04, 0.0025], dtype=torch.float64)
    assert torch.allclose(ensemble.excess_variance(var, 0.1), torch.tensor([0.0, 0.03, 0.0], dtype=torch.float64))


def test_forces_spread_on_known_members():
    f = torch.zeros(2, 3, 3, dtype=torch.float64)
    f[0, 1, 0], f[1, 1, 0] = 0.3, -0.3  # atom 1: x components +-0.3 -> var 0.09 over 3 components
    spread = ensemble.forces_spread(f)
    assert torch.allclose(spread, torch.tensor([0.0, math.sqrt(0.09 / 3), 0.0], dtype=torch.float64), atol=1e-12)


@pytest.fixture(scope="module")
def heads_model():
    torch.manual_seed(0)
    cfg = ModelConfig(num_bins=32, heads=3, backbone=BackboneConfig(features=16, layers=2))
    return Potential.fit(cfg, rattled_ethanols()).double()


def test_member_forces_match_finite_differences_and_their_mean_is_the_force(heads_model):
    a = molecule("CH3CH2OH")
    a.rattle(0.1, seed=5)
    batch = collate([a]).to(dtype=torch.float64)
    out = heads_model(batch, uncertainty=True, member_forces=True, heads_spread=True)
    fm = out["forces_members"].detach().numpy()  # [heads, 9, 3]
    assert fm.shape == (3, 9, 3)
    assert np.allclose(fm.mean(0), out["forces"].detach().numpy(), atol=1e-10)
    ref = heads_model(batch, forces=True)  # one backward pass of the mean energy
    assert np.allclose(ref["forces"].detach().numpy(), out["forces"].detach().numpy(), atol=1e-10)
    h = 1e-5
    for i, d in [(0, 0), (4, 2), (8, 1)]:
        plus, minus = a.copy(), a.copy()
        plus.positions[i, d] += h
        minus.positions[i, d] -= h
        e_p = heads_model(collate([plus]).to(dtype=torch.float64), forces=False)
        e_m = heads_model(collate([minus]).to(dtype=torch.float64), forces=False)
        # each head's energy, from its normalised prediction (same refs for both)
        n = len(a)
        fd = -(e_p["y_members"] - e_m["y_members"]).detach().numpy()[0] * n * heads_model.y_std / (2 * h)
        assert np.allclose(fm[:, i, d], fd, atol=1e-6)
    spread = out["forces_std_heads"].detach().numpy()
    assert np.allclose(spread, np.sqrt(((fm - fm.mean(0)) ** 2).mean(axis=(0, 2))), atol=1e-12)
    assert out["forces_std_max"].item() == pytest.approx(out["forces_std"].max().item(), abs=1e-12)


def test_energy_std_adds_the_heads_spread_and_the_histograms_excess_width(heads_model):
    from workers.model import hlgauss

    a = molecule("CH3CH2OH")
    out = heads_model(collate([a]).to(dtype=torch.float64), forces=False)
    ym = out["y_members"].detach()
    epistemic = ym.var(-1, unbiased=False)
    hist_var = hlgauss.std(out["logits"].detach(), heads_model.support) ** 2
    aleatoric = (hist_var - heads_model.support.sigma**2).clamp_min(0).mean(-1)
    expected = 9 * heads_model.y_std * (epistemic + aleatoric).sqrt()
    assert torch.allclose(out["energy_std_heads"], expected, atol=1e-12)
    assert out["energies_std"].shape == (9,)
    assert torch.allclose(out["energy_entropy"], out["energy_aleatoric_entropy"] + out["energy_mutual_information"])


def test_calibration_scales_every_reported_std(heads_model, tmp_path):
    from workers.model.checkpoint import load_checkpoint, save_checkpoint

    a = collate([molecule("CH3CH2OH")]).to(dtype=torch.float64)
    raw = heads_model(a, uncertainty=True)
    heads_model.calibration = Calibration(energy_scale=2.0, forces_scale=3.0, n_structures=10)
    try:
        cal = heads_model(a, uncertainty=True)
        assert torch.allclose(cal["energy_std"], 2.0 * raw["energy_std"])
        assert torch.allclose(cal["energies_std"], 2.0 * raw["energies_std"])
        assert torch.allclose(cal["forces_std"], 3.0 * raw["forces_std"])
        save_checkpoint(tmp_path / "m.pt", heads_model)
        loaded, _ = load_checkpoint(tmp_path / "m.pt")
        assert loaded.calibration == heads_model.calibration
    finally:
        heads_model.calibration = Calibration()


def test_principal_directions_give_the_posterior_variance_truncated_to_the_largest():
    """All D directions: their mean square projection is the exact variance phi^T C phi; the
    top k keep the k largest-variance terms (a lower bound), the same every time."""
    from workers.model.posterior import covariance_root, principal_directions

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    cov = a @ a.T + 0.1 * torch.eye(6, dtype=torch.float64)
    root = covariance_root(cov)
    phi = torch.randn(20, 6, generator=gen, dtype=torch.float64)
    exact = torch.einsum("nd,de,ne->n", phi, cov, phi)
    every = principal_directions(root, 6)
    assert torch.allclose((phi @ every.T).pow(2).mean(-1), exact, rtol=1e-10)
    top2 = principal_directions(root, 2)
    evals, evecs = torch.linalg.eigh(cov)
    expected = (evals[-2:] * (phi @ evecs[:, -2:]).pow(2)).sum(-1)
    assert torch.allclose((phi @ top2.T).pow(2).mean(-1), expected, rtol=1e-10)
    assert (expected < exact).all() and torch.equal(top2, principal_directions(root, 2))
    # the model's option: its posterior's perturbations are these directions
    cfg = ModelConfig(num_bins=32, heads=2, llpr_directions="principal", backbone=BackboneConfig(features=8, layers=1))
    model = Potential.fit(cfg, rattled_ethanols()).double()
    model.fit_llpr(rattled_ethanols())
    assert model.posterior_fitted
    assert torch.allclose(model.llpr_draws, principal_directions(model.llpr_root, cfg.llpr_samples), rtol=1e-6)


def test_llpr_posterior_shrinks_where_the_training_labels_are(heads_model):
    """The last-layer posterior: small variance on the structures it was fitted on, larger on
    a structure unlike them; its forces are the posterior draws' exact gradients."""
    train = rattled_ethanols(6)
    for k, a in enumerate(train):  # forces that are not all zero: the force features count
        a.calc = SinglePointCalculator(a, energy=-4139.0 + 0.1 * k, forces=0.1 * np.ones((9, 3)))
    heads_model.fit_llpr(train)
    cov = heads_model.llpr_root @ heads_model.llpr_root.T
    assert torch.allclose(cov, cov.T) and torch.linalg.eigvalsh(cov).min() > 0
    near = heads_model(collate(train[:2]).to(dtype=torch.float64), uncertainty=True)
    stds = []
    for pull in (0.8, 1.5, 3.0):  # one atom pulled off further and further: features never seen
        far_atoms = molecule("CH3CH2OH")
        far_atoms.positions[2] += [0.0, 0.0, pull]
        far = heads_model(collate([far_atoms]).to(dtype=torch.float64), uncertainty=True)
        stds.append(far["energy_std"].item())  # the posterior's, once fitted
    assert stds[0] < stds[1] < stds[2] and stds[2] > 2 * near["energy_std"].max().item()
    # forces of draw k = -d(y_std * sum_i phi_i . d_k)/dr, checked by finite differences
    a = far_atoms
    h = 1e-5
    draws = heads_model.llpr_draws

    def draw_energy(atoms):
        out = heads_model(collate([atoms]).to(dtype=torch.float64), forces=False)
        return heads_model.y_std * out["last_layer"].sum(0) @ draws.T  # [samples]

    fd = np.zeros((len(draws), len(a), 3))
    for i in range(len(a)):
        for d in range(3):
            p, m = a.copy(), a.copy()
            p.positions[i, d] += h
            m.positions[i, d] -= h
            fd[:, i, d] = -(draw_energy(p) - draw_energy(m)).detach().numpy() / (2 * h)
    expected = np.sqrt((fd**2).mean(axis=(0, 2)))
    assert np.allclose(far["forces_std"].detach().numpy(), expected, rtol=1e-5, atol=1e-9)
    heads_model.llpr_draws.zero_()  # back to the heads' spread for the other tests


@pytest.mark.slow
def test_a_stretched_bond_is_flagged_on_its_own_atoms():
    """A model trained on 300-500 K ethanol: on frames of an unseen trajectory with one bond
    pulled to 1.5x, the largest per-atom uncertainty sits on that bond's atoms (chance 2/9)."""
    import sys
    from pathlib import Path

    from ase.io import read

    from workers.model.calculator import predict
    from workers.model.training import TrainConfig, train

    repo = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(repo / "benchmarks"))
    from make_stretched import bonds, stretch

    data = repo / "benchmarks" / "data"
    frames = [a for a in read(data / "ethanol_aimd_hf_sto3g.extxyz", ":") if a.info["temperature_k"] <= 500]
    cfg = ModelConfig(heads=4, backbone=BackboneConfig(features=32, layers=2))
    model = train(TrainConfig(epochs=100, batch_size=8, lr=2e-3, seed=0), frames, model_cfg=cfg).model
    unseen = [a for a in read(data / "ethanol_id_hf_sto3g.extxyz", ":") if a.info["trajectory"] == 4]
    rng = np.random.default_rng(0)
    cases = []
    for k in range(12):
        a = unseen[3 * k]
        pairs = bonds(a)
        i, j = pairs[int(rng.integers(len(pairs)))]
        cases.append((stretch(a, i, j, 1.5), {i, j}))
    preds = predict(model, [c for c, _ in cases])
    for key in ("forces_std", "energies_std", "latent_distance"):
        hits = sum(int(np.argmax(p[key])) in bond for p, (_, bond) in zip(preds, cases, strict=True))
        assert hits >= 6, (key, hits)  # chance: 12 x 2/9 = 2.7 (P(>= 6) = 0.03 at chance)
    # the most uncertain atom each prediction names is the argmax of its per-atom force std
    assert [p["forces_std_atom"] for p in preds] == [int(np.argmax(p["forces_std"])) for p in preds]
    # and the stretched structures read as far more uncertain than the unstretched ones
    plain = predict(model, [unseen[3 * k] for k in range(12)])
    for key in ("forces_std_max", "latent_distance_max"):
        assert np.median([p[key] for p in preds]) > 2 * np.median([p[key] for p in plain]), key


def test_posterior_stds_do_not_depend_on_the_batch_in_float32():
    """The posterior's stds are |phi @ root| (sums of squares): in float32 a structure's
    energy_std is the same alone or batched with others, and never 0 (a float32 quadratic
    form with the covariance cancelled to 0 or moved 2x with the batch)."""
    from workers.model import TrainConfig, train
    from workers.model.calculator import predict

    structures = rattled_ethanols(12)
    for k, a in enumerate(structures):
        a.calc = SinglePointCalculator(a, energy=-4139.0 + 0.05 * k, forces=0.2 * np.sin(a.positions + k))
    torch.manual_seed(0)
    cfg = ModelConfig(num_bins=32, backbone=BackboneConfig(features=16, layers=2))
    model = train(TrainConfig(epochs=5, batch_size=4), structures[:8], model_cfg=cfg).model.float()
    assert model.posterior_fitted and next(model.parameters()).dtype == torch.float32
    probe = rattled_ethanols(20)[14:]  # rattled with other seeds than the training ones
    together = np.array([r["energy_std"] for r in predict(model, probe)])
    alone = np.array([predict(model, [a])[0]["energy_std"] for a in probe])
    assert together.min() > 0
    np.testing.assert_allclose(together, alone, rtol=1e-3)
    e_atoms = np.concatenate([r["energies_std"] for r in predict(model, probe)])
    assert e_atoms.min() > 0


def test_a_power_law_calibration_maps_every_reported_std(heads_model):
    a = collate([molecule("CH3CH2OH"), molecule("CH3OCH3")]).to(dtype=torch.float64)
    raw = heads_model(a, uncertainty=True)
    heads_model.calibration = Calibration(energy_scale=2.0, forces_scale=3.0, energy_power=1.5, forces_power=2.0)
    try:
        cal = heads_model(a, uncertainty=True)
        assert torch.allclose(cal["energy_std"], 2.0 * raw["energy_std"] ** 1.5)
        assert torch.allclose(cal["forces_std"], 3.0 * raw["forces_std"] ** 2)
        # per atom: each atom's share of its structure's calibrated std
        share = (cal["energy_std"] / raw["energy_std"])[a.structure]
        assert torch.allclose(cal["energies_std"], share * raw["energies_std"])
        # with the latent distance's term: each atom's error bar times its distance**c
        with_index = copy.deepcopy(heads_model)
        with_index.calibration = Calibration()
        with_index.fit_latent(rattled_ethanols())
        d = with_index(a, uncertainty=True)["latent_distance"]
        with_index.calibration = Calibration(forces_scale=3.0, forces_power=2.0, forces_distance_power=0.5)
        both = with_index(a, uncertainty=True)
        assert torch.allclose(both["forces_std"], 3.0 * raw["forces_std"] ** 2 * d**0.5)
        assert torch.allclose(both["forces_std_max"][1], both["forces_std"][a.structure == 1].max())
    finally:
        heads_model.calibration = Calibration()
