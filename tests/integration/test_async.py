"""An asynchronous campaign (campaign.mode: async) through the real CLI, killed mid-way and
resumed: labels stored before the kill are kept and never redone, the budget holds, and
MLflow shows the generations with a round's metrics. And one whose DFT worker, trainer and
sampler processes are SIGKILLed mid-way: it finishes on its own, each label once."""

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator.config import load_config
from orchestrator.records.store import LabelStore
from orchestrator.references import install_references
from tests.integration.helpers import TINY, catal_cmd, env, run_catal
from workers.model.checkpoint import load_checkpoint

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


def test_killed_async_campaign_resumes_without_redoing_labels(tmp_path, tiny_references):
    out = tmp_path / "tiny"
    install_references(tiny_references, out)
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
    md_rounds = {r for _, r, o, _ in before.values() if o == "md"}
    assert md_rounds and min(md_rounds) >= 1  # MD picks stored, each with the generation that ranked it

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
    # so is the initial set (its first half labelled before the first model, the rest queued)
    assert sum(1 for _, r, o, _ in after.values() if o == "seed" and r == 0) >= cfg.system.initial_labels
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


def _actor_pids(root: int, class_name: str) -> list[int]:
    """PIDs of the ``class_name`` Ray actor processes that descend from process ``root``
    (Ray titles them ``ray::ClassName``, or ``ray::ClassName.method`` while one runs); the
    busy ones first."""
    parent, title = {}, {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        parent[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        title[int(d.name)] = cmd

    def descends(pid: int) -> bool:
        while pid > 1:
            if pid == root:
                return True
            pid = parent.get(pid, 0)
        return False

    found = [p for p, t in title.items() if t.startswith(f"ray::{class_name}") and descends(p)]
    return sorted(found, key=lambda p: "." not in title[p].split()[0])


def test_async_campaign_survives_killed_workers_trainer_and_sampler(tmp_path, tiny_references):
    out = tmp_path / "lost"
    install_references(tiny_references, out)
    sets = [x for s in ASYNC for x in ("--set", s)]
    proc = subprocess.Popen(
        catal_cmd("run", str(TINY), "--set", f"out_dir={out}", *sets),
        env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        _wait_for_generation(proc, out, 1)  # a model, MD picks queued and labelled
        killed = {}
        for name in ("DFTWorker", "TrainerActor", "SamplerActor"):
            pids = _actor_pids(proc.pid, name)
            assert pids, f"no {name} process under the campaign's driver"
            os.kill(pids[0], signal.SIGKILL)
            killed[name] = pids[0]
        before = _labels(out)
        stdout, _ = proc.communicate(timeout=600)
    finally:
        proc.kill()
    said = " ".join(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stdout).split())  # rich wraps and colours lines
    assert proc.returncode == 0, said[-4000:]
    state = json.loads((out / "state.json").read_text())
    assert state["finished"] and state["stop_reason"] == "budget exhausted", said[-4000:]
    assert "the trainer lost" in said, said[-4000:]
    assert "DFT jobs moved" in said, said[-4000:]  # the busy worker's labels went to the others
    assert "a sampler lost" in said, said[-4000:]  # its MD run (or the next one) failed, ran again
    after = _labels(out)
    assert all(after[k] == v for k, v in before.items())  # nothing stored was touched or redone
    assert sum(1 for *_, charged in after.values() if charged) == MAX_LABELS  # spent, not exceeded
    store = LabelStore(out / "labels.db")
    try:
        keys = [s.key for s in store.labels()]
        n_training = len(store.training_structures())
    finally:
        store.close()
    assert len(keys) == len(set(keys)) <= MAX_LABELS  # each structure labelled once
    assert load_checkpoint(out / "model.pt")[1]["history"][-1]["n_structures"] == n_training
    print(f"killed {killed}; {len(keys)} labels")
