"""`ray job submit --working-dir .` against a `ray start --head` cluster on 127.0.0.1."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration import helpers
from tests.integration.helpers import REPO, TINY, mlflow_runs

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_campaign_submitted_as_a_ray_job(tmp_path):
    bin_dir = Path(sys.executable).parent
    ray_cli = shutil.which("ray", path=str(bin_dir)) or shutil.which("ray")
    env = dict(helpers.env(), RAY_AUTH_MODE="token", PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    gcs, dash = _free_port(), _free_port()
    head = subprocess.Popen(
        [
            ray_cli, "start", "--head", "--block", "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1", f"--port={gcs}", f"--dashboard-port={dash}",
            "--num-cpus=4", "--include-dashboard=true", "--disable-usage-stats",
            # fixed default ports (agent 52365, ...) may be held by the session's local Ray
            f"--dashboard-agent-listen-port={_free_port()}", f"--metrics-export-port={_free_port()}",
            f"--runtime-env-agent-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
        ],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    out = tmp_path / "tiny"
    try:
        address = f"http://127.0.0.1:{dash}"
        for _ in range(120):  # wait for the job server
            ok = subprocess.run([ray_cli, "job", "list", "--address", address], env=env, capture_output=True)
            if ok.returncode == 0:
                break
            time.sleep(1)
        cmd = [
            ray_cli, "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
            "python", "-m", "orchestrator.cli", "run", str(TINY),
            "--set", f"out_dir={out}", "--set", "ray.address=auto",
        ]  # fmt: skip
        for _ in range(30):  # the head's job agent may come up after its job server
            submit = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
            if "No available agent" not in submit.stdout + submit.stderr:
                break
            time.sleep(2)
        assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
        assert "succeeded" in (submit.stdout + submit.stderr).lower()
        parents, children = mlflow_runs(out)
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        assert len(children) == 2
        assert (out / "model.pt").exists()
    finally:
        head.terminate()  # --block: stopping the head stops the cluster it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
