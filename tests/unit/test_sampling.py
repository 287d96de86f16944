"""MD engines (batched vs ASE), energy conservation, thermostat, and every stop rule."""

import copy

import numpy as np
import pytest
import torch
from ase.build import molecule

from workers.model.graph import collate
from workers.sampling import MDConfig, StopRules, check_stops, run_md, topology


@pytest.fixture(scope="module")
def model64(small_model):
    return copy.deepcopy(small_model).double()


def test_batched_and_ase_engines_agree_on_nve(model64, ethanol_labels):
    seeds = ethanol_labels[:2]
    common = dict(ensemble="nve", replicas=3, steps=60, stride=20, temperature_k=300, timestep_fs=0.5)
    batched = run_md(model64, seeds, MDConfig(engine="batched", **common))
    ase_ref = run_md(model64, seeds, MDConfig(engine="ase", **common))
    assert len(batched) == len(ase_ref) == 9
    key = lambda f: (f.info["replica"], f.info["step"])  # noqa: E731
    for b, a in zip(sorted(batched, key=key), sorted(ase_ref, key=key), strict=True):
        assert key(b) == key(a)
        assert np.abs(b.positions - a.positions).max() < 1e-9
        assert np.abs(b.get_velocities() - a.get_velocities()).max() < 1e-9
        assert b.info["model_energy"] == pytest.approx(a.info["model_energy"], abs=1e-8)
        assert b.info["energy_entropy"] == pytest.approx(a.info["energy_entropy"], abs=1e-8)
        assert b.info["stop_reason"] == a.info["stop_reason"] == ""


@pytest.mark.slow
def test_nve_energy_drift_over_one_ps(model64, ethanol_labels):
    # conservation only: a briefly trained model may stretch a bond past the topology rule
    cfg = MDConfig(
        ensemble="nve", replicas=2, steps=2000, stride=100, temperature_k=300, timestep_fs=0.5,
        stops=StopRules(check_topology=False),
    )  # fmt: skip
    frames = run_md(model64, [ethanol_labels[0]], cfg)
    assert len(frames) == 40 and all(f.info["stop_reason"] == "" for f in frames)
    for r in (0, 1):
        traj = [f for f in frames if f.info["replica"] == r]
        total = np.array([f.info["model_energy"] + f.get_kinetic_energy() for f in traj])
        kinetic = np.array([f.get_kinetic_energy() for f in traj])
        drift_per_atom = abs(total[-1] - total[0]) / 9
        assert drift_per_atom < 2e-3, drift_per_atom  # eV/atom over 1 ps
        assert np.std(total) < 0.1 * np.std(kinetic) + 1e-6  # fluctuations far below KE's


@pytest.mark.slow
def test_langevin_thermalises_near_target(small_model, ethanol_labels):
    cfg = MDConfig(replicas=8, steps=600, stride=20, temperature_k=500, friction_per_fs=0.05)
    frames = run_md(small_model, ethanol_labels[:4], cfg)
    late = [f for f in frames if f.info["step"] > 300 and not f.info["stop_reason"]]
    temps = [f.get_temperature() for f in late]
    assert len(late) > 20
    assert 350 < np.mean(temps) < 650, np.mean(temps)


def test_frames_carry_model_outputs(small_model, ethanol_labels):
    frames = run_md(small_model, ethanol_labels[:1], MDConfig(replicas=2, steps=20, stride=10))
    f = frames[0]
    assert f.calc is None  # predictions are never mistaken for labels
    assert f.arrays["model_forces"].shape == (9, 3)
    assert f.info["embedding"].shape == (32,)
    assert 0 < f.info["energy_entropy"] < np.log(64)
    assert f.info["energy_std"] > 0
    assert np.isfinite(f.info["energy_excess_entropy"])


def _aux(n, entropy=1.0):
    return {"energy": torch.zeros(n, dtype=torch.float64), "energy_entropy": torch.full((n,), entropy)}


DEFAULT_RULES = StopRules()


def _case(positions=None, forces=None, rules=DEFAULT_RULES, entropy=1.0):
    a = molecule("H2O")
    b = collate([a])
    topo = topology(b, b.positions, rules)
    x = b.positions.clone() if positions is None else positions
    f = torch.zeros_like(x) if forces is None else forces
    return check_stops(x, f, _aux(1, entropy), b.structure, topo, rules)[0], b


def test_no_stop_on_the_equilibrium_structure():
    assert _case()[0] == ""


def test_stop_min_distance():
    _, b = _case()
    x = b.positions.clone()
    x[1] = x[0] + torch.tensor([0.3, 0.0, 0.0], dtype=x.dtype)
    reason, _ = _case(positions=x, rules=StopRules(check_topology=False))
    assert reason.startswith("min distance 0.30")


def test_stop_bond_topology_change():
    _, b = _case()
    x = b.positions.clone()
    x[1] = x[0] + 2.5 * (x[1] - x[0]) / (x[1] - x[0]).norm()  # O-H broken
    assert _case(positions=x)[0] == "bond topology changed"


def test_stop_force_cap_nonfinite_and_entropy():
    _, b = _case()
    f = torch.zeros_like(b.positions)
    f[2, 1] = 80.0
    assert "above cap" in _case(forces=f)[0]
    x = b.positions.clone()
    x[0, 0] = float("nan")
    assert _case(positions=x)[0] == "non-finite value"
    assert "above trust window" in _case(rules=StopRules(max_entropy=2.0), entropy=3.0)[0]


def test_stopped_replica_freezes_and_others_continue(small_model, ethanol_labels):
    # an entropy cap just above the start makes some replicas stop early
    probe = run_md(small_model, ethanol_labels[:1], MDConfig(replicas=4, steps=10, stride=10))
    cap = float(np.median([f.info["energy_entropy"] for f in probe]))
    cfg = MDConfig(replicas=4, steps=60, stride=10, stops=StopRules(max_entropy=cap))
    frames = run_md(small_model, ethanol_labels[:1], cfg)
    stopped = [f for f in frames if f.info["stop_reason"]]
    assert stopped
    for f in stopped:  # nothing after a replica's stop frame
        later = [g for g in frames if g.info["replica"] == f.info["replica"] and g.info["step"] > f.info["step"]]
        assert later == []


@pytest.mark.parametrize("engine", ["batched", "ase"])
def test_temperature_ramp_heats_the_replicas(small_model, ethanol_labels, engine):
    from workers.sampling import temperature_at

    cfg = MDConfig(
        engine=engine, replicas=2, steps=200, stride=50, temperature_k=50, temperature_end_k=1500,
        friction_per_fs=0.2, stops=StopRules(check_topology=False),
    )  # fmt: skip
    assert temperature_at(cfg, 0) == 50 and temperature_at(cfg, 200) == 1500
    frames = run_md(small_model, ethanol_labels[:1], cfg)
    first = np.mean([f.get_temperature() for f in frames if f.info["step"] == 50])
    last = np.mean([f.get_temperature() for f in frames if f.info["step"] == 200])
    assert last > first


@pytest.mark.parametrize("engine", ["batched", "ase"])
def test_each_replica_runs_at_its_own_temperature(small_model, ethanol_labels, engine):
    from workers.sampling import temperature_at

    cfg = MDConfig(
        engine=engine, replicas=4, steps=200, stride=50, temperatures_k=[100, 1500], friction_per_fs=0.2,
        stops=StopRules(check_topology=False, max_force_ev_a=None),
    )  # fmt: skip
    assert [temperature_at(cfg, 7, r) for r in range(3)] == [100, 1500, 100]
    # an actor's replicas are numbered globally: with offset 1 its first replica is the hot one
    frames = run_md(small_model, ethanol_labels[:1], cfg, replica_offset=1)
    mean_t = {r: np.mean([f.get_temperature() for f in frames if f.info["replica"] == r]) for r in range(1, 5)}
    hot, cold = [mean_t[1], mean_t[3]], [mean_t[2], mean_t[4]]
    assert min(hot) > 4 * max(cold), mean_t  # 15x apart in the thermostat; a 9-atom molecule fluctuates


def test_replica_temperatures_and_a_ramp_exclude_each_other():
    with pytest.raises(ValueError, match="exclude each other"):
        MDConfig(temperatures_k=[300, 900], temperature_end_k=1000)
    with pytest.raises(ValueError, match=">= 0 K"):
        MDConfig(temperatures_k=[300, -5])


def test_biased_md_drifts_to_unfamiliar_frames_and_keeps_the_models_own_forces(model64, ethanol_labels):
    """Uncertainty-biased MD (sampling.bias_ev): from the same start, velocities and noise, the
    replicas reach frames the model knows less (larger latent distance) than plain MD does;
    each frame keeps the model's own forces (not the biased ones) and the bias it ran under."""
    from workers.model.calculator import predict

    assert model64.latent_fitted
    cfg = MDConfig(replicas=2, steps=120, stride=10, temperature_k=300.0)
    plain = run_md(model64, ethanol_labels[:1], cfg)
    biased = run_md(model64, ethanol_labels[:1], cfg.model_copy(update={"bias_ev": 0.5}))
    assert "bias_energy" not in plain[0].info
    assert all(-0.5 * 9 <= f.info["bias_energy"] < 0.0 for f in biased)
    far = np.mean([f.info["latent_distance_max"] for f in biased])
    near = np.mean([f.info["latent_distance_max"] for f in plain])
    assert far > 1.2 * near, (far, near)
    frame = biased[-1]
    own = predict(model64, [frame])[0]
    assert np.allclose(frame.arrays["model_forces"], own["forces"], atol=1e-8)
    assert frame.info["model_energy"] == pytest.approx(own["energy"], abs=1e-8)


def test_biased_md_needs_the_batched_engine():
    with pytest.raises(ValueError, match="bias_ev .* needs engine: batched"):
        MDConfig(engine="ase", bias_ev=0.1)


def test_hottest_k_is_the_hottest_target_of_any_replica_at_any_step():
    from workers.sampling import MDConfig, hottest_k

    assert hottest_k(MDConfig(temperature_k=600.0)) == 600.0
    assert hottest_k(MDConfig(temperatures_k=[150.0] * 7 + [600.0])) == 600.0
    assert hottest_k(MDConfig(temperature_k=300.0, temperature_end_k=1000.0)) == 1000.0
    assert hottest_k(MDConfig(temperature_k=900.0, temperature_end_k=300.0)) == 900.0
