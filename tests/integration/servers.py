"""Real servers for tests, started on 127.0.0.1 from Debian's and PyPI's packages: PostgreSQL
(``initdb`` + ``pg_ctl`` in a temporary directory, run as the ``postgres`` user) and an MLflow
tracking server (SQLite backend, artifacts served over HTTP). A server that cannot start fails
the test with the reason."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(*cmd: str, **kw) -> subprocess.CompletedProcess:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=120, **kw)


@dataclass
class Postgres:
    url: str  # postgresql://catal@127.0.0.1:PORT/labels
    stop: Callable[[], None]  # stopped, its directory removed
    down: Callable[[], None]  # stopped (every connection cut), its data kept
    up: Callable[[], None]  # started again on the same port

    def restart(self) -> None:
        self.down()
        self.up()


def start_postgres() -> Postgres:
    """A fresh PostgreSQL server on 127.0.0.1 with a database ``labels``, in a directory of
    its own that the ``postgres`` user owns."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.fail("PostgreSQL is not installed (apt-get install -y postgresql; .ci/run does this)")
    bindir = Path(bins[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="catal-pg-"))
    data = root / "pgdata"
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(root, "postgres")
    port = free_port()
    init = _as_postgres(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "catal")
    if init.returncode:
        pytest.fail(f"initdb failed: {init.stderr[-2000:]}")
    pg_ctl = str(bindir / "pg_ctl")
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"

    def up():
        start = _as_postgres(pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start")
        if start.returncode:
            pytest.fail(f"PostgreSQL did not start: {start.stderr[-2000:]} {(root / 'log').read_text()[-2000:]}")

    def down():
        _as_postgres(pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop")

    up()
    made = _as_postgres(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "catal", "labels")
    if made.returncode:
        pytest.fail(f"createdb failed: {made.stderr[-2000:]}")

    def stop():
        down()
        shutil.rmtree(root, ignore_errors=True)

    return Postgres(f"postgresql://catal@127.0.0.1:{port}/labels", stop, down, up)


def start_mlflow_server(root: Path, port: int | None = None):
    """``(url, process)`` of ``mlflow server`` on 127.0.0.1: SQLite backend, served artifacts
    (``port``: a given one, e.g. to start a stopped server again where its clients look)."""
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    mlflow_cli = str(Path(sys.executable).parent / "mlflow")
    with open(root / "server.log", "a") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [
                mlflow_cli, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                "--artifacts-destination", str(root / "artifacts"), "--serve-artifacts",
            ],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return url, proc
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    proc.kill()
    pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
