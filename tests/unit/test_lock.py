"""One driver per output directory: the flock is exclusive, names its holder, and dies with it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.records.lock import LOCK_NAME, CampaignBusy, CampaignLock

HOLD = """
import sys, time
from pathlib import Path
from orchestrator.records.lock import CampaignLock
CampaignLock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_second_holder_is_refused_with_host_and_pid(tmp_path):
    with CampaignLock(tmp_path):
        with pytest.raises(CampaignBusy) as err:
            CampaignLock(tmp_path).acquire()  # a second open file: flock refuses it, same process or not
        message = str(err.value)
        assert "\n" not in message and f"pid {os.getpid()}" in message and socket.gethostname() in message
    CampaignLock(tmp_path).acquire().release()  # released on exit


def test_a_sigkilled_holder_never_blocks(tmp_path):
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": repo}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CampaignBusy, match=f"pid {holder.pid}"):
            CampaignLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / LOCK_NAME).exists()  # the file stays; the OS dropped the lock with the process
    t0 = time.perf_counter()
    lock = CampaignLock(tmp_path).acquire()
    assert time.perf_counter() - t0 < 1.0
    assert f'"pid": {os.getpid()}' in (tmp_path / LOCK_NAME).read_text()
    lock.release()
