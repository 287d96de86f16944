"""One driver per output directory: an exclusive ``flock`` on ``<out_dir>/.catal.lock``.

The operating system releases the lock when its holder dies, however it dies (SIGKILL, a
lost node), so a crashed driver never blocks ``catal resume``; a second live driver is
refused with one line naming the holder's host and pid.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from workers.errors import CatalError

LOCK_NAME = ".catal.lock"


class CampaignBusy(CatalError):
    """Another live driver holds the campaign's output directory."""


class CampaignLock:
    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / LOCK_NAME
        self.fd: int | None = None

    def holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> CampaignLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            h = self.holder()
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h["since"])) if "since" in h else "?"
            raise CampaignBusy(
                f"{self.path.parent} is in use by another catal driver (host {h.get('host', '?')}, "
                f"pid {h.get('pid', '?')}, since {since}); stop it first, or wait for it to finish"
            ) from None
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> CampaignLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
