"""What a resumed campaign rebuilds when a file it needs was damaged outside catal (a failing
disk, a stray edit; catal writes every file whole): set aside as ``<name>.damaged`` and made
again from what is stored, a round's model trained again on its labels, its picks selected
again, a seed's DFT minimum and Hessian computed again (and charged)."""

from __future__ import annotations

from ase.io import read

from orchestrator.references import seed_normal_modes
from orchestrator.session import Session
from workers.errors import DamagedFile, first_line
from workers.model.checkpoint import load_checkpoint


def round_model(s: Session, rnd: int):
    """``(model, checkpoint)`` of round ``rnd``; a damaged checkpoint is trained again."""
    path = s.run.checkpoint(rnd)
    try:
        return load_checkpoint(path)
    except DamagedFile as err:
        aside = s.run.set_aside(path)
        s.say.say(f"[yellow]{path.name} is damaged[/] ({err.reason}): kept as {aside.name}; training it again")
        s.train(rnd)
        return load_checkpoint(path)


# what ase's extxyz reader raises on a file cut short, by where the cut falls (every byte of a
# two-frame file tried: tests/unit/test_state.py): XYZError (an OSError), ValueError,
# AttributeError, and RuntimeError (a frame's lines ending early: StopIteration in its generator)
TRUNCATED = (OSError, ValueError, IndexError, KeyError, AttributeError, RuntimeError)


def frames_in(path) -> int:
    """How many frames the extxyz file ``path`` reads back (0 when empty); a file that does not
    read back raises one of ``TRUNCATED``."""
    return len(read(path, index=":", format="extxyz")) if path.stat().st_size else 0


def frames_intact(s: Session, rnd: int, info: dict) -> bool:
    """Whether round ``rnd``'s picks and audit files read back whole (as many frames as were
    written, where the state says); if not, they are set aside for the selection to be redone."""
    for path, key in ((s.run.picks(rnd), "n_picks"), (s.run.audit(rnd), "n_audits")):
        if not path.exists():
            if key == "n_audits" and not info.get(key):  # older campaigns wrote no audit file
                continue
            s.say.say(f"[yellow]{path.name} of round {rnd} is missing[/]: selecting again")
            return False
        try:
            n = frames_in(path)
            reason = f"{n} frames where {info[key]} were written" if key in info and n != info[key] else ""
        except TRUNCATED as err:
            reason = first_line(err)
        if reason:
            aside = s.run.set_aside(path)
            what = f"[yellow]{path.name} of round {rnd} is damaged[/] ({reason})"
            s.say.say(f"{what}: kept as {aside.name}; selecting again")
            return False
    return True


def restore_references(s: Session) -> None:
    """The seeds' references missing after round 0 (set aside as damaged) computed again."""
    paths = s.reference_paths()
    if any(not p.exists() for p in paths):
        with s.rt.dft_pool() as pool:
            seed_normal_modes(s.cfg, paths, s.seeds, pool, s.ledger, s.say)
