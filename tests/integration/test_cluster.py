"""A real multi-node Ray cluster brought up by Ray's launcher (`deploy/local-cluster.sh`: `ray up`
with the local provider over SSH to nodes in network + PID namespaces), campaigns sent with
`ray submit`, and a node lost mid-campaign.

Needs root, iproute2, openssh-server and rsync (`.ci/run` installs them); without them the
tests fail with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration import helpers
from tests.integration.helpers import REPO, TINY

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SCRIPT = REPO / "deploy" / "local-cluster.sh"
HEAD = "10.77.0.10"


def _sh(*args: str, env: dict, timeout: int = 600, check: bool = True) -> subprocess.CompletedProcess:
    run = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert run.returncode == 0, f"{args}: rc {run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = [t for t in ("ip", "sshd", "rsync", "ssh", "unshare") if not shutil.which(t, path="/usr/sbin:/usr/bin")]
    if os.geteuid() != 0 or missing:
        pytest.fail(
            f"a multi-node cluster here needs root and {missing}: apt-get install iproute2 openssh-server rsync"
        )
    state = tmp_path_factory.mktemp("cluster")
    env = dict(
        helpers.env(),
        CATAL_CLUSTER_DIR=str(state / "state"),
        CATAL_VENV=str(Path(sys.executable).parent.parent),
    )
    _sh("down", env=env, check=False)  # a cluster an earlier, killed run left behind
    try:
        _sh("up", env=env)
        yield env
    finally:
        _sh("down", env=env, check=False, timeout=300)


def _state(out: Path) -> dict:
    try:
        return json.loads((out / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def _ray(env: dict, *args: str) -> list:
    """`ray list ...` against the head's dashboard, as JSON."""
    ray_cli = str(Path(sys.executable).parent / "ray")
    run = subprocess.run(
        [ray_cli, "list", *args, "--address", f"http://{HEAD}:8265", "--format", "json", "--limit", "1000"],
        env=dict(env, RAY_AUTH_MODE="token"), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    text = run.stdout.strip()
    return json.loads(text) if run.returncode == 0 and text.startswith("[") else []  # else "No resource ..."


def _labels(out: Path) -> list:
    from orchestrator.records.store import LabelStore

    return LabelStore(out / "labels.db").labels() if (out / "labels.db").exists() else []


def test_up_status_submit_across_three_nodes(cluster, tmp_path):
    status = _sh("status", env=cluster)
    assert status.stdout.strip().splitlines()[-1] == "3", status.stdout  # head + 2 workers alive
    out = tmp_path / "tiny"
    submit = _sh("submit", str(TINY), "--set", f"out_dir={out}", "--set", "ray.dft_workers=4", env=cluster)
    assert _state(out).get("finished"), submit.stdout[-3000:]
    hosts = {s.host for s in _labels(out)}
    assert len(hosts) >= 2 and hosts <= {"catal-node1", "catal-node2"}, hosts  # DFT ran on both workers
    assert "per phase: DFT up to" in submit.stdout
    nodes = {a["node_id"] for a in _ray(cluster, "actors") if a["class_name"] in ("DFTWorker", "TrainerActor")}
    assert len(nodes) >= 2, nodes


def _kill_node_running(env: dict, class_name: str) -> str:
    """Kill the worker node that runs an alive ``class_name`` actor; returns its IP."""
    ips = {n["node_id"]: n["node_ip"] for n in _ray(env, "nodes")}
    actors = [a for a in _ray(env, "actors", "--filter", "state=ALIVE") if a["class_name"] == class_name]
    ip = ips[actors[0]["node_id"]]
    node = int(ip.rsplit(".", 1)[1]) - 10
    assert node >= 1, f"{class_name} on the head"
    _sh("kill-node", str(node), env=env)
    return ip


def test_losing_a_node_during_dft_and_during_training_keeps_the_campaign(cluster, tmp_path):
    """One worker node's Ray processes are SIGKILLed while DFT runs on it (round 0), then the
    node holding the trainer while it trains (round 1): DFT jobs move, the trainer is
    re-created elsewhere, the campaign finishes without `catal resume`, each label once."""
    out = tmp_path / "lost"
    sets = [
        "--set", f"out_dir={out}", "--set", "ray.dft_workers=4", "--set", "dft.basis=6-31g",
        "--set", "system.initial_labels=20", "--set", "budget.max_labels=40",  # round 0: 23 labels
        "--set", "training.epochs=400", "--set", "training.patience=400", "--set", "warm_start_epochs=40",
    ]  # fmt: skip
    cmd = ["bash", str(SCRIPT), "submit", str(TINY), *sets]
    proc = subprocess.Popen(cmd, env=cluster, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not _labels(out):  # round 0's DFT is under way
            time.sleep(0.2)
        _sh("kill-node", "2", env=cluster)  # 4 one-CPU DFT workers on 2 two-CPU workers: 2 are here
        killed_dft = "10.77.0.12"
        assert len(_labels(out)) < 23
        while time.time() < deadline:  # round 1's training (the first from scratch: 400 epochs)
            st = _state(out)
            training = st.get("round") == 1 and st.get("phase") == "start"
            alive = _ray(cluster, "actors", "--filter", "state=ALIVE") if training else []
            if any(a["class_name"] == "TrainerActor" for a in alive):
                break
            time.sleep(0.5)
        killed_trainer = _kill_node_running(cluster, "TrainerActor")
        stdout, _ = proc.communicate(timeout=900)
    finally:
        proc.kill()
    (tmp_path / "submit.log").write_text(stdout)
    assert proc.returncode == 0, stdout[-4000:]
    state = _state(out)
    assert state.get("finished"), stdout[-4000:]
    said = " ".join(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stdout).split())  # rich wraps and colours lines
    assert "DFT jobs moved off lost workers" in said and "the trainer lost" in said, said[-4000:]
    labels = _labels(out)
    keys = [s.key for s in labels]
    assert len(keys) == len(set(keys))  # stored once
    charged = [s for s in labels if s.charged]
    assert len(charged) == state["round_info"]["labels_total"] <= 40  # ledger = stored charges <= max_labels
    print(f"killed DFT node {killed_dft}, trainer node {killed_trainer}; {len(labels)} labels")
