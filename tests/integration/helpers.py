"""Run the real ``catal`` CLI in a subprocess and read what a campaign left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "data" / "tiny_campaign.yaml"


def catal_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", *args]


def env() -> dict:
    """The test's environment minus RAY_ADDRESS, which the session's own ray.init() exports:
    a child process must not join the test session's cluster by accident."""
    e = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    e.setdefault("OMP_NUM_THREADS", "1")
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def run_catal(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(catal_cmd(*args), capture_output=True, text=True, timeout=timeout, env=env(), cwd=REPO)


def wait_for_state(proc, out_dir: Path, ready, timeout: float = 300) -> dict:
    """Poll ``out_dir/state.json`` until ``ready(state)`` (a dict); fails if the campaign
    ``proc`` ends first."""
    state_file = out_dir / "state.json"
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            state = json.loads(state_file.read_text())
        except (OSError, json.JSONDecodeError):
            state = {}
        if state and ready(state):
            return state
        time.sleep(0.05)
    raise AssertionError("campaign ended before it could be interrupted")


def label_keys(out_dir: Path) -> list[str]:
    from orchestrator.records.store import LabelStore

    return [s.key for s in LabelStore(out_dir / "labels.db").labels()]


def mlflow_runs(out_dir: Path, experiment: str = "tiny"):
    """``(parent runs, child runs)`` in the campaign's SQLite MLflow store (its experiment is
    the config's ``name``)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{out_dir / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("catal.kind") == "campaign"]
    children = [r for r in runs if r.data.tags.get("catal.kind") == "round"]
    return parents, children
