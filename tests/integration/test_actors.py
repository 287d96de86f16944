"""Trainer and sampler actors under a real local Ray."""

import time

import pytest

from workers.model import ModelConfig, TrainConfig
from workers.model.backbone import BackboneConfig
from workers.model.calculator import predict
from workers.sampling import MDConfig, StopRules

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_trainer_then_samplers_return_frames_with_entropies(ray_local, ethanol_labels):
    from workers.actors import SamplerActor, TrainerActor, sample_with_actors
    from workers.model.checkpoint import model_from_payload
    from workers.sampling import replica_shares

    trainer = TrainerActor.options(num_cpus=1).remote(threads=1)
    cfg = TrainConfig(epochs=5, batch_size=8)
    model_cfg = ModelConfig(num_bins=32, backbone=BackboneConfig(features=16, layers=2))
    out = ray_local.get(trainer.train.remote(cfg.to_dict(), model_cfg.to_dict(), ethanol_labels[:30], None, None))
    assert len(out["history"]) == 5 and out["structures_per_s"] > 0
    # warm start from the shipped payload keeps the support
    out2 = ray_local.get(
        trainer.train.remote(cfg.to_dict(), model_cfg.to_dict(), ethanol_labels[:40], out["payload"], out["optimizer"])
    )
    assert out2["payload"]["meta"]["support"] == out["payload"]["meta"]["support"]
    # the running training's model as of its last epoch (asynchronous MD runs on it); none after
    assert ray_local.get(trainer.latest.remote()) is None
    long = TrainConfig(epochs=400, batch_size=8).to_dict()
    running = trainer.train.remote(long, model_cfg.to_dict(), ethanol_labels[:40], out2["payload"], None)
    snap = None
    for _ in range(600):
        if (snap := ray_local.get(trainer.latest.remote())) is not None:
            break
        time.sleep(0.05)
    assert snap is not None, "no snapshot in 30 s of training"
    payload, row = snap
    assert 0 <= row["epoch"] < 399 and row["n_structures"] == 40
    assert model_from_payload(payload, "cpu").cfg.num_bins == 32
    bare, row_only = ray_local.get(trainer.latest.remote(False))  # the row alone, no payload
    assert bare is None and row_only["epoch"] >= row["epoch"] and row_only["n_structures"] == 40
    trainer.stop.remote()
    assert len(ray_local.get(running)["history"]) < 400
    assert ray_local.get(trainer.latest.remote()) is None
    ray_local.kill(trainer)

    samplers = [SamplerActor.options(num_cpus=1).remote(threads=1, device="cpu") for _ in range(2)]
    payload_ref = ray_local.put(out2["payload"])  # one copy in the object store per round
    # stop rules off: a 5-epoch model may drive a replica out of bounds; stops are tested elsewhere
    lax = StopRules(min_distance_a=None, check_topology=False, max_force_ev_a=None)
    md_cfg = MDConfig(replicas=5, steps=20, stride=10, stops=lax)
    frames = sample_with_actors(samplers, payload_ref, ethanol_labels[:2], md_cfg)
    assert sorted({f.info["replica"] for f in frames}) == [0, 1, 2, 3, 4]
    assert len(frames) == 10
    # each frame carries the model's own outputs at that frame's positions (float32: the
    # sampler's batch of replicas sums in another order than this batch of frames)
    model = model_from_payload(out2["payload"], "cpu")
    again = predict(model, frames)
    for f, r in zip(frames, again, strict=True):
        for key in ("energy_entropy", "energy_std", "forces_std_max"):
            assert f.info[key] == pytest.approx(r[key], rel=2e-3, abs=1e-6), key
        assert f.info["model_energy"] == pytest.approx(r["energy"], abs=1e-4)
    assert model_from_payload(out2["payload"], "cpu").cfg.num_bins == 32
    assert replica_shares(5, 2) == [(0, 3), (3, 2)]
    for s in samplers:
        ray_local.kill(s)
