"""`ray job submit --working-dir .` against a `ray start --head` cluster on 127.0.0.1."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.references import install_references
from tests.integration import helpers
from tests.integration.helpers import REPO, TINY, label_keys, mlflow_runs

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """A `ray start --head` cluster with 2 CPUs on 127.0.0.1, as on this 2-core machine:
    ``(ray_cli, env, dashboard address)``."""
    bin_dir = Path(sys.executable).parent
    ray_cli = shutil.which("ray", path=str(bin_dir)) or shutil.which("ray")
    env = dict(helpers.env(), RAY_AUTH_MODE="token", PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    gcs, dash = _free_port(), _free_port()
    head = subprocess.Popen(
        [
            ray_cli, "start", "--head", "--block", "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1", f"--port={gcs}", f"--dashboard-port={dash}",
            "--num-cpus=2", "--include-dashboard=true", "--disable-usage-stats",
            # fixed default ports (agent 52365, ...) may be held by the session's local Ray
            f"--dashboard-agent-listen-port={_free_port()}", f"--metrics-export-port={_free_port()}",
            f"--runtime-env-agent-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
        ],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    address = f"http://127.0.0.1:{dash}"
    try:
        for _ in range(120):  # wait for the job server
            ok = subprocess.run([ray_cli, "job", "list", "--address", address], env=env, capture_output=True)
            if ok.returncode == 0:
                break
            time.sleep(1)
        yield ray_cli, env, address
    finally:
        head.terminate()  # --block: stopping the head stops the cluster it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()


def _submit(ray_head, out, *extra: str, extra_sets=(), timeout: int = 600) -> subprocess.CompletedProcess:
    ray_cli, env, address = ray_head
    cmd = [
        ray_cli, "job", "submit", "--address", address, "--working-dir", str(REPO), *extra, "--",
        "python", "-m", "orchestrator.cli", "run", str(TINY),
        "--set", f"out_dir={out}", "--set", "ray.address=auto", *extra_sets,
    ]  # fmt: skip
    for _ in range(30):  # the head's job agent may come up after its job server
        submit = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if "No available agent" not in submit.stdout + submit.stderr:
            return submit
        time.sleep(2)
    return submit


# the demo's actors: 2 DFT workers + a 2-CPU trainer + a 2-CPU sampler, 6 CPUs if all were held
# at once (on main this hung in round 1: the trainer could never be placed on a 2-CPU cluster)
DEMO_RAY = ("--set", "ray.dft_workers=2", "--set", "ray.trainer_cpus=2", "--set", "ray.sampler_cpus=2")


def test_campaign_submitted_as_a_ray_job(ray_head, tmp_path):
    """The demo's resource shape on a 2-CPU cluster: each phase holds its actors only while it
    runs, so the campaign finishes."""
    out = tmp_path / "tiny"
    submit = _submit(ray_head, out, extra_sets=DEMO_RAY)
    assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
    assert "succeeded" in (submit.stdout + submit.stderr).lower()
    assert "per phase: DFT up to" in submit.stdout
    parents, children = mlflow_runs(out)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2
    assert (out / "model.pt").exists()


def test_a_demand_no_node_can_hold_fails_in_seconds_with_one_line(ray_head, tmp_path):
    t0 = time.monotonic()
    submit = _submit(ray_head, tmp_path / "big", extra_sets=("--set", "dft.threads=64"), timeout=120)
    elapsed = time.monotonic() - t0
    output = submit.stdout + submit.stderr
    assert submit.returncode != 0 and "failed" in output.lower(), output[-3000:]
    failures = {line for line in output.splitlines() if line.startswith("catal: ")}  # the job's log comes twice
    assert failures == {
        "catal: campaign failed: a DFT worker asks 64 CPUs on one node; this cluster has 1 node, 2 CPUs, "
        "no GPU; largest node 2 CPUs"
    }, output[-3000:]
    assert elapsed < 30, f"{elapsed:.0f} s"


def test_ray_job_stop_then_resume(ray_head, tmp_path, tiny_references):
    """`ray job stop` sends the driver SIGTERM: state saved, MLflow runs KILLED; `catal resume`
    then finishes the campaign with no stored label redone."""
    ray_cli, env, address = ray_head
    out = tmp_path / "tiny"
    install_references(tiny_references, out)  # round 0 starts at its labels
    submit = _submit(ray_head, out, "--no-wait", "--submission-id", f"catal-stop-{os.getpid()}")
    assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
    job = f"catal-stop-{os.getpid()}"
    deadline = time.time() + 300
    while time.time() < deadline:  # stop it in round 1, once labels are stored
        try:
            state = json.loads((out / "state.json").read_text())
        except (OSError, ValueError):
            state = {}
        if state.get("round", 0) >= 1:
            break
        time.sleep(0.2)
    assert state.get("round", 0) >= 1 and not state.get("finished"), state
    stop = subprocess.run([ray_cli, "job", "stop", "--address", address, job], env=env, capture_output=True, text=True)
    assert stop.returncode == 0, stop.stderr
    logs = subprocess.run([ray_cli, "job", "logs", "--address", address, job], env=env, capture_output=True, text=True)
    assert "terminated (SIGTERM)" in logs.stdout, logs.stdout[-3000:]
    parents, _ = mlflow_runs(out)
    assert parents[0].info.status == "KILLED"
    before = label_keys(out)

    resumed = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "resume", str(out)], env=helpers.env(), capture_output=True,
        text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = label_keys(out)
    assert len(after) == len(set(after)) and set(before) <= set(after)
    parents, _ = mlflow_runs(out)
    assert parents[0].info.status == "FINISHED"
