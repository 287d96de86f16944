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


def child_handle(parent: str, kind: str, rnd: int) -> str:
    """The name of ``parent``'s child run ``kind`` ``rnd``, the same every time it is asked:
    a campaign stopped after creating the run but before storing its name creates it again
    under this name on resume and so reuses it (a second, forever-running child is never made)."""
    return f"{HANDLE_PREFIX}{parent.removeprefix(HANDLE_PREFIX)}-{kind}-{rnd:03d}"


class Outbox:
    """Records ``(seq, op, args)`` in the order they were put; ``path`` None: in memory."""

    def __init__(self, path: Path | None):
        self.path = path
        self.damaged = ""  # why a damaged file was set aside (a new outbox began)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = self._open()
        except sqlite3.DatabaseError as err:  # not a database, malformed: observer data, set aside
            if type(err) is not sqlite3.DatabaseError or path is None:
                raise
            aside = path.with_name(path.name + ".damaged")
            path.replace(aside)
            self.damaged = f"{path.name} was damaged ({err}): kept as {aside.name}, its unsent records lost"
            self.db = self._open()

    def _open(self) -> sqlite3.Connection:
        # autocommit: each record is durable the moment ``put`` returns
        db = sqlite3.connect(str(self.path) if self.path else ":memory:", isolation_level=None)
        db.execute("CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, op TEXT, args TEXT)")
        db.execute("CREATE TABLE IF NOT EXISTS names (handle TEXT PRIMARY KEY, value TEXT)")
        db.execute("SELECT COUNT(*) FROM records").fetchone()
        return db

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
