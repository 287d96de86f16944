"""The active-learning campaign: round 0 labels an initial set and a hold-out, then each round
trains -> samples -> selects -> labels -> evaluates -> logs -> checkpoints.

Durability: the campaign state (round, phase within it) is a JSON file rewritten atomically
after every phase; each phase's product is on disk before the phase is marked done (the
round's checkpoint after training, its picks after selection, each label as it arrives).
``resume`` therefore redoes at most the interrupted phase, and labels already stored are
reused, never recomputed nor re-charged.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import yaml
from ase.io import read, write

from orchestrator import plots
from orchestrator.budget import Ledger
from orchestrator.config import CampaignConfig, flatten
from orchestrator.console import Reporter
from orchestrator.labelling import DFTClock, label_structures, round0_failure_summary
from orchestrator.lock import CampaignLock
from orchestrator.references import final_figures, reference_paths, seed_minima, seed_normal_modes
from orchestrator.reports import RoundReports
from orchestrator.selection import SCORE_KEYS, draw_audits, frame_arrays, frame_scores, select, selection_rng
from orchestrator.state import (
    CampaignState,
    async_round0,
    initial_items,
    load_state,
    save_state,
    state_path,
    stop_reason,
)
from orchestrator.tracking import Tracker
from workers.dft import Status
from workers.errors import CampaignFailed
from workers.harmonic import load_reference
from workers.model.calculator import predict, recalibrate
from workers.model.checkpoint import load_checkpoint, model_from_payload, model_payload, save_checkpoint
from workers.model.committee import committee_predictions
from workers.model.training import evaluate
from workers.sampling import UNCERTAINTY_KEYS
from workers.structures import load_seed_structures

PICK_INFO = ("model_energy", *UNCERTAINTY_KEYS, "committee_force_dev", "replica", "step")


def training_seed(cfg: CampaignConfig, member: int = 0) -> int:
    """Committee ``member``'s training seed (initialisation, shuffling, validation split):
    ``training.seed`` moved by the campaign ``seed``, so campaigns that differ only in seed
    share their initial labels but not their models (training seeds alone move a model's
    accuracy as much as selection does: docs/results.md section 2)."""
    return cfg.training.seed + 7919 * cfg.seed + 1009 * member


def trimmed(frame):
    """An MD frame with only the ``PICK_INFO`` keys in its info (what the extxyz keeps)."""
    keep = {k: frame.info[k] for k in PICK_INFO if k in frame.info}
    frame.info.clear()
    frame.info.update(keep)
    return frame


class Campaign(RoundReports):
    def __init__(self, cfg: CampaignConfig, reporter: Reporter | None = None):
        self.cfg = cfg
        self.out = cfg.output_dir
        self.say = reporter or Reporter()
        self.dft_cfg = cfg.dft_config()
        self.seeds = load_seed_structures(cfg.system.structures)
        committee = cfg.selection.strategy == "committee"
        self.members = cfg.selection.committee_members if committee else 1  # models trained per round
        self.score_key = SCORE_KEYS.get(cfg.selection.strategy, "energy_entropy")  # frame info of the score

    # -- set-up --------------------------------------------------------------------
    def prepare(self, resume: bool) -> CampaignState:
        (self.out / "checkpoints").mkdir(parents=True, exist_ok=True)
        (self.out / "rounds").mkdir(exist_ok=True)
        if not resume:
            resolved = self.cfg.model_copy(update={"out_dir": str(self.out.resolve())})
            (self.out / "config.yaml").write_text(yaml.safe_dump(resolved.to_dict(), sort_keys=False))
        state = load_state(self.out) if state_path(self.out).exists() else CampaignState()
        self.store = self.cfg.label_store()
        other_s = sum(load_reference(p).cost_s for p in self.reference_paths() if p.exists())
        self.ledger = Ledger.from_charges(self.cfg.budget, self.store.charges(), other_s)
        self.clock = DFTClock(self.cfg.ray.dft_workers, state.dft_busy_s, state.dft_capacity_s)
        # artifacts beside the default SQLite store; a tracking server stores (serves) its own
        artifacts = self.out / "mlartifacts" if self.cfg.tracking.uri is None else None
        self.tracker = Tracker(self.cfg.tracking_uri(), self.cfg.tracking.experiment or self.cfg.name, artifacts)
        if not state.finished:  # a finished campaign's MLflow run stays closed
            state.parent_run_id = self.tracker.start_campaign(
                self.cfg.name, flatten(self.cfg.to_dict()), state.parent_run_id
            )
            self.save(state)
        return state

    def save(self, state: CampaignState) -> None:
        state.dft_busy_s, state.dft_capacity_s = self.clock.totals()
        save_state(self.out, state)

    def run(self, resume: bool = False) -> CampaignState:
        from orchestrator.runtime import Runtime

        with CampaignLock(self.out):  # one driver per output directory (refused: CampaignBusy)
            state = self.prepare(resume)
            if state.finished:
                self.say.say(f"campaign already finished ({state.stop_reason})")
                return state
            self.say.say(f"[bold]catal[/] campaign [cyan]{self.cfg.name}[/] -> {self.out}")
            self.rt = None
            try:
                with self.say.phase("starting Ray"):
                    self.rt = Runtime(self.cfg, self.say)
                if state.round == 0:
                    self.initial_round(state)
                if self.cfg.campaign.mode == "async" and not state.stop_reason:
                    from orchestrator.asynchronous import AsyncCampaign

                    AsyncCampaign(self, state).run()
                while not state.stop_reason:
                    self.active_round(state)
                    self.check_stop(state)
                self.finalise(state)
            except BaseException as err:  # stored labels and the saved state stay for `catal resume`
                status = "FAILED" if isinstance(err, CampaignFailed) else "KILLED"
                if state.round_run_id:
                    self.tracker.end(state.round_run_id, status)
                self.tracker.end(state.parent_run_id, status)
                raise
            finally:
                if self.rt is not None:
                    self.rt.shutdown()
            return state

    # -- round 0 -------------------------------------------------------------------
    def reference_paths(self) -> list[Path]:
        return reference_paths(self.cfg, self.out, len(self.seeds))

    def initial_round(self, state: CampaignState) -> None:
        with self.rt.dft_pool() as pool:
            pool.warm_up()  # worker start-up (PySCF imports) is not DFT time on offer
            self.rt.start_async_actors()
            self.clock.started()
            new_refs = [p for p in self.reference_paths() if not p.exists()]
            modes = seed_normal_modes(self.cfg, self.reference_paths(), self.seeds, pool, self.ledger, self.say)
            self.clock.busy_s += sum(load_reference(p).wall_s for p in new_refs)  # one worker each
            items = initial_items(self.cfg, self.seeds, modes)
            if self.cfg.campaign.mode == "async":  # the rest joins the queue while the first model trains
                items = async_round0(items)
            what = "initial set" + (" + hold-out" if any(o == "holdout" for _, o in items) else "")
            with self.say.dft_progress(len(items), f"round 0: labelling {what}") as tick:
                report = label_structures(
                    items, 0, pool, self.store, self.ledger, self.dft_cfg, per_round_limit=False,
                    on_label=self.timed(tick),
                )  # fmt: skip
        n_ok = sum(1 for s in report.all_labels if s.status is Status.OK)
        self.say.say(f"  {n_ok}/{len(items)} labelled ({report.failures} failed), {report.dft_seconds:.1f} DFT s")
        self.say_moved(report)
        usable = len(self.store.training_structures())
        if usable < max(2, min(self.cfg.system.initial_labels, len(items)) // 2):
            raise CampaignFailed(round0_failure_summary(self.store.labels(), usable, self.cfg.system.initial_labels))
        self.tracker.log_metrics(
            state.parent_run_id,
            {
                "labels_total": self.ledger.charged_labels,
                "labels_initial": len(items),
                "dft_seconds": report.dft_seconds,
                # minima + Hessians of normal-mode sampling (CPU-seconds, charged to the hours)
                "harmonic_dft_seconds": sum(load_reference(p).cost_s for p in self.reference_paths()),
                **({"lowest_mode_cm": float(min(m.frequencies_cm.min() for m in modes))} if modes else {}),
            },
            step=0,
        )
        state.round, state.phase = 1, "start"
        self.save(state)

    def timed(self, tick):
        """``tick`` (progress) that also clocks each label's DFT time."""

        def on_label(stored) -> None:
            self.clock.labelled(stored.wall_s)
            tick(stored)

        return on_label

    def say_moved(self, report) -> None:
        if report.resubmitted:
            self.say.say(f"  [yellow]{report.resubmitted} DFT jobs moved[/] off lost workers (each labelled once)")

    # -- rounds >= 1 ---------------------------------------------------------------
    def checkpoint(self, rnd: int, member: int = 0) -> Path:
        """Round ``rnd``'s model; committee members beyond the first get a suffix."""
        suffix = f"_m{member}" if member else ""
        return self.out / "checkpoints" / f"round_{rnd:03d}{suffix}.pt"

    def picks_path(self, rnd: int) -> Path:
        return self.out / "rounds" / f"round_{rnd:03d}" / "picks.extxyz"

    def audit_path(self, rnd: int) -> Path:
        return self.picks_path(rnd).with_name("audit.extxyz")

    def training_set(self, before_round: int) -> list:
        """OK labels from rounds before ``before_round`` (hold-out excluded), ordered by
        (round, content key): the same list whatever order the DFT pool finished them in,
        so an interrupted and an uninterrupted run, or two runs of one config, train alike."""
        labels = [s for s in self.store.labels(status="ok") if s.origin != "holdout" and s.round < before_round]
        return [s.atoms for s in sorted(labels, key=lambda s: (s.round, s.key))]

    def train_phase(self, rnd: int, final: bool = False, member: int = 0) -> Path:
        path = self.out / "model.pt" if final else self.checkpoint(rnd, member)
        out = self.rt.train(*self.training_args(rnd, final, member))
        return self.save_trained(path, out, rnd)

    def training_args(self, rnd: int, final: bool = False, member: int = 0) -> tuple:
        """``(structures, warm payload, optimizer state, epochs, seed)`` for round ``rnd``'s
        model (``final``: every label), warm-started from the round before."""
        warm, opt_state, epochs = self.warm_start(self.checkpoint(rnd - 1, member))
        data = self.training_set(rnd + 1 if final else rnd)
        return data, warm, opt_state, epochs, training_seed(self.cfg, member)

    def warm_start(self, prev: Path) -> tuple[dict | None, dict | None, int]:
        """``(model payload, optimizer state, epochs)`` to continue from checkpoint ``prev``, or
        a cold start (``training.epochs``) when it does not exist."""
        if not prev.exists():
            return None, None, self.cfg.training.epochs
        model, ckpt = load_checkpoint(prev)
        return model_payload(model), ckpt.get("optimizer"), self.cfg.warm_start_epochs or self.cfg.training.epochs

    def save_trained(self, path: Path, out: dict, rnd: int) -> Path:
        """A trainer's result (``Runtime.train``) written as a checkpoint, its error bars
        recalibrated on the hold-out labels (never trained on; ``recalibrate``)."""
        model = model_from_payload(out["payload"], "cpu")
        recalibrate(model, self.store.holdout_structures())
        extra = {k: out[k] for k in ("optimizer", "history", "best_epoch", "support_clamped", "structures_per_s")}
        save_checkpoint(path, model, {**extra, "round": rnd, "epoch": len(out["history"])})
        return path

    def active_round(self, state: CampaignState) -> None:
        rnd = state.round
        self.say.say(f"\n[bold]round {rnd}[/]")
        state.round_run_id = self.tracker.start_round(state.parent_run_id, rnd, state.round_run_id)
        self.save(state)
        info = state.round_info
        if state.phase == "start":
            t0 = time.perf_counter()
            models = f" ({self.members} committee members)" if self.members > 1 else ""
            with self.say.phase(f"training on {len(self.training_set(rnd))} labels{models}"):
                for member in range(self.members):
                    self.train_phase(rnd, member=member)
            info["time_train_s"] = time.perf_counter() - t0
            state.phase = "trained"
            self.save(state)
        model, ckpt = load_checkpoint(self.checkpoint(rnd))
        model = model.eval()
        if state.phase == "trained":
            info.update(self.sample_and_select(model, rnd))
            state.phase = "selected"
            self.save(state)
        picks = read(self.picks_path(rnd), index=":") if self.picks_path(rnd).stat().st_size else []
        audit_file = self.audit_path(rnd)
        audits = read(audit_file, index=":") if audit_file.exists() and audit_file.stat().st_size else []
        if state.phase == "selected":
            t0 = time.perf_counter()
            what = f"{len(picks)} picks" + (f" + {len(audits)} audit frames" if audits else "")
            items = [(a, "audit") for a in audits] + [(a, "md") for a in picks]
            with self.rt.dft_pool() as pool, self.say.dft_progress(len(items), f"round {rnd}: DFT on {what}") as tick:
                self.clock.started()
                report = label_structures(
                    items, rnd, pool, self.store, self.ledger, self.dft_cfg, on_label=self.timed(tick)
                )
            self.say_moved(report)
            info.update(
                time_label_s=time.perf_counter() - t0,
                dft_utilisation=report.utilisation,
                budget_refused=float(report.budget_exhausted),
            )
            state.phase = "labelled"
            self.save(state)
        metrics = self.round_metrics(rnd, model, ckpt, picks, info)
        self.log_round(state, rnd, model, picks, metrics)
        state.history.append(metrics)
        state.round, state.phase, state.round_run_id, state.round_info = rnd + 1, "start", None, {}
        self.save(state)

    def md_config(self, seed: int):
        """The sampling section with this run's seed (and the trust window as an MD stop)."""
        cfg = self.cfg
        md_cfg = cfg.sampling.model_copy(update={"seed": seed})
        if cfg.selection.window_mode == "absolute" and cfg.selection.strategy == "entropy":
            stops = md_cfg.stops.model_copy(update={"max_entropy": cfg.selection.window_hi})
            md_cfg = md_cfg.model_copy(update={"stops": stops})
        return md_cfg

    def md_starts(self, labelled: list, n: int) -> list:
        """MD starts: the seeds at their DFT minimum (where normal-mode sampling stored one;
        else as given) and the ``n`` most recent labelled structures (no calculator)."""
        recent = [a.copy() for a in labelled[-n:]] if n else []
        for a in recent:
            a.calc = None
        return seed_minima(self.seeds, self.reference_paths()) + recent

    def sample_and_select(self, model, rnd: int) -> dict:
        cfg = self.cfg
        md_cfg = self.md_config(cfg.seed * 1000 + rnd)
        starts = self.md_starts(self.training_set(rnd), md_cfg.replicas)
        t0 = time.perf_counter()
        with self.say.phase(f"MD: {md_cfg.replicas} replicas x {md_cfg.steps} steps ({md_cfg.engine})"):
            frames = self.rt.sample(model, starts, md_cfg)
        if self.members > 1:  # DP-GEN's force deviation over the committee, per frame
            others = [load_checkpoint(self.checkpoint(rnd, m))[0].eval() for m in range(1, self.members)]
            deviation = committee_predictions([model, *others], frames)["max_devi_f"] if frames else []
            for frame, dev in zip(frames, deviation, strict=True):
                frame.info["committee_force_dev"] = float(dev)
        t_sample = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores = frame_scores(frames, cfg.selection.strategy)
        emb, stopped = frame_arrays(frames)
        labelled = self.training_set(rnd)
        labelled_emb = np.stack([r["embedding"] for r in predict(model, labelled)]) if labelled else None
        room = min(cfg.budget.max_labels_per_round, max(self.ledger.labels_left(), 0))
        rng = selection_rng(cfg.seed, rnd)
        # audit frames first (served first from the round's room), then picks from the rest
        audit_idx, rest = draw_audits(stopped, min(cfg.selection.audit_per_round, room), rng)
        quota = min(cfg.selection.picks_per_round, room - len(audit_idx))
        sel = select(scores[rest], emb[rest], stopped[rest], cfg.selection, quota, labelled_emb, rng)
        picks = [trimmed(frames[int(i)]) for i in rest[np.asarray(sel.picked, dtype=int)]]
        audits = [trimmed(frames[int(i)]) for i in audit_idx]
        self.picks_path(rnd).parent.mkdir(parents=True, exist_ok=True)
        write(self.audit_path(rnd), audits, format="extxyz")
        write(self.picks_path(rnd), picks, format="extxyz")
        lo, hi, n_in = *sel.window, sel.counts["eligible"]
        audit_note = f" + {len(audits)} at random (audit)" if audits else ""
        self.say.say(f"  {len(frames)} frames, {n_in} in window [{lo:.3g}, {hi:.3g}], {len(picks)} picked{audit_note}")
        return {
            "time_sample_s": t_sample,
            "time_select_s": time.perf_counter() - t0,
            "md_frames": len(frames),
            "md_stopped": int(stopped.sum()),
            "frac_accurate": sel.frac_accurate,
            "frac_candidate": sel.frac_candidate,
            "frac_failed": sel.frac_failed,
        }

    # -- stopping and the final model -----------------------------------------------
    def stop_rule(self, last: dict) -> str:
        """Why the campaign stops after a round (or generation) with metrics ``last``."""
        return stop_reason(last, self.cfg.stop, self.ledger.labels_left())

    def check_stop(self, state: CampaignState) -> None:
        reason = self.stop_rule(state.history[-1])
        if reason:
            state.stop_reason, state.phase = reason, "final"
            self.save(state)

    def final_model(self, rnd: int, n_labels: int) -> Path:
        """The final model: the one an asynchronous campaign started while its last labels
        were in flight, when it trained on every label (``n_labels``); else trained now."""
        out = self.rt.final_training()
        if out is not None and out["history"] and out["history"][-1].get("n_structures") == n_labels:
            return self.save_trained(self.out / "model.pt", out, rnd)
        return self.train_phase(rnd, final=True)

    def finalise(self, state: CampaignState) -> None:
        rnd = state.round  # one past the last finished round: the final model sees every label
        n_labels = len(self.training_set(rnd + 1))
        with self.say.phase(f"final model on {n_labels} labels"):
            path = self.final_model(rnd, n_labels)
        model, _ = load_checkpoint(path)
        holdout = self.store.holdout_structures()
        final = {f"final_holdout_{k}": v for k, v in (evaluate(model, holdout) if holdout else {}).items()}
        final["labels_total"] = self.ledger.charged_labels
        final["labels_trained"] = n_labels
        # over the whole campaign: DFT busy / (wall x workers), wall = first dispatch to last label
        final["campaign_dft_utilisation"] = self.clock.utilisation
        final.update(final_figures(self.cfg, self.reference_paths(), model, self.say))
        self.tracker.log_metrics(state.parent_run_id, final, step=rnd)
        # x = labels each model was trained on: the rounds' models, then the final one
        points = [(h.get("labels_trained", np.nan), h["holdout_force_mae"]) for h in state.history]
        points.append((final["labels_trained"], final.get("final_holdout_force_mae", np.nan)))
        curve = plots.learning_curve(
            self.out / "learning_curve.png",
            {"hold-out force MAE": ([x for x, _ in points], [y for _, y in points])},
            "hold-out force MAE (eV/Å)",
            self.cfg.name,
            xlabel="DFT labels trained on",
        )
        self.store.export_extxyz(self.out / "labels.extxyz")
        self.tracker.log_artifacts(state.parent_run_id, [curve, self.out / "config.yaml", self.out / "labels.extxyz"])
        self.tracker.log_model(state.parent_run_id, model, path)
        self.tracker.end(state.parent_run_id)
        state.round_info, state.finished = final, True
        self.save(state)
        self.say.say(f"\n[bold green]done[/]: {state.stop_reason}; {self.ledger.charged_labels} labels charged")
