"""The asynchronous campaign (``campaign.mode: async``): DFT, training and MD overlap.

After round 0, one driver loop waits on everything in flight at once (labels, the trainer,
each sampler's MD) and reacts to whatever finishes first:

* a **label** is stored at once (then settled in the ledger) and goes to the running
  training, which takes it in at its next epoch; once ``retrain_every`` new labels have
  arrived the trainer starts again from the newest model (warm start) as soon as it is free;
* a **model** (a *generation*, ``orchestrator.loop.generations``) is checkpointed, gets an
  MLflow child run, re-scores the queue (candidates it now finds accurate fall out) and goes
  to each sampler with its next MD run;
* an **MD run**'s frames (``orchestrator.loop.exploration``) are ranked as in a round (trust
  window, duplicates against the labelled set, audits drawn at random) and the picks join the
  queue. MD starts when the queue would run dry before its picks arrive, on the generation in
  training as of its last epoch (fresher than the newest finished one); a share of the
  replicas continues its own trajectory (``orchestrator.loop.replicas``), the rest start from
  the MD picks the model trained on (before any, from the initial set, as round 1 does).

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
by MD. The state all of this changes is one dataclass (``loop.async_state.AsyncRun``).
"""

from __future__ import annotations

from orchestrator.cluster.held import async_actors
from orchestrator.initial import filler_structures, initial_items
from orchestrator.loop.async_state import AsyncRun, moving_average
from orchestrator.loop.exploration import feed_samplers, on_frames
from orchestrator.loop.generations import (
    adopt,
    close_generation,
    cut_stale_generation,
    end_training,
    on_model,
    start_final,
    start_training,
)
from orchestrator.loop.queue import FILLER, TOP, Candidate, LabelQueue
from orchestrator.records.labelling import store_and_settle
from orchestrator.records.state import CampaignState
from orchestrator.records.store import content_key
from orchestrator.references import stored_modes
from orchestrator.session import Session
from workers.dft import Status


def run_async(s: Session, state: CampaignState) -> None:
    """Label, train and sample at once until the budget is spent or a stop rule fires; the
    state is left for ``finalise`` (every label, from the newest generation)."""
    sched = s.cfg.campaign
    if s.cfg.selection.probes_per_round:
        s.say.say("  [yellow]selection.probes_per_round[/]: probes are drawn in rounds only; this campaign draws none")
    queue = LabelQueue(s.ledger, sched.queue_size or 4 * s.cfg.ray.dft_workers)
    queue.done = s.store.keys()
    gen = state.round - 1 if state.phase == "start" else state.round  # newest model (0: none)
    modes = stored_modes(s.reference_paths(), s.seeds)
    r = AsyncRun(s, state, queue, modes, gen)
    queue_round0(r)
    with async_actors(s.rt) as (pool, held):
        r.pool, r.held = pool, held
        pool.start()
        s.clock.workers = len(pool.workers)
        if r.gen >= 1 and s.run.checkpoint(r.gen).exists():
            adopt(r, r.gen)
        fill_dft(r)  # DFT first: the trainer's data is read while it runs
        start_training(r)
        say_start(r)
        while loop_once(r):
            pass
        queue.release_all()
        end_training(r)
    close_generation(r)  # while the final model trains
    state.stop_reason = state.stop_reason or "budget exhausted"
    state.round, state.phase = r.gen + 1, "final"  # finalise: every label, from the newest model
    s.save(state)


def loop_once(r: AsyncRun) -> bool:
    """Dispatch, start MD, wait for whatever finishes first and react; False once over."""
    s = r.s
    fill_dft(r)
    feed_samplers(r)
    if done(r):
        return False
    if not r.finishing and (s.ledger.labels_left() <= 0 or r.state.stop_reason):
        start_final(r)
    refs = r.pool.refs() + list(r.md) + ([r.train_ref] if r.train_ref is not None else [])
    if not refs:  # nothing in flight and nothing to dispatch: no way forward
        s.say.say("  [yellow]no candidates left to label[/]: the budget's rest stays unspent")
        return False
    ready = r.held.ready(refs)
    finished, lost = r.pool.collect(ready)
    for job in lost:
        r.queue.lost(job[0])
    if lost:
        s.say.say(f"  [yellow]{len(lost)} DFT jobs moved[/] off a lost worker (each labelled once)")
    on_labels(r, [(key, result) for (key, _), result in finished])
    for ref in ready:
        if ref in r.md:
            on_frames(r, ref)
        elif ref is r.train_ref:
            on_model(r, ref)
    return True


def queue_round0(r: AsyncRun) -> None:
    """What round 0 left (the initial set's second half, then the hold-out) first in the
    queue, labelled while the first model trains; on resume, whatever of it is not stored."""
    items = initial_items(r.s.cfg, r.s.seeds, r.modes or None)
    r.queue.offer([Candidate(content_key(a, r.s.dft_cfg), a, TOP, origin, 0) for a, origin in items])


def done(r: AsyncRun) -> bool:
    """Labelling is over: budget spent (nothing left to reserve) or a stop rule fired,
    and every label in flight is back."""
    if r.pool.in_flight():
        return False
    spent = r.s.ledger.labels_left() <= 0 or r.refused
    return spent or bool(r.state.stop_reason)


def say_start(r: AsyncRun) -> None:
    left = r.s.ledger.labels_left()
    r.s.say.say(
        f"\n[bold]asynchronous[/]: {len(r.pool.workers)} DFT workers pull from a queue; "
        f"retrain every {r.s.cfg.campaign.retrain_every} labels; {left} labels left"
    )


def fill_dft(r: AsyncRun) -> None:
    r.refused = False
    if r.state.stop_reason:
        return
    while r.pool.workers and r.pool.has_room():
        if not len(r.queue) and r.gen == 0:
            add_filler(r)
        got = r.queue.dispatch()
        if got is None:
            r.refused = len(r.queue) > 0 or r.s.ledger.labels_left() <= 0
            return
        _, cand = got
        r.pool.submit((cand.key, cand.atoms))
        r.s.clock.started()
        if cand.origin == "md":
            r.picks.setdefault(cand.generation, []).append(cand.atoms)


def add_filler(r: AsyncRun) -> None:
    """Before the first model: structures drawn like the initial set, one per free slot."""
    cfg = r.s.cfg
    cap = cfg.campaign.pre_model_fillers
    room = (cfg.system.initial_labels if cap is None else cap) - r.fillers
    if room <= 0:
        return
    for a in filler_structures(cfg, r.s.seeds, r.modes, r.fillers, 1):
        r.queue.offer([Candidate(content_key(a, r.s.dft_cfg), a, FILLER, "seed", 0)])
    r.fillers += 1


def on_labels(r: AsyncRun, results: list) -> None:
    """Labels back from DFT: stored (one commit for the batch), then settled."""
    if not results:
        return
    s, batch = r.s, []
    for key, result in results:
        token, cand = r.queue.complete(key)
        batch.append((token, key, cand.atoms, result, cand.generation, cand.origin))
    stored = store_and_settle(s.store, s.ledger, batch)
    training = [lab.atoms for lab in stored if lab.status is Status.OK and lab.origin != "holdout"]
    if r.train_ref is not None or r.finishing:  # the running training (or final model) takes them in
        r.held.feed_trainer(training)
    for _, result in results:
        s.clock.labelled(result.wall_s)
        r.label_wall_s = moving_average(r.label_wall_s, result.wall_s)
    # every label counts, the hold-out's too: the generation it starts trains longer on the
    # same set (not counting them: --quick's 500 K force MAE 0.132 -> 0.182, 3 seeds)
    r.new_labels += len(results)
    if r.train_ref is None and r.new_labels >= s.cfg.campaign.retrain_every:
        start_training(r)
    elif r.train_ref is not None:
        cut_stale_generation(r)
