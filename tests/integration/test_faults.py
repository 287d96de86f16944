"""The faults that end real campaigns, injected into real ones: the MLflow server stopped
mid-campaign (and started again later), PostgreSQL restarted while labels arrive, the output
disk full (a small tmpfs), and a campaign directory's files damaged before a resume."""

from __future__ import annotations

import re
import shutil
import signal
import sqlite3
import subprocess
import time

import numpy as np
import pytest
from mlflow import MlflowClient

from orchestrator.records.store import LabelStore
from orchestrator.references import install_references
from tests.integration.helpers import TINY, catal_cmd, env, label_keys, run_catal, wait_for_state
from tests.integration.servers import start_mlflow_server, start_postgres
from workers.errors import CampaignFailed

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# the tiny campaign's labels: 8 initial + 3 hold-out, then 2 rounds of 2 picks + 1 audit frame
TINY_LABELS = 8 + 3 + 2 * 3


def _start(out, *sets: str) -> subprocess.Popen:
    args = ["run", str(TINY), "--set", f"out_dir={out}"]
    for s in sets:
        args += ["--set", s]
    return subprocess.Popen(
        catal_cmd(*args), env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )  # fmt: skip


def _after_round_1(state: dict) -> bool:
    return len(state.get("history", [])) >= 1


def _tracked(url: str) -> tuple:
    """``(parent, rounds)`` runs of the tiny campaign on the MLflow server at ``url``."""
    client = MlflowClient(url)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    parents = [r for r in runs if r.data.tags.get("catal.kind") == "campaign"]
    rounds = [r for r in runs if r.data.tags.get("catal.kind") == "round"]
    rounds.sort(key=lambda r: r.data.tags["catal.round"])
    assert len(parents) == 1
    return client, parents[0], rounds


def _catal_lines(stderr: str) -> list[str]:
    """catal's own lines (Ray adds a token-authentication warning of its own)."""
    return [line for line in stderr.splitlines() if line.startswith("catal:")]


def _no_traceback(*texts: str) -> None:
    assert not any("Traceback" in t for t in texts), texts


def test_tracking_server_away_from_round_1_until_after_the_campaign(tmp_path, tiny_references):
    url, server = start_mlflow_server(tmp_path / "mlflow")
    out = tmp_path / "tiny"
    install_references(tiny_references, out)
    proc = _start(out, f"tracking.uri={url}")
    try:
        wait_for_state(proc, out, _after_round_1)
        server.terminate()  # gone from round 1's end until after the campaign
        server.wait(timeout=30)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    _no_traceback(stdout, stderr)
    said = " ".join(stdout.split())  # the console wraps at 80 columns in a pipe
    assert said.count("unreachable") == 1  # one line when it goes, not one per record
    assert "records wait in" in said and f"`catal resume {out}` sends them" in said
    assert (out / "model.pt").exists() and len(set(label_keys(out))) == TINY_LABELS

    port = int(url.rsplit(":", 1)[1])
    url, server = start_mlflow_server(tmp_path / "mlflow", port)  # back, where the campaign looks
    try:
        resumed = run_catal("resume", str(out))
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        said = " ".join(resumed.stdout.split())
        assert re.search(r"took the \d+ records an earlier session had queued", said) and "already finished" in said
        client, parent, rounds = _tracked(url)
        assert parent.info.status == "FINISHED"
        assert [r.data.tags["catal.round"] for r in rounds] == ["1", "2"]
        assert all(r.info.status == "FINISHED" and "holdout_force_mae" in r.data.metrics for r in rounds)
        assert [m.step for m in client.get_metric_history(parent.info.run_id, "holdout_force_mae")] == [1, 2]
        assert "final_holdout_force_mae" in parent.data.metrics
        assert {"model", "learning_curve.png"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
        again = run_catal("resume", str(out))  # nothing left to send: nothing sent twice
        assert "took the" not in again.stdout
        _, parent2, rounds2 = _tracked(url)
        as_text = lambda run: {k: repr(v) for k, v in run.data.metrics.items()}  # noqa: E731 - NaN == NaN here
        assert len(rounds2) == 2 and as_text(parent2) == as_text(parent)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_sigterm_while_tracking_is_away_stops_at_once_and_resume_finishes(tmp_path, tiny_references):
    url, server = start_mlflow_server(tmp_path / "mlflow")
    port = int(url.rsplit(":", 1)[1])
    out = tmp_path / "tiny"
    install_references(tiny_references, out)
    proc = _start(out, f"tracking.uri={url}")
    try:
        wait_for_state(proc, out, _after_round_1)
        server.terminate()
        server.wait(timeout=30)
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)  # `ray job stop` sends SIGKILL 3 s later
        t0 = time.time()
        stdout, stderr = proc.communicate(timeout=120)
        took = time.time() - t0
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr[-3000:]
    print(f"SIGTERM to exit with the tracking server away: {took:.1f} s")
    assert took < 15, f"{took:.0f} s from SIGTERM to exit"  # was: minutes in MLflow's HTTP retries
    _no_traceback(stdout, stderr)

    url, server = start_mlflow_server(tmp_path / "mlflow", port)
    try:
        resumed = run_catal("resume", str(out))
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        _, parent, rounds = _tracked(url)
        assert parent.info.status == "FINISHED"
        assert [r.data.tags["catal.round"] for r in rounds] == ["1", "2"]
        assert all("holdout_force_mae" in r.data.metrics for r in rounds)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_postgresql_restarted_while_labels_arrive(tmp_path, tiny_references):
    from orchestrator.records.state import load_state

    pg = start_postgres()
    out = tmp_path / "tiny"
    install_references(tiny_references, out)
    proc = _start(out, f"store.url={pg.url}")
    try:
        watch = LabelStore(pg.url, campaign="tiny")
        deadline = time.time() + 300
        while len(watch) < 3 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        watch.close()
        assert proc.poll() is None, "the campaign ended before the restart"
        pg.restart()  # every connection cut while round 0's labels arrive
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
        assert "stopped answering" in stderr and "answers again" in stderr
        _no_traceback(stdout, stderr)
        labels = LabelStore(pg.url, campaign="tiny").labels()
        keys = [s.key for s in labels]
        assert len(keys) == len(set(keys)) == TINY_LABELS  # each label stored once, none lost
        charged = sum(s.charged for s in labels)
        assert charged == load_state(out).round_info["labels_total"] == TINY_LABELS  # the budget exact
    finally:
        proc.kill()
        pg.stop()


def test_labels_a_store_away_too_long_did_not_take_are_written_when_it_returns(tmp_path):
    """Beyond ``store.reconnect_s``: one line, the label kept in the local spool, written on
    the store's next open (once), never lost and never to be recomputed."""
    from ase.build import molecule

    from workers.dft import LabelResult, Status

    pg = start_postgres()
    spool = tmp_path / "labels_spool.db"
    try:
        store = LabelStore(pg.url, campaign="c", spool=spool, reconnect_s=1.0)
        ok = LabelResult(Status.OK, energy_ev=-1.0, forces_ev_a=np.zeros((3, 3)))
        water = molecule("H2O")
        store.put("k1", water, ok, 0, "seed", charged=True)
        pg.down()
        moved = water.copy()
        moved.positions[0, 0] += 0.1
        with pytest.raises(CampaignFailed, match="did not answer for 1 s.*1 labels it did not take wait in"):
            store.put("k2", moved, ok, 0, "seed", charged=True)
        assert spool.exists()
        pg.up()
        back = LabelStore(pg.url, campaign="c", spool=spool)
        assert [s.key for s in back.labels()] == ["k1", "k2"] and not spool.exists()
        assert [s.charged for s in back.labels()] == [True, True]
        assert len(LabelStore(pg.url, campaign="c", spool=spool)) == 2  # written once
    finally:
        pg.stop()


@pytest.mark.parametrize(
    "tracking, size",
    [("local", "1800k"), ("server", "700k")],  # MLflow's SQLite file on the full disk too, or on a server
)
def test_a_full_disk_stops_with_one_line_and_resume_elsewhere_finishes(tmp_path, tiny_references, tracking, size):
    small = tmp_path / "small"
    small.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(small)],
                           capture_output=True, text=True)  # fmt: skip
    if mount.returncode:
        pytest.fail(f"cannot mount a small tmpfs for the disk-full case (needs root): {mount.stderr.strip()}")
    url, server = start_mlflow_server(tmp_path / "mlflow") if tracking == "server" else (None, None)
    sets = ["--set", f"tracking.uri={url}"] if url else []
    try:
        out = small / "tiny"
        install_references(tiny_references, out)
        run = run_catal("run", str(TINY), "--set", f"out_dir={out}", *sets)
        assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
        lines = _catal_lines(run.stderr)
        assert len(lines) == 1 and "no space left" in lines[0] and "catal resume" in lines[0], lines
        _no_traceback(run.stdout, run.stderr)
        db = sqlite3.connect(out / "labels.db")
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
        assert not list(out.rglob("*.tmp")), "a half-written file was left"
        if url:
            assert _tracked(url)[1].info.status == "FAILED"  # the server was reachable
        before = label_keys(out)
        elsewhere = tmp_path / "elsewhere"
        shutil.copytree(out, elsewhere)
        subprocess.run(["umount", "--lazy", str(small)], check=True)  # a Ray process may still hold it
        resumed = run_catal("resume", str(elsewhere))
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        after = label_keys(elsewhere)
        assert len(after) == len(set(after)) == TINY_LABELS and set(before) <= set(after)
        if url:
            assert _tracked(url)[1].info.status == "FINISHED"
    finally:
        subprocess.run(["umount", "--lazy", str(small)], capture_output=True, check=False)
        if server is not None:
            server.terminate()
            server.wait(timeout=30)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, tiny_references):
    """A tiny campaign killed (SIGKILL) in round 2, its picks chosen, their DFT under way."""
    out = tmp_path_factory.mktemp("interrupted") / "tiny"
    install_references(tiny_references, out)
    proc = _start(out)
    try:
        wait_for_state(proc, out, lambda st: st.get("round") == 2 and st.get("phase") == "selected")
    finally:
        proc.kill()
        proc.wait()
    assert (out / "checkpoints" / "round_002.pt").exists()
    return out


def _copy(interrupted, tmp_path):
    dest = tmp_path / "tiny"
    shutil.copytree(interrupted, dest)
    return dest


def _cut(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize(
    "damage, says",
    [
        ("state.json", "state.json is damaged"),
        ("checkpoints/round_002.pt", "round_002.pt is damaged"),
        ("harmonic/seed_000.npz", "seed_000.npz is damaged"),
        ("rounds/round_002/picks.extxyz", "picks.extxyz of round 2 is damaged"),
    ],
)
def test_a_damaged_file_is_rebuilt_and_the_resume_completes(interrupted, tmp_path, damage, says):
    out = _copy(interrupted, tmp_path)
    before = label_keys(out)
    _cut(out / damage)
    resumed = run_catal("resume", str(out))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert says in resumed.stdout
    _no_traceback(resumed.stdout, resumed.stderr)
    after = label_keys(out)
    assert len(after) == len(set(after)) == TINY_LABELS and set(before) <= set(after)


@pytest.mark.parametrize("damage", ["state.json+bak", "config.yaml", "labels.db"])
def test_a_damaged_file_that_cannot_be_rebuilt_is_one_line(interrupted, tmp_path, damage):
    out = _copy(interrupted, tmp_path)
    if damage == "state.json+bak":
        (out / "state.json").write_text('{"round": 2, "pha')
        (out / "state.json.bak").write_bytes(b"\x00" * 64)
        name = "state.json"
    elif damage == "config.yaml":
        _cut(out / "config.yaml", 0.6)
        name = "config.yaml"
    else:
        (out / "labels.db").write_bytes(b"not a database" * 100)
        name = "labels.db"
    for command in ("resume", "status"):
        run = run_catal(command, str(out))
        lines = _catal_lines(run.stderr)
        assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
        assert len(lines) == 1 and name in lines[0] and "damaged" in lines[0], lines
        _no_traceback(run.stdout, run.stderr)
