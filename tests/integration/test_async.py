"""An asynchronous campaign (campaign.mode: async) through the real CLI, killed mid-way and
resumed: labels stored before the kill are kept and never redone, the budget holds, and
MLflow shows the generations with a round's metrics."""

import json
import signal
import subprocess
import time

import pytest
from mlflow import MlflowClient

from orchestrator.config import load_config
from orchestrator.store import LabelStore
from tests.integration.helpers import TINY, catal_cmd, env, run_catal
from workers.model.potential import load_checkpoint

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_LABELS = 32
ASYNC = [
    "campaign.mode=async", "campaign.retrain_every=4", f"budget.max_labels={MAX_LABELS}", "stop.max_rounds=50",
    "ray.dft_workers=2", "dft.emulated_latency_s=0.4",
]  # fmt: skip


def _labels(out):
    store = LabelStore(out / "labels.db")
    try:
        return {s.key: (s.id, s.round, s.origin, s.charged) for s in store.labels()}
    finally:
        store.close()


def _wait_for_generation(proc, out, generation: int, timeout=300):
    state_file = out / "state.json"
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            state = json.loads(state_file.read_text()) if state_file.exists() else {}
        except json.JSONDecodeError:
            state = {}
        at_generation = state.get("phase") == "async" and state.get("round", 0) >= generation
        if at_generation and any(o == "md" for _, _, o, _ in _labels(out).values()):  # an MD pick stored
            return
        time.sleep(0.05)
    raise AssertionError("the campaign ended before it could be interrupted")


def test_killed_async_campaign_resumes_without_redoing_labels(tmp_path):
    out = tmp_path / "tiny"
    sets = [x for s in ASYNC for x in ("--set", s)]
    proc = subprocess.Popen(
        catal_cmd("run", str(TINY), "--set", f"out_dir={out}", *sets),
        env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _wait_for_generation(proc, out, 2)  # two models trained while DFT went on, MD picks labelled
    time.sleep(0.5)  # labels in flight
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _labels(out)
    assert json.loads((out / "state.json").read_text())["finished"] is False
    assert {r for _, r, o, _ in before.values() if o == "md"} >= {1}  # picks ranked by generation 1 stored

    resumed = run_catal("resume", str(out))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = _labels(out)
    # every label stored before the kill is still there, untouched (same row), none redone
    assert all(after[k] == v for k, v in before.items())
    assert sum(1 for *_, charged in after.values() if charged) == MAX_LABELS  # spent, not exceeded
    assert len(after) <= MAX_LABELS
    state = json.loads((out / "state.json").read_text())
    assert state["finished"] and state["stop_reason"] == "budget exhausted"
    gens = [h["round"] for h in state["history"]]
    assert gens == sorted(set(gens)) and len(gens) >= 2
    # the hold-out, labelled from the queue (not in round 0), is all there once, in round 0
    holdout = [r for _, r, o, _ in after.values() if o == "holdout"]
    cfg = load_config(out / "config.yaml")
    assert holdout == [0] * cfg.budget.holdout_labels
    # the final model (started while the last labels were in flight) trained on every label
    store = LabelStore(out / "labels.db")
    try:
        n_training = len(store.training_structures())
    finally:
        store.close()
    assert load_checkpoint(out / "model.pt")[1]["history"][-1]["n_structures"] == n_training

    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    parent = next(r for r in runs if r.data.tags["catal.kind"] == "campaign")
    children = [r for r in runs if r.data.tags["catal.kind"] == "generation"]
    assert parent.info.status == "FINISHED"
    assert 0.0 < parent.data.metrics["campaign_dft_utilisation"] <= 1.0
    assert {c.data.tags["catal.round"] for c in children} == {str(g) for g in gens}
    for child in children:  # a round's metrics, per generation
        assert child.info.status == "FINISHED"
        assert {"holdout_force_mae", "labels_total", "labels_trained", "dft_utilisation"} <= set(child.data.metrics)
