"""One campaign session: what every step of a driver run reads, opened once.

``open_session`` is the set-up (run directory, label store, budget ledger, DFT clock, MLflow
campaign run); the loops (``orchestrator.loop``) take the ``Session`` and the durable
``CampaignState`` and change nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ase import Atoms

from orchestrator.config import CampaignConfig, campaign_config_text, flatten
from orchestrator.outputs.console import Reporter
from orchestrator.outputs.tracking import Tracker
from orchestrator.records.budget import Ledger
from orchestrator.records.labelling import DFTClock
from orchestrator.records.rundir import RunDir
from orchestrator.records.state import CampaignState, load_state, save_state
from orchestrator.records.store import LabelStore
from orchestrator.references import reference_paths
from orchestrator.steps import TrainingJob, save_trained, score_key, stop_reason, training_job
from orchestrator.systems import System
from workers.dft import DFTConfig
from workers.errors import DamagedFile
from workers.files import write_atomic
from workers.harmonic import load_reference

if TYPE_CHECKING:
    from orchestrator.cluster.runtime import Runtime


@dataclass
class Session:
    cfg: CampaignConfig
    run: RunDir  # every path under out_dir
    say: Reporter
    dft_cfg: DFTConfig
    systems: list[System]  # what one potential is trained for (orchestrator.systems)
    seeds: list[Atoms]  # the user's structures, every system's, tagged with it
    store: LabelStore
    ledger: Ledger
    clock: DFTClock
    tracker: Tracker
    rt: Runtime | None = None  # the Ray side, once started

    @property
    def members(self) -> int:
        """Models trained per round: the committee's members, else one."""
        committee = self.cfg.selection.strategy == "committee"
        return self.cfg.selection.committee_members if committee else 1

    @property
    def weights(self) -> dict[str, float]:
        """``{system: weight}``: how the round's picks are shared (``selection.rank_frames``)."""
        return {system.name: system.weight for system in self.systems}

    @property
    def score_key(self) -> str:
        return score_key(self.cfg)

    def save(self, state: CampaignState) -> None:
        state.dft_busy_s, state.dft_capacity_s = self.clock.totals()
        save_state(self.run.root, state)

    def reference_paths(self) -> list[Path]:
        return reference_paths(self.cfg, self.run.root, self.seeds)

    def training_set(self, before_round: int | None = None) -> list[Atoms]:
        """The labels a model of round ``before_round`` trains on (None: every label so far)."""
        return self.store.training_structures(before_round)

    def md_start_labels(self, before_round: int) -> list[Atoms]:
        """The training labels MD may start from: all but probes (a pinched or stretched
        structure is a point to label, not a start: MD from it breaks bonds its own start
        lacks, which the stop rules, judging bonds against the start, do not see)."""
        return self.store.training_structures(before_round, exclude=("probe",))

    def training_job(self, rnd: int, final: bool = False, member: int = 0, scratch: bool = True) -> TrainingJob:
        return training_job(self.cfg, self.run, self.store, rnd, final, member, scratch)

    def train(self, rnd: int, final: bool = False, member: int = 0) -> Path:
        """Round ``rnd``'s model (``final``: ``model.pt`` on every label) trained and saved."""
        path = self.run.final_model if final else self.run.checkpoint(rnd, member)
        return self.save_trained(path, self.rt.train(self.training_job(rnd, final, member)), rnd)

    def save_trained(self, path: Path, out: dict, rnd: int) -> Path:
        return save_trained(path, out, rnd, self.store.holdout_structures())

    def stop_rule(self, last: dict) -> str:
        """Why the campaign stops after a round (or generation) with metrics ``last``."""
        return stop_reason(last, self.cfg.stop, self.ledger.labels_left())

    def timed(self, tick):
        """``tick`` (progress) that also clocks each label's DFT time."""

        def on_label(stored) -> None:
            self.clock.labelled(stored.wall_s)
            tick(stored)

        return on_label

    def say_tracking(self) -> None:
        """One line if MLflow records still wait for the tracking server (after a last try)."""
        if not self.tracker.flush(now=True):
            self.say.say(
                f"[yellow]{self.tracker.queued} MLflow records[/] wait in {self.run.tracking_outbox}: "
                f"`catal resume {self.run.root}` sends them once {self.tracker.uri} answers"
            )

    def say_moved(self, report) -> None:
        if report.resubmitted:
            self.say.say(f"  [yellow]{report.resubmitted} DFT jobs moved[/] off lost workers (each labelled once)")


def good_references(run: RunDir, paths: list[Path], say: Reporter) -> list[Path]:
    """The stored references that read back; a damaged one is set aside (``<name>.damaged``)
    and computed again, charged again (``loop.repairs.restore_references``, or round 0)."""
    good = []
    for path in filter(Path.exists, paths):
        try:
            load_reference(path)
            good.append(path)
        except DamagedFile as err:
            aside = run.set_aside(path)
            say.say(f"[yellow]{path.name} is damaged[/] ({err.reason}): kept as {aside.name}, computed again")
    return good


def open_session(cfg: CampaignConfig, systems: list[System], seeds: list[Atoms], say: Reporter,
                 resume: bool) -> tuple[Session, CampaignState]:  # fmt: skip
    """The run directory made (and ``config.yaml`` written, unless resuming), the state read
    back, the ledger rebuilt from the store's charges, the MLflow campaign run (re)opened."""
    run = RunDir(cfg.output_dir)
    run.make()
    if not resume:
        resolved = cfg.model_copy(update={"out_dir": str(run.root.resolve())})
        write_atomic(run.config, campaign_config_text(resolved))
    state = load_state(run.root, say.say) if run.has_state() else CampaignState()
    store = cfg.label_store()
    refs = good_references(run, reference_paths(cfg, run.root, seeds), say)
    other_s = sum(load_reference(p).cost_s for p in refs)
    ledger = Ledger.from_charges(cfg.budget, store.charges(), other_s)
    clock = DFTClock(cfg.ray.dft_workers, state.dft_busy_s, state.dft_capacity_s)
    # artifacts beside the default SQLite store; a tracking server stores (serves) its own
    tracker = Tracker(cfg.tracking_uri(), cfg.tracking.experiment or cfg.name,
                      run.mlartifacts if cfg.tracking.uri is None else None, run.tracking_outbox, say.say)  # fmt: skip
    s = Session(cfg, run, say, cfg.dft_config(), systems, seeds, store, ledger, clock, tracker)
    if not state.finished:  # a finished campaign's MLflow run stays closed
        state.parent_run_id = tracker.start_campaign(cfg.name, flatten(cfg.to_dict()), state.parent_run_id)
        s.save(state)
    return s, state
