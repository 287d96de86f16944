"""SIGTERM while the driver blocks in Ray: Ray re-raises the handler's ``Terminated`` as a
plain KeyboardInterrupt, and the CLI must still exit 143 (stopped), not 130 (Ctrl-C)."""

import os
import signal
import threading
import time

import pytest

from orchestrator import cli
from orchestrator.config import load_config
from tests.integration.helpers import TINY

pytestmark = pytest.mark.integration


def test_sigterm_inside_ray_get_exits_143(ray_local, tmp_path, monkeypatch):
    @ray_local.remote
    def sleep_s(seconds: float) -> None:
        time.sleep(seconds)

    class BlockedInRay:  # a campaign stand-in that waits on Ray when the signal lands
        def __init__(self, cfg):
            pass

        def run(self, resume: bool):
            ray_local.get(sleep_s.remote(30))

    monkeypatch.setattr("orchestrator.campaign.Campaign", BlockedInRay)
    cfg = load_config(TINY, [f"out_dir={tmp_path / 'out'}"])
    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    t0 = time.perf_counter()
    try:
        code = cli._run(cfg, resume=False)
    finally:
        timer.cancel()
    assert code == 143
    assert time.perf_counter() - t0 < 20  # stopped by the signal, not by the task's end
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back
