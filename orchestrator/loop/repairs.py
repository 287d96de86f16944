"""What a resumed campaign rebuilds when a file it needs was damaged outside catal (a failing
disk, a stray edit; catal writes every file whole): set aside as ``<name>.damaged`` and made
again from what is stored, a round's model trained again on its labels, a seed's DFT minimum
and Hessian computed again (and charged)."""

from __future__ import annotations

from orchestrator.references import seed_normal_modes
from orchestrator.session import Session
from workers.errors import DamagedFile
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


def restore_references(s: Session) -> None:
    """The seeds' references missing after round 0 (set aside as damaged) computed again."""
    paths = s.reference_paths()
    if any(not p.exists() for p in paths):
        with s.rt.dft_pool() as pool:
            seed_normal_modes(s.cfg, paths, s.seeds, pool, s.ledger, s.say)
