"""The label store's connection to its database: one for the store's life, committed writes,
and a server that goes away (restart, network blip) reconnected to with back-off.

Labels written but not committed when the connection breaks are written again on the new
one (those a commit had already landed are not); labels the server has not taken after
``reconnect_s`` wait in a local SQLite spool, written on the store's next open. A SQLite file
that fills its disk says so (``OutOfSpace``); SQLite has rolled the transaction back.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

import ase.db
from ase import Atoms

from workers.errors import CampaignFailed, DamagedFile, OutOfSpace, first_line


class Link:
    def __init__(self, db, url: str, scope: dict, spool: Path | None, reconnect_s: float):
        self.db, self.url, self.scope = db, url, scope
        self.spool, self.reconnect_s = spool, reconnect_s
        self.unsaved: list[tuple[Atoms, dict]] = []  # written, not committed: redone after a reconnect
        self.written = 0  # how many of ``unsaved`` the open transaction holds
        self.check_server = False  # after a reconnect: a commit may have landed before it broke
        self.lost = self._lost_errors()

    @property
    def where(self) -> str:
        """The store as a user names it (a server without its password)."""
        return self.url.split("@")[-1]

    def _lost_errors(self) -> tuple[type[Exception], ...]:
        """The errors that mean the database server went away (none for a SQLite file)."""
        if not self.url.startswith(("postgresql://", "postgres://")):
            return ()
        import psycopg2

        return (psycopg2.OperationalError, psycopg2.InterfaceError)

    def retry(self, fn):
        """``fn()``, reconnecting (backing off, for ``reconnect_s``) while the server is away."""
        deadline, wait = None, 0.5
        while True:
            try:
                out = fn()
                if deadline is not None:
                    print(f"catal: label store {self.where} answers again", file=sys.stderr)
                return out
            except sqlite3.DatabaseError as err:
                if type(err) is not sqlite3.DatabaseError:  # locked, full...: its own message
                    raise
                # "file is not a database", "database disk image is malformed"
                fix = "restore it from a copy; `sqlite3 FILE .recover` may save its rows"
                raise DamagedFile(self.url, first_line(err), fix) from None
            except self.lost as err:
                if deadline is None:
                    deadline = time.monotonic() + self.reconnect_s
                    print(f"catal: label store {self.where} stopped answering ({first_line(err)}); "
                          f"reconnecting for up to {self.reconnect_s:.0f} s", file=sys.stderr)  # fmt: skip
                self._drop()
                if time.monotonic() > deadline:
                    self._give_up(err)
                time.sleep(wait)
                wait = min(2 * wait, 10.0)

    def write(self, atoms: Atoms, kvp: dict, commit: bool) -> None:
        self.unsaved.append((atoms, kvp))
        self.retry(lambda: self._sync(commit))

    def commit(self) -> None:
        if self.unsaved:
            self.retry(lambda: self._sync(commit=True))

    def _connection(self):
        """One connection for the store's life (ase.db's ``with db:``), so a write does not
        open, check the schema of and close a database each time."""
        if self.db.connection is None:
            self.db.__enter__()
        return self.db.connection

    def _sync(self, commit: bool) -> None:
        """Write what the open transaction lacks of ``unsaved``; ``commit``: make it durable."""
        con = self._connection()
        if self.check_server:  # a commit that reached the server before it broke is not redone
            self.unsaved = [(a, kvp) for a, kvp in self.unsaved if not self._on_server(kvp["content_key"])]
            self.check_server = False
        try:
            for atoms, kvp in self.unsaved[self.written :]:
                self.db.write(atoms, key_value_pairs=kvp)
                self.written += 1
            if commit:
                con.commit()  # durable now (ase.db would commit every 5000 writes)
                self.unsaved.clear()
                self.written = 0
        except sqlite3.OperationalError as err:
            if "full" in str(err):  # "database or disk is full": SQLite rolled the transaction back
                raise OutOfSpace(self.url) from err
            raise

    def _on_server(self, key: str) -> bool:
        rows = self.db.select(content_key=key, limit=1, columns=["id"], include_data=False, **self.scope)
        return bool(list(rows))

    def _drop(self) -> None:
        con, self.db.connection = self.db.connection, None
        if con is not None:
            with contextlib.suppress(*self.lost):
                con.close()
        self.written, self.check_server = 0, True  # the open transaction is gone

    def _give_up(self, err: Exception) -> None:
        kept = ""
        if self.unsaved and self.spool is not None:
            spool = ase.db.connect(str(self.spool), append=True)
            with spool:
                for atoms, kvp in self.unsaved:
                    spool.write(atoms, key_value_pairs=kvp)
            kept = f"; the {len(self.unsaved)} labels it did not take wait in {self.spool} (written when it answers)"
            self.unsaved.clear()
        raise CampaignFailed(
            f"label store {self.where} did not answer for {self.reconnect_s:.0f} s ({first_line(err)}){kept}; "
            "continue with: catal resume <out_dir>"
        ) from err

    def drain(self, stored_keys: Callable[[], set[str]]) -> int:
        """Write the labels an earlier session left in the spool (those whose key is not in
        ``stored_keys()``), then remove it; returns how many were written."""
        if self.spool is None or not self.spool.exists():
            return 0
        stored = stored_keys()
        rows = [r for r in ase.db.connect(str(self.spool)).select() if r.key_value_pairs["content_key"] not in stored]
        self.unsaved += [(r.toatoms(), dict(r.key_value_pairs)) for r in rows]
        self.commit()
        self.spool.unlink()
        return len(rows)

    def close(self) -> None:
        if self.db.connection is not None:
            self.db.__exit__(None, None, None)
