"""A durable, ordered queue of tracking records (``out_dir/tracking_outbox.db``, SQLite).

Every MLflow write is a record here first and leaves only once the tracking server took it,
so a campaign never waits on, fails with or loses data to an unreachable server: what it
could not send is sent, in order, when the server answers again (later in the run, or on
``catal resume``). Runs are named by local handles (``catal-<hex>``) that map to MLflow run
ids once created; a handle that never was one (a run id from an older campaign) maps to itself.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

from workers.errors import OutOfSpace

HANDLE_PREFIX = "catal-"


def new_handle() -> str:
    """A local name for a run not created yet (also tagged on it: ``catal.handle``)."""
    return HANDLE_PREFIX + uuid.uuid4().hex


class Outbox:
    """Records ``(seq, op, args)`` in the order they were put; ``path`` None: in memory."""

    def __init__(self, path: Path | None):
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit: each record is durable the moment ``put`` returns
        self.db = sqlite3.connect(str(path) if path else ":memory:", isolation_level=None)
        self.db.execute("CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, op TEXT, args TEXT)")
        self.db.execute("CREATE TABLE IF NOT EXISTS names (handle TEXT PRIMARY KEY, value TEXT)")

    def _write(self, sql: str, values: tuple) -> None:
        try:
            self.db.execute(sql, values)
        except sqlite3.OperationalError as err:
            if "full" in str(err):  # "database or disk is full"
                raise OutOfSpace(self.path) from err
            raise

    def put(self, op: str, **args) -> None:
        self._write("INSERT INTO records (op, args) VALUES (?, ?)", (op, json.dumps(args)))

    def pending(self) -> list[tuple[int, str, dict]]:
        rows = self.db.execute("SELECT seq, op, args FROM records ORDER BY seq").fetchall()
        return [(seq, op, json.loads(args)) for seq, op, args in rows]

    def done(self, seq: int) -> None:
        self._write("DELETE FROM records WHERE seq = ?", (seq,))

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM records").fetchone()[0]

    def name(self, handle: str, value: str) -> None:
        """``handle`` is ``value`` on the server (a run id, an experiment id)."""
        self._write("INSERT OR REPLACE INTO names (handle, value) VALUES (?, ?)", (handle, value))

    def resolve(self, handle: str) -> str | None:
        """The server's id for ``handle``: None while it is not created; a name that is no
        handle (an MLflow run id from before the outbox) is its own id."""
        row = self.db.execute("SELECT value FROM names WHERE handle = ?", (handle,)).fetchone()
        if row is not None:
            return row[0]
        return None if handle.startswith(HANDLE_PREFIX) else handle

    def close(self) -> None:
        self.db.close()
