"""The asynchronous loop's actors, held at once: work started without waiting, results turned
into plain values or a ``Lost`` event, so the loop (``orchestrator.loop``) never touches Ray.

Locally the trainer and samplers were started with the DFT pool (``start_async_actors``) and
stay for the final model; on a cluster they are placed first, the pool sized to the CPUs
left, and released after.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import ray

from orchestrator.cluster.connect import first_line, kill_actors
from orchestrator.cluster.runtime import Runtime
from workers.actors import ready_now


@dataclass(frozen=True)
class Lost:
    """An actor died with its node before its result came back (the work is to be redone)."""

    reason: str  # the error's first line


class HeldActors:
    def __init__(self, rt: Runtime):
        self.rt = rt
        self.final = None  # ObjectRef of a final model training started early

    @property
    def trainer(self):
        return self.rt.trainer.actors

    @property
    def n_samplers(self) -> int:
        return len(self.rt.samplers.actors or [])

    # -- results as events -------------------------------------------------------------------
    def ready(self, refs: list) -> list:
        """Block until one of ``refs`` is done, then return every one done."""
        return ready_now(refs)

    def outcome(self, ref):
        """A finished ref's value, or ``Lost`` when its actor died (its node was lost)."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayActorError as err:
            return Lost(first_line(err))

    def share(self, payload: dict):
        """A model payload put in the object store once, for every sampler that runs on it."""
        return ray.put(payload)

    # -- training ----------------------------------------------------------------------------
    def start_training(self, job):
        """A training run (a ``TrainingJob``) started on the held trainer: its ref (``train``'s result)."""
        return self.trainer.train.remote(*self.rt.train_args(job))

    def start_final_training(self, job) -> None:
        """The final model started while the last labels are still in flight: they join it
        through ``feed_trainer``."""
        self.final = self.start_training(job)

    def final_training(self) -> dict | None:
        """The final model started by ``start_final_training`` (``train``'s result), or None
        (none started, or its trainer was lost: the caller trains it again)."""
        if self.final is None:
            return None
        ref, self.final = self.final, None
        try:
            out = self.outcome(ref)
            if isinstance(out, Lost):  # said here, replaced where it is trained again
                self._say_lost(out)
                self._drop_trainer()
                return None
            return out
        finally:
            if self.rt.per_phase:
                self._drop_trainer()

    def feed_trainer(self, structures: list) -> None:
        """New labels for the running training (taken in at its next epoch)."""
        if structures:
            self.trainer.add.remote(structures)

    def running_model(self, model: bool = True) -> tuple[dict | None, dict] | None:
        """``(model payload, epoch row)`` of the running training as of its last epoch, or
        None (none running, no epoch finished yet, or the trainer was lost: its training's
        ref says so, and it is replaced there); ``model`` False: the row only."""
        out = self.outcome(self.trainer.latest.remote(model))
        return None if isinstance(out, Lost) else out

    def stop_training(self) -> None:
        """The running training ends after its current epoch (its ref returns)."""
        self.trainer.stop.remote()

    def replace_lost(self, lost: Lost, sampler: int | None = None) -> None:
        """The trainer (or sampler ``sampler``) died with its node: said, and a new one put
        in its place (the caller redoes the work)."""
        self._say_lost(lost, sampler)
        if sampler is None:
            kill_actors(self.trainer)
            self.rt.trainer.actors = self.rt.new_trainer()
        else:
            kill_actors(self.rt.samplers.actors[sampler])
            self.rt.samplers.actors[sampler] = self.rt.new_samplers(1)[0]

    def _say_lost(self, lost: Lost, sampler: int | None = None) -> None:
        who, again = ("the trainer", "training again") if sampler is None else ("a sampler", "MD again")
        self.rt.say.say(f"  [yellow]{who} lost[/] ({lost.reason}); {again}")

    def _drop_trainer(self) -> None:
        kill_actors(self.rt.trainer.actors)
        self.rt.trainer.actors = None

    # -- MD ----------------------------------------------------------------------------------
    def start_md(self, index: int, payload_ref, starts: list, md_cfg, replica_offset: int):
        """MD started on sampler ``index`` with the model in ``payload_ref``: its ref (frames)."""
        sampler = self.rt.samplers.actors[index]
        sampler.set_model.remote(payload_ref)  # an actor runs its calls in order
        return sampler.run.remote(starts, md_cfg.to_dict(), replica_offset)


@contextlib.contextmanager
def async_actors(rt: Runtime):
    """Trainer, samplers and the DFT pool held together: yields ``(pool, HeldActors)``; on a
    cluster the trainer and samplers are placed first and the pool sized to the CPUs left,
    and released after (the trainer once the final model it may run is back)."""
    held = HeldActors(rt)
    rt.held = held  # finalise collects the final model through the runtime
    try:
        rt.trainer.actors = rt.trainer.actors or rt.new_trainer(wait=rt.per_phase)
        rt.samplers.actors = rt.samplers.actors or rt.new_samplers(rt.plan.samplers, wait=rt.per_phase)
        with rt.dft_pool() as pool:
            yield pool, held
    finally:
        if rt.per_phase:
            if held.final is None:
                kill_actors(rt.trainer.actors)
                rt.trainer.actors = None
            kill_actors(rt.samplers.actors)
            rt.samplers.actors = None
