"""The label store: an ASE database (SQLite file, or a PostgreSQL server on clusters).

Each label is written the moment it arrives. Rows carry key-value pairs:
``content_key`` (hash of numbers, positions rounded to 1e-5 Å, cell, pbc and the DFT
settings), ``al_round``, ``origin`` (seed / md / audit / probe / holdout), ``status``, ``reason``,
``wall_s``, ``cost_s``, ``rung``, ``charged``. A structure already in the store is never
labelled again; the budget ledger is rebuilt from the ``charged`` rows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import ase.db
import numpy as np
from ase import Atoms

from orchestrator.records.connection import Link
from workers.dft import DFTConfig, LabelResult, Status, structure_settings
from workers.files import write_frames


def content_key(atoms: Atoms, dft: DFTConfig) -> str:
    """Stable hash of what determines a label: structure (to 1e-5 Å) + DFT settings (with
    the charge and spin the structure carries, ``structure_settings``)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(atoms.numbers, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(np.rint(atoms.positions * 1e5), dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(np.rint(atoms.cell.array * 1e5), dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(atoms.pbc, dtype=np.int8).tobytes())
    h.update(json.dumps(structure_settings(atoms, dft).settings_key(), sort_keys=True).encode())
    return h.hexdigest()[:32]


@dataclass
class StoredLabel:
    id: int  # the row's id (0 in what ``put`` returns: a row a reconnect rewrote has another)
    key: str
    atoms: Atoms  # carries energy/forces as a SinglePointCalculator when status is ok
    status: Status
    reason: str
    round: int
    origin: str
    charged: bool
    cost_s: float
    wall_s: float
    rung: str
    host: str = ""  # the machine that computed the label ("" for labels stored before hosts were)


class LabelStore:
    """Durable labels in ``ase.db``; ``url`` is a file path or ``postgresql://...``."""

    def __init__(self, url: str | Path, campaign: str | None = None, spool: Path | None = None,
                 reconnect_s: float = 120.0):  # fmt: skip
        """``campaign``: tag every row with it and see only its rows (a database server that
        several campaigns share); None for a campaign's own SQLite file. A server store
        reconnects for ``reconnect_s`` when it stops answering; labels it has not taken by
        then are kept in ``spool`` (a local SQLite file) and written on the next open."""
        url = str(url)
        if "://" not in url:
            Path(url).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.scope = {"campaign": campaign} if campaign else {}
        self.db = ase.db.connect(url, append=True)
        self.link = Link(self.db, url, self.scope, spool, reconnect_s)
        self._keys: set[str] | None = None  # content keys stored, read once (see ``has``)
        if self.link.drain(self.keys):
            self._keys = None  # read again, with them

    def close(self) -> None:
        self.link.close()

    def has(self, key: str) -> bool:
        """Whether ``key`` is stored: a set read once (keys only), then kept by ``put`` (one
        driver writes a campaign's labels: the campaign lock)."""
        if self._keys is None:
            rows = self.link.retry(
                lambda: list(self.db.select(columns=["id", "key_value_pairs"], include_data=False, **self.scope))
            )
            self._keys = {r.key_value_pairs["content_key"] for r in rows}
        return key in self._keys

    def keys(self) -> set[str]:
        """Every stored content key (a copy)."""
        self.has("")
        return set(self._keys)

    def __len__(self) -> int:
        return self.link.retry(lambda: self.db.count(**self.scope))

    def get(self, key: str) -> StoredLabel | None:
        rows = self.link.retry(lambda: list(self.db.select(content_key=key, limit=1, **self.scope)))
        return self._from_row(rows[0]) if rows else None

    def put(
        self,
        key: str,
        atoms: Atoms,
        result: LabelResult,
        rnd: int,
        origin: str,
        charged: bool,
        commit: bool = True,
    ) -> StoredLabel:
        """Write one label, committed before returning (``commit=False``: by the next
        ``commit()``, so that the labels of one batch share one fsync); returns it as stored."""
        a = atoms.copy()
        a.calc = result.calculator(a)
        kvp = {
            "content_key": key,
            "al_round": int(rnd),
            "origin": origin,
            "status": result.status.value,
            "reason": result.reason or "-",
            "wall_s": float(result.wall_s),
            "cost_s": float(result.cost_s),
            "rung": result.rung or "-",
            "scf_cycles": int(result.scf_cycles),
            "charged": bool(charged),
            "backend": result.backend,
            "pyscf_version": result.pyscf_version,
            **({} if result.code == "pyscf" else {"labeller": result.code}),
            "host": result.host or "-",
            **{k: atoms.info[k] for k in ("system",) if k in atoms.info},  # which system (orchestrator.systems)
            **self.scope,
        }
        self.link.write(a, kvp, commit)
        if self._keys is not None:
            self._keys.add(key)
        return self._from_kvp(0, a, kvp)

    def commit(self) -> None:
        """Make every ``put(..., commit=False)`` so far durable (one fsync)."""
        self.link.commit()

    def _from_row(self, row) -> StoredLabel:
        return self._from_kvp(row.id, row.toatoms(), row.key_value_pairs)

    @staticmethod
    def _from_kvp(row_id: int, atoms: Atoms, kv: dict) -> StoredLabel:
        if "system" in kv:  # the structure's system travels with it (MD starts, per-system figures)
            atoms.info["system"] = kv["system"]
        return StoredLabel(
            id=row_id,
            key=kv["content_key"],
            atoms=atoms,
            status=Status(kv["status"]),
            reason="" if kv.get("reason") == "-" else kv.get("reason", ""),
            round=int(kv["al_round"]),
            origin=kv["origin"],
            charged=bool(kv["charged"]),
            cost_s=float(kv["cost_s"]),
            wall_s=float(kv["wall_s"]),
            rung=kv.get("rung", ""),
            host="" if kv.get("host", "-") == "-" else kv["host"],
        )

    def labels(self, **filters) -> list[StoredLabel]:
        """All stored labels (matching ase.db key filters, e.g. ``origin="holdout"``), by id."""
        rows = self.link.retry(lambda: list(self.db.select(sort="id", **self.scope, **filters)))
        return [self._from_row(r) for r in rows]

    def training_structures(self, before_round: int | None = None, exclude: tuple[str, ...] = ()) -> list[Atoms]:
        """OK labels that are not hold-out (from rounds before ``before_round``; None: all),
        as labelled ``Atoms`` ordered by (round, content key): the same list whatever order
        the DFT pool finished them in, so an interrupted and an uninterrupted run, or two
        runs of one config, train alike. ``exclude``: origins left out as well."""
        labels = [s for s in self.labels(status="ok") if s.origin not in ("holdout", *exclude)]
        if before_round is not None:
            labels = [s for s in labels if s.round < before_round]
        return [s.atoms for s in sorted(labels, key=lambda s: (s.round, s.key))]

    def holdout_structures(self) -> list[Atoms]:
        return [s.atoms for s in self.labels(status="ok", origin="holdout")]

    def charges(self) -> list[tuple[int, float]]:
        """``[(round, cost_s)]`` of every charged label: the ledger's durable state."""
        return [(s.round, s.cost_s) for s in self.labels(charged=True)]

    def export_extxyz(self, path: str | Path, **filters) -> int:
        """Write labelled structures (energy, forces, metadata in ``info``) to extxyz."""
        frames = []
        for s in self.labels(**filters):
            if s.status is not Status.OK:
                continue
            a = s.atoms
            a.info.update({"content_key": s.key, "al_round": s.round, "origin": s.origin, "dft_wall_s": s.wall_s})
            frames.append(a)
        write_frames(path, frames)
        return len(frames)
