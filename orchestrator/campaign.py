"""A campaign, top to bottom: lock the run directory, open a session, start Ray, round 0, the
loop (rounds, or the asynchronous loop), the final model.

The rooms it calls (docs/architecture.md): ``session`` (what every step reads), ``loop/``
(rounds, the asynchronous loop and its MD), ``steps`` (what both loops share), ``cluster/``
(Ray), ``records/`` (what is kept on disk), ``outputs/`` (MLflow, plots, console).
"""

from __future__ import annotations

from orchestrator.config import CampaignConfig
from orchestrator.loop.final import finalise
from orchestrator.loop.repairs import restore_references
from orchestrator.loop.rounds import active_round, check_stop, initial_round
from orchestrator.outputs.console import Reporter
from orchestrator.records.lock import CampaignLock
from orchestrator.records.state import CampaignState
from orchestrator.session import Session, open_session
from orchestrator.systems import load_systems


class Campaign:
    def __init__(self, cfg: CampaignConfig, reporter: Reporter | None = None):
        self.cfg = cfg
        self.say = reporter or Reporter()
        # bad input fails before anything is written; each seed tagged with its system
        self.systems, self.seeds = load_systems(cfg.system)
        self.session: Session | None = None  # open while (and after) ``run``

    def run(self, resume: bool = False) -> CampaignState:
        from orchestrator.cluster.runtime import Runtime
        from orchestrator.loop.asynchronous import run_async

        with CampaignLock(self.cfg.output_dir):  # one driver per output directory (refused: CampaignBusy)
            s, state = open_session(self.cfg, self.systems, self.seeds, self.say, resume)
            self.session = s
            if state.finished:
                s.say.say(f"campaign already finished ({state.stop_reason})")
                s.say_tracking()  # the records an away server did not take, sent now if it answers
                return state
            s.say.say(f"[bold]catal[/] campaign [cyan]{self.cfg.name}[/] -> {s.run.root}")
            try:
                with s.say.phase("starting Ray"):
                    s.rt = Runtime(self.cfg, s.say)
                if state.round == 0:
                    initial_round(s, state)
                else:
                    restore_references(s)  # any set aside as damaged
                if self.cfg.campaign.mode == "async" and not state.stop_reason:
                    run_async(s, state)
                while not state.stop_reason:
                    active_round(s, state)
                    check_stop(s, state)
                finalise(s, state)
                s.say_tracking()
            except BaseException as err:  # stored labels and the saved state stay for `catal resume`
                s.tracker.end_open("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
                raise
            finally:
                if s.rt is not None:
                    s.rt.shutdown()
            return state
