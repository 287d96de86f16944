"""Campaigns against real servers, as a cluster's driver runs them: labels in PostgreSQL through
``ase.db``, tracking on an ``mlflow server`` over HTTP (artifacts served by it), and the MLflow
UI a user opens, loaded in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from orchestrator.references import install_references
from tests.integration.helpers import TINY, run_catal
from tests.integration.servers import start_mlflow_server, start_postgres

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_references):
    """A tiny campaign with its labels on PostgreSQL and its runs on an MLflow server."""
    root = tmp_path_factory.mktemp("servers")
    pg = start_postgres()
    mlflow_url, server = start_mlflow_server(root / "mlflow")
    out = root / "tiny"
    install_references(tiny_references, out)
    try:
        run = run_catal(
            "run", str(TINY), "--set", f"out_dir={out}", "--set", f"store.url={pg.url}",
            "--set", f"tracking.uri={mlflow_url}",
        )  # fmt: skip
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        yield {"pg": pg.url, "mlflow": mlflow_url, "out": out, "stdout": run.stdout, "root": root}
    finally:
        server.terminate()
        server.wait(timeout=30)
        pg.stop()


def test_labels_live_on_postgresql(finished):
    from orchestrator.records.state import load_state
    from orchestrator.records.store import LabelStore

    assert not (finished["out"] / "labels.db").exists()
    labels = LabelStore(finished["pg"], campaign="tiny").labels()
    keys = [s.key for s in labels]
    assert len(keys) == len(set(keys)) >= 11  # 8 initial + 3 hold-out, then the rounds' picks
    charged = sum(s.charged for s in labels)
    assert charged == load_state(finished["out"]).round_info["labels_total"]
    assert LabelStore(finished["pg"], campaign="another").labels() == []  # campaigns share the server
    status = run_catal("status", str(finished["out"]))  # reads the store back through the config
    assert status.returncode == 0 and "tiny" in status.stdout, status.stderr


def test_runs_and_artifacts_on_the_mlflow_server(finished):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=finished["mlflow"])
    exp = client.get_experiment_by_name("tiny")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # opens on the runs table
    assert exp.artifact_location.startswith("mlflow-artifacts:")  # served by the server, not a local path
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("catal.kind") == "campaign"]
    rounds = [r for r in runs if r.data.tags.get("catal.kind") == "round"]
    assert [p.info.status for p in parents] == ["FINISHED"] and len(rounds) == 2
    history = client.get_metric_history(parents[0].info.run_id, "holdout_force_mae")
    assert [m.step for m in history] == [1, 2]
    names = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"learning_curve.png", "config.yaml", "model"} <= names
    assert (finished["root"] / "mlflow" / "artifacts").exists()  # written by the server
    assert not (finished["out"] / "mlartifacts").exists()


def _chromium(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("Chromium is not installed (apt-get install -y chromium; .ci/run does this)")
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1600,1000", "--virtual-time-budget=30000",
    ]  # fmt: skip
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=timeout)


def test_mlflow_ui_shows_the_round_runs_and_a_metric_chart(finished, tmp_path):
    """The page catal's closing line points to, in headless Chromium: the runs table (not the
    GenAI overview MLflow 3 opens by default), each round's run, and the metric charts."""
    from mlflow import MlflowClient

    assert f"{finished['mlflow']}/#/experiments?workflowType=machine_learning" in finished["stdout"]
    client = MlflowClient(tracking_uri=finished["mlflow"])
    exp = client.get_experiment_by_name("tiny")
    runs = {r.info.run_name: r.info.run_id for r in client.search_runs([exp.experiment_id])}
    base = f"{finished['mlflow']}/#/experiments/{exp.experiment_id}"
    mode = "?workflowType=machine_learning"
    profile = f"--user-data-dir={tmp_path / 'chromium'}"

    table = _chromium(profile, "--dump-dom", base + mode)
    assert table.returncode == 0, table.stderr[-2000:]
    text = re.sub(r"<[^>]+>", " ", table.stdout)
    assert "Detect Issues in Your Traces" not in text  # not the GenAI overview
    assert ">tiny<" in table.stdout and re.search(r"\b3\s+matching runs", text), text[-3000:]  # parent + 2 rounds
    for name in ("round_001", "round_002"):
        page = _chromium(profile, "--dump-dom", f"{base}/runs/{runs[name]}{mode}")
        assert name in page.stdout, page.stdout[-2000:]
    charts = f"{base}/runs/{runs['tiny']}/model-metrics{mode}"
    for _ in range(3):  # the charts render last: a loaded machine can outrun the virtual-time budget
        page = _chromium(profile, "--dump-dom", charts)
        if "js-plotly-plot" in page.stdout:
            break
    assert "js-plotly-plot" in page.stdout and "audit_force_mae" in page.stdout, page.stdout[-2000:]
    shot = tmp_path / "mlflow_ui.png"  # kept under the test's tmp dir: CI's artifact
    _chromium(profile, f"--screenshot={shot}", charts)
    assert shot.exists() and shot.stat().st_size > 10_000
