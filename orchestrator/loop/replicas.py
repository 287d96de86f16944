"""Persistent MD replicas of an asynchronous campaign: where each replica's next run starts
(pure; ``campaign.persistent_replicas``).

Samplers keep exploring: a share of the replicas continues its own trajectory with each new
model (the last frame of its previous run), so slow motions such as torsions move on from
one generation to the next; the rest restart from the MD picks the model trained on, as a
round's MD does.
"""

from __future__ import annotations

import math

from ase import Atoms

from workers.sampling import last_frames


def persistent(replica: int, share: float) -> bool:
    """Whether ``replica`` continues its trajectory: a share ``share`` of them, spread evenly."""
    return math.floor((replica + 1) * share) > math.floor(replica * share)


def replica_starts(walkers: dict[int, Atoms], starts: list, replicas: int, share: float) -> list:
    """One start per replica: a share ``share`` of them (spread evenly) persistent, from
    where their last run ended (``walkers``: replica -> structure); the others, and
    persistent ones with no run behind them, take ``starts`` in turn (each once before any
    twice)."""
    out, k = [], 0
    for r in range(replicas):
        if persistent(r, share) and r in walkers:
            out.append(walkers[r])
        else:
            out.append(starts[k % len(starts)])
            k += 1
    return out


def walkers_after(walkers: dict[int, Atoms], frames: list) -> dict[int, Atoms]:
    """``walkers`` updated by an MD run's frames: each replica's last frame (positions only),
    or none for a replica a stop rule ended (it starts again from the picks)."""
    stopped = {f.info["replica"] for f in frames if f.info["stop_reason"]}
    out = dict(walkers)
    for r, f in last_frames(frames).items():
        if r in stopped:
            out.pop(r, None)
        else:
            out[r] = Atoms(numbers=f.numbers, positions=f.positions, cell=f.cell, pbc=f.pbc)
    return out
