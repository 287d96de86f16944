"""The asynchronous campaign (``campaign.mode: async``): DFT, training and MD overlap.

After round 0, one driver loop waits on everything in flight at once (labels, the trainer,
each sampler's MD) and reacts to whatever finishes first:

* a **label** is stored at once (then settled in the ledger) and goes to the running
  training, which takes it in at its next epoch; once ``retrain_every`` new labels have
  arrived the trainer starts again from the newest model (warm start) as soon as it is free;
* a **model** (a *generation*) is checkpointed, gets an MLflow child run, re-scores the
  queue (candidates it now finds accurate fall out) and goes to each sampler with its next
  MD run;
* an **MD run**'s frames are ranked as in a round (trust window, duplicates against the
  labelled set, audits drawn at random) and the picks join the queue. MD starts when the
  queue would run dry before its picks arrive, on the generation in training as of its last
  epoch (fresher than the newest finished one); a share of the replicas continues its own
  trajectory (``orchestrator.replicas``), the rest start from the MD picks the model trained
  on (before any, from the initial set, as round 1 does); see ``orchestrator.exploration``.

DFT workers take the best queued candidate whenever they have room (frames of the newest
model's MD first, older ones only to fill in), the ledger reserving before each dispatch.
Once every label is dispatched, a generation still training stops after its epoch and the
final model starts from it at once: the labels still in flight join it as they arrive, and
the last generation's metrics are computed while it trains. Round 0 labels the first half
of the initial set; the first model starts on it while the rest of it, then the hold-out,
head the queue (the rest joins the training as it arrives), then structures drawn like the
initial set (``campaign.pre_model_fillers``) until a model exists, so DFT does not wait for
it. A generation's metrics (the same as a round's) are logged when the next generation
replaces it. Resume: stored labels are never redone, the newest generation's checkpoint is
loaded, what round 0 left unlabelled is queued again and the rest of the queue is rebuilt
by MD.
"""

from __future__ import annotations

import math
import time

import numpy as np
import ray
from ase import Atoms
from ase.io import write

from orchestrator.campaign import Campaign, trimmed
from orchestrator.exploration import ALL_ROUNDS, FRAC_KEYS, Exploration, moving_average
from orchestrator.labelling import store_and_settle
from orchestrator.runtime import first_line
from orchestrator.scheduler import FILLER, TOP, Candidate, LabelQueue, stale
from orchestrator.selection import SCORE_KEYS
from orchestrator.state import CampaignState, filler_structures, initial_items
from orchestrator.store import content_key
from workers.actors import ready_now
from workers.dft import Status
from workers.harmonic import load_reference
from workers.model.calculator import predict
from workers.model.checkpoint import load_checkpoint, model_payload
from workers.normal_modes import normal_modes
from workers.sampling import UNCERTAINTY_KEYS


class AsyncCampaign(Exploration):
    def __init__(self, campaign: Campaign, state: CampaignState):
        self.c, self.state, self.cfg = campaign, state, campaign.cfg
        sched = self.cfg.campaign
        self.queue = LabelQueue(campaign.ledger, sched.queue_size or 4 * self.cfg.ray.dft_workers)
        self.queue.done = campaign.store.keys()
        self.gen = state.round - 1 if state.phase == "start" else state.round  # newest model (0: none)
        self.model, self.payload, self.labelled_emb = None, None, None
        self.md_from: list = []  # MD starts besides the seeds (see adopt)
        self.walkers: dict[int, Atoms] = {}  # replica -> where its last MD run ended (see replica_starts)
        self.train_ref, self.train_t0, self.new_labels = None, 0.0, 0
        self.train_n = self.train_n_prev = 0  # labels the generation in training / the newest one trained on
        self.md: dict = {}  # ObjectRef -> (sampler index, generation, start time, running model or None)
        self.runs = 0  # MD runs started this session (seeds them)
        self.md_wall_s: float | None = None  # recent MD run wall time (moving average)
        self.label_wall_s: float | None = None  # recent label wall time (moving average)
        self.picks: dict[int, list] = {}  # generation -> its dispatched picks (pick metrics)
        self.info: dict = {}  # the newest generation's selection stats and times
        self.fillers = 0
        self.cutting = False  # the generation in training was told to end (see stale)
        self.finishing = False  # labelling over: no generation starts (the final model may be training)
        self.refused = False  # the ledger refused a dispatch (budget spent or in flight)
        self.modes = [normal_modes(r.atoms, r.hessian_ev_a2) for r in map(load_reference, campaign.reference_paths())]
        self.queue_round0()

    def queue_round0(self) -> None:
        """What round 0 left (the initial set's second half, then the hold-out) first in the
        queue, labelled while the first model trains; on resume, whatever of it is not stored."""
        items = initial_items(self.cfg, self.c.seeds, self.modes or None)
        self.queue.offer([Candidate(content_key(a, self.c.dft_cfg), a, TOP, origin, 0) for a, origin in items])

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> None:
        c = self.c
        with c.rt.async_actors() as pool:
            self.pool = pool
            pool.start()
            c.clock.workers = len(pool.workers)
            if self.gen >= 1 and c.checkpoint(self.gen).exists():
                self.adopt(self.gen)
            self.fill_dft()  # DFT first: the trainer's data is read while it runs
            self.start_training()
            self.say_start()
            while True:
                self.fill_dft()
                self.feed_samplers()
                if self.done():
                    break
                if not self.finishing and (c.ledger.labels_left() <= 0 or self.state.stop_reason):
                    self.start_final()
                refs = pool.refs() + list(self.md) + ([self.train_ref] if self.train_ref is not None else [])
                if not refs:  # nothing in flight and nothing to dispatch: no way forward
                    c.say.say("  [yellow]no candidates left to label[/]: the budget's rest stays unspent")
                    break
                ready = ready_now(refs)
                finished, lost = pool.collect(ready)
                for job in lost:
                    self.queue.lost(job[0])
                if lost:
                    c.say.say(f"  [yellow]{len(lost)} DFT jobs moved[/] off a lost worker (each labelled once)")
                self.on_labels([(key, result) for (key, _), result in finished])
                for ref in ready:
                    if ref in self.md:
                        self.on_frames(ref)
                    elif ref is self.train_ref:
                        self.on_model(ref)
            self.queue.release_all()
            self.end_training()
        self.close_generation()  # while the final model trains
        state = self.state
        state.stop_reason = state.stop_reason or "budget exhausted"
        state.round, state.phase = self.gen + 1, "final"  # finalise: every label, from the newest model
        c.save(state)

    def done(self) -> bool:
        """Labelling is over: budget spent (nothing left to reserve) or a stop rule fired,
        and every label in flight is back."""
        if self.pool.in_flight():
            return False
        spent = self.c.ledger.labels_left() <= 0 or self.refused
        return spent or bool(self.state.stop_reason)

    def say_start(self) -> None:
        left = self.c.ledger.labels_left()
        self.c.say.say(
            f"\n[bold]asynchronous[/]: {len(self.pool.workers)} DFT workers pull from a queue; "
            f"retrain every {self.cfg.campaign.retrain_every} labels; {left} labels left"
        )

    # -- DFT -------------------------------------------------------------------------------
    def fill_dft(self) -> None:
        self.refused = False
        if self.state.stop_reason:
            return
        while self.pool.workers and self.pool.has_room():
            if not len(self.queue) and self.gen == 0:
                self.add_filler()
            got = self.queue.dispatch()
            if got is None:
                self.refused = len(self.queue) > 0 or self.c.ledger.labels_left() <= 0
                return
            _, cand = got
            self.pool.submit((cand.key, cand.atoms))
            self.c.clock.started()
            if cand.origin == "md":
                self.picks.setdefault(cand.generation, []).append(cand.atoms)

    def add_filler(self) -> None:
        """Before the first model: structures drawn like the initial set, one per free slot."""
        cap = self.cfg.campaign.pre_model_fillers
        room = (self.cfg.system.initial_labels if cap is None else cap) - self.fillers
        if room <= 0:
            return
        for a in filler_structures(self.cfg, self.c.seeds, self.modes, self.fillers, 1):
            self.queue.offer([Candidate(content_key(a, self.c.dft_cfg), a, FILLER, "seed", 0)])
        self.fillers += 1

    def on_labels(self, results: list) -> None:
        """Labels back from DFT: stored (one commit for the batch), then settled."""
        if not results:
            return
        c, batch = self.c, []
        for key, result in results:
            token, cand = self.queue.complete(key)
            batch.append((token, key, cand.atoms, result, cand.generation, cand.origin))
        stored = store_and_settle(c.store, c.ledger, batch)
        training = [s.atoms for s in stored if s.status is Status.OK and s.origin != "holdout"]
        if self.train_ref is not None or self.finishing:  # the running training (or final model) takes them in
            c.rt.feed_trainer(training)
        for _, result in results:
            c.clock.labelled(result.wall_s)
            self.label_wall_s = moving_average(self.label_wall_s, result.wall_s)
        # every label counts, the hold-out's too: the generation it starts trains longer on the
        # same set (not counting them: --quick's 500 K force MAE 0.132 -> 0.182, 3 seeds)
        self.new_labels += len(results)
        if self.train_ref is None and self.new_labels >= self.cfg.campaign.retrain_every:
            self.start_training()
        elif self.train_ref is not None:
            self.cut_stale_generation()

    def cut_stale_generation(self) -> None:
        """A warm generation in training ends after its epoch once it is stale (``stale``)."""
        if self.finishing or self.cutting or self.gen < 1 or self.new_labels < self.cfg.campaign.retrain_every:
            return
        running = self.c.rt.running_model(model=False)  # (None, its last epoch's row), or None
        epochs = self.cfg.warm_start_epochs or self.cfg.training.epochs
        share = self.cfg.campaign.min_epoch_share
        if running is not None and stale(
            self.new_labels, running[1].get("epoch", -1) + 1, self.cfg.campaign.retrain_every, epochs, share
        ):
            self.c.rt.stop_training()
            self.cutting = True

    # -- training --------------------------------------------------------------------------
    def start_training(self) -> None:
        if self.finishing or self.state.stop_reason or self.c.ledger.labels_left() <= 0:
            return  # labelling is over: the final model trains on every label
        c = self.c
        data, *args = c.training_args(self.gen + 1)  # every label so far (none is ranked past self.gen)
        self.train_ref = c.rt.start_training(data, *args)
        self.cutting = False
        self.train_n_prev = self.train_n
        self.train_t0, self.new_labels, self.train_n = time.perf_counter(), 0, len(data)

    def end_training(self) -> None:
        """Labelling is over: a generation still training stops after its epoch and is the
        last one (the final model starts from it)."""
        self.finishing = True
        if self.train_ref is not None:
            self.c.rt.stop_training()
            self.on_model(self.train_ref)

    def start_final(self) -> None:
        """Every label is dispatched (or a stop rule fired): the last generation ends and the
        final model starts on what is stored; labels still in flight join it as they arrive
        (``Campaign.final_model`` trains again should one come back after it ended)."""
        self.end_training()
        rnd = self.gen + 1  # as finalise will number it
        self.c.rt.start_final_training(*self.c.training_args(rnd, final=True))

    def on_model(self, ref) -> None:
        c, state = self.c, self.state
        self.train_ref = None
        try:
            out = ray.get(ref)
        except ray.exceptions.RayActorError as err:  # its node was lost: retrain on a new trainer
            c.say.say(f"  [yellow]the trainer lost[/] ({first_line(err)}); training again")
            c.rt.replace_trainer()
            self.start_training()
            return
        g = self.gen + 1
        c.save_trained(c.checkpoint(g), out, g)
        self.close_generation()
        took, hist = time.perf_counter() - self.train_t0, out["history"]
        self.train_n = hist[-1].get("n_structures", self.train_n) if hist else self.train_n  # with those taken in
        trained = {"time_train_s": took, "labels_trained": self.train_n}
        state.round, state.phase, state.round_info = g, "async", trained
        state.round_run_id = c.tracker.start_round(state.parent_run_id, g, kind="generation")
        c.save(state)
        self.adopt(g)
        c.say.say(
            f"  generation {g}: {len(out['history'])} epochs on {self.train_n} labels in {took:.0f} s; "
            f"{len(self.queue)} queued, {c.ledger.charged_labels} labels charged, {c.ledger.labels_left()} left"
        )
        if self.new_labels >= self.cfg.campaign.retrain_every:
            self.start_training()

    def adopt(self, g: int) -> None:
        """Generation ``g`` becomes the newest model: queue re-scored, idle samplers started."""
        self.gen = g
        self.model = load_checkpoint(self.c.checkpoint(g))[0].eval()
        busy = (time.perf_counter(), self.pool.stats.busy_s)  # the generation's DFT utilisation
        self.info = {**self.state.round_info, "md_frames": 0, "md_stopped": 0, "audits": 0, "since": busy}
        self.info.update(dict.fromkeys(FRAC_KEYS, 0.0))
        if self.finishing:  # labelling is over: nothing to rank or sample
            return
        self.payload = ray.put(model_payload(self.model))
        # MD starts besides the seeds (see start_md): the MD picks this model trained on, or
        # before there are any the initial set (+ fillers), as round 1 starts from it
        picks = [s for s in self.c.store.labels(status="ok", origin="md") if s.round < g]
        starts = picks or self.c.store.labels(status="ok", origin="seed")
        self.md_from = [s.atoms for s in sorted(starts, key=lambda s: (s.round, s.key))]
        labelled = self.c.training_set(ALL_ROUNDS)
        self.labelled_emb = np.stack([r["embedding"] for r in predict(self.model, labelled)]) if labelled else None
        ranked = [c for c in self.queue.pending.values() if c.score not in (TOP, FILLER)]
        self.score([c.atoms for c in ranked])
        self.queue.rescore({c.key: c.atoms.info.get(self.score_key, math.nan) for c in ranked}, g)
        for i in self.idle_samplers():  # a new model: fresh MD at once
            self.start_md(i)

    @property
    def score_key(self) -> str:
        return SCORE_KEYS.get(self.cfg.selection.strategy, "energy_entropy")

    def score(self, frames: list) -> None:
        """The newest model's energy, uncertainty and embedding into each frame's info."""
        if not frames:
            return
        for a, p in zip(frames, predict(self.model, frames), strict=True):
            a.info["model_energy"], a.info["embedding"] = p["energy"], p["embedding"]
            for key in UNCERTAINTY_KEYS:
                a.info[key] = p.get(key, math.nan)

    def close_generation(self) -> None:
        """Log the newest generation's metrics (as a round's) and close its child run."""
        c, state, g = self.c, self.state, self.gen
        if g < 1 or self.model is None or any(h["round"] == g for h in state.history):
            return
        info = self.info
        frames = max(info.get("md_frames", 0), 1)
        info.update({k: info.get(k, 0.0) / frames for k in FRAC_KEYS})
        picks = [trimmed(a.copy()) for a in self.picks.get(g, [])]
        c.picks_path(g).parent.mkdir(parents=True, exist_ok=True)
        write(c.picks_path(g), picks, format="extxyz")
        ckpt = load_checkpoint(c.checkpoint(g))[1]
        t0, busy0 = info.pop("since")
        capacity = (time.perf_counter() - t0) * c.clock.workers
        info["dft_utilisation"] = (self.pool.stats.busy_s - busy0) / capacity if capacity > 0 else math.nan
        info["time_label_s"] = time.perf_counter() - t0  # the generation's wall time
        metrics = c.round_metrics(g, self.model, ckpt, picks, info)
        state.round_run_id = state.round_run_id or c.tracker.start_round(state.parent_run_id, g, kind="generation")
        c.log_round(state, g, self.model, picks, metrics, kind="generation")
        state.history.append(metrics)
        state.round_run_id = None
        reason = c.stop_rule(metrics)
        if reason and reason != "budget exhausted":
            state.stop_reason = reason
        c.save(state)
