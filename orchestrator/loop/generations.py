"""An asynchronous campaign's models (*generations*): when one starts training, when a stale one
is cut, what happens when one is back (checkpoint, child run, queue re-scored, fresh MD), its
metrics when the next replaces it, and the final model started while labels are in flight."""

from __future__ import annotations

import math
import time

from orchestrator.cluster.held import Lost
from orchestrator.loop.async_state import FRAC_KEYS, AsyncRun
from orchestrator.loop.exploration import idle_samplers, start_md
from orchestrator.loop.queue import FILLER, TOP, stale
from orchestrator.outputs import reports
from orchestrator.records.labelling import utilisation
from orchestrator.steps import labelled_embeddings, score_frames, trimmed
from workers.files import write_frames
from workers.model.checkpoint import load_checkpoint, model_payload


def start_training(r: AsyncRun) -> None:
    s = r.s
    if r.finishing or r.state.stop_reason or s.ledger.labels_left() <= 0:
        return  # labelling is over: the final model trains on every label
    job = s.training_job(r.gen + 1)  # every label so far (none is ranked past r.gen)
    r.train_ref = r.held.start_training(job)
    r.cutting = False
    r.train_n_prev = r.train_n
    r.train_t0, r.new_labels, r.train_n = time.perf_counter(), 0, len(job.structures)


def cut_stale_generation(r: AsyncRun) -> None:
    """A warm generation in training ends after its epoch once it is stale (``stale``)."""
    cfg = r.s.cfg
    if r.finishing or r.cutting or r.gen < 1 or r.new_labels < cfg.campaign.retrain_every:
        return
    running = r.held.running_model(model=False)  # (None, its last epoch's row), or None
    epochs = cfg.warm_start_epochs or cfg.training.epochs
    share = cfg.campaign.min_epoch_share
    if running is not None and stale(
        r.new_labels, running[1].get("epoch", -1) + 1, cfg.campaign.retrain_every, epochs, share
    ):
        r.held.stop_training()
        r.cutting = True


def end_training(r: AsyncRun) -> None:
    """Labelling is over: a generation still training stops after its epoch and is the
    last one (the final model starts from it)."""
    r.finishing = True
    if r.train_ref is not None:
        r.held.stop_training()
        on_model(r, r.train_ref)


def start_final(r: AsyncRun) -> None:
    """Every label is dispatched (or a stop rule fired): the last generation ends and the
    final model starts on what is stored; labels still in flight join it as they arrive
    (``loop.final.final_model`` trains again should one come back after it ended)."""
    end_training(r)
    rnd = r.gen + 1  # as finalise will number it
    r.held.start_final_training(r.s.training_job(rnd, final=True))


def on_model(r: AsyncRun, ref) -> None:
    s, state = r.s, r.state
    r.train_ref = None
    out = r.held.outcome(ref)
    if isinstance(out, Lost):  # its node was lost: retrain on a new trainer
        r.held.replace_lost(out)
        start_training(r)
        return
    g = r.gen + 1
    s.save_trained(s.run.checkpoint(g), out, g)
    close_generation(r)
    took, hist = time.perf_counter() - r.train_t0, out["history"]
    r.train_n = hist[-1].get("n_structures", r.train_n) if hist else r.train_n  # with those taken in
    trained = {"time_train_s": took, "labels_trained": r.train_n}
    state.round, state.phase, state.round_info = g, "async", trained
    state.round_run_id = s.tracker.start_round(state.parent_run_id, g, kind="generation")
    s.save(state)
    adopt(r, g)
    s.say.say(
        f"  generation {g}: {len(out['history'])} epochs on {r.train_n} labels in {took:.0f} s; "
        f"{len(r.queue)} queued, {s.ledger.charged_labels} labels charged, {s.ledger.labels_left()} left"
    )
    if r.new_labels >= s.cfg.campaign.retrain_every:
        start_training(r)


def adopt(r: AsyncRun, g: int) -> None:
    """Generation ``g`` becomes the newest model: queue re-scored, idle samplers started."""
    s = r.s
    r.gen = g
    r.model = load_checkpoint(s.run.checkpoint(g))[0].eval()
    busy = (time.perf_counter(), r.pool.stats.busy_s)  # the generation's DFT utilisation
    r.info = {**r.state.round_info, "md_frames": 0, "md_stopped": 0, "audits": 0, "since": busy}
    r.info.update(dict.fromkeys(FRAC_KEYS, 0.0))
    if r.finishing:  # labelling is over: nothing to rank or sample
        return
    r.payload = r.held.share(model_payload(r.model))
    # MD starts besides the seeds (see start_md): the MD picks this model trained on, or
    # before there are any the initial set (+ fillers), as round 1 starts from it
    picks = [lab for lab in s.store.labels(status="ok", origin="md") if lab.round < g]
    starts = picks or s.store.labels(status="ok", origin="seed")
    r.md_from = [lab.atoms for lab in sorted(starts, key=lambda lab: (lab.round, lab.key))]
    r.labelled_emb = labelled_embeddings(r.model, s.training_set())
    ranked = [c for c in r.queue.pending.values() if c.score not in (TOP, FILLER)]
    score_frames(r.model, [c.atoms for c in ranked])
    r.queue.rescore({c.key: c.atoms.info.get(s.score_key, math.nan) for c in ranked}, g)
    for i in idle_samplers(r):  # a new model: fresh MD at once
        start_md(r, i)


def close_generation(r: AsyncRun) -> None:
    """Log the newest generation's metrics (as a round's) and close its child run."""
    s, state, g = r.s, r.state, r.gen
    if g < 1 or r.model is None or any(h["round"] == g for h in state.history):
        return
    info = r.info
    frames = max(info.get("md_frames", 0), 1)
    info.update({k: info.get(k, 0.0) / frames for k in FRAC_KEYS})
    picks = [trimmed(a.copy()) for a in r.picks.get(g, [])]
    s.run.round_dir(g).mkdir(parents=True, exist_ok=True)
    write_frames(s.run.picks(g), picks)
    ckpt = load_checkpoint(s.run.checkpoint(g))[1]
    t0, busy0 = info.pop("since")
    capacity = (time.perf_counter() - t0) * s.clock.workers
    info["dft_utilisation"] = utilisation(r.pool.stats.busy_s - busy0, capacity)
    info["time_label_s"] = time.perf_counter() - t0  # the generation's wall time
    metrics = reports.round_metrics(s.cfg, s.store, s.ledger, s.dft_cfg, s.score_key, g, r.model, ckpt, picks, info)
    state.round_run_id = state.round_run_id or s.tracker.start_round(state.parent_run_id, g, kind="generation")
    reports.log_round(s.run, s.store, s.tracker, s.say, s.dft_cfg, s.score_key, state, g, r.model, picks, metrics,
                      kind="generation")  # fmt: skip
    state.history.append(metrics)
    state.round_run_id = None
    reason = s.stop_rule(metrics)
    if reason and reason != "budget exhausted":
        state.stop_reason = reason
    s.save(state)
