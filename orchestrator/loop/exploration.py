"""An asynchronous campaign's MD (``orchestrator.loop.asynchronous``): when a sampler starts, on
which model and from where, and how its frames are ranked into the label queue."""

from __future__ import annotations

import time

from orchestrator.cluster.held import Lost
from orchestrator.loop.async_state import FRAC_KEYS, AsyncRun, moving_average
from orchestrator.loop.queue import TOP, Candidate
from orchestrator.loop.replicas import replica_starts, walkers_after
from orchestrator.records.store import content_key
from orchestrator.seeds import async_md_seed
from orchestrator.selection import rank_frames, selection_rng
from orchestrator.steps import labelled_embeddings, md_config, md_starts, score_frames, trimmed
from workers.model.checkpoint import model_from_payload
from workers.sampling import replica_shares


def idle_samplers(r: AsyncRun) -> list[int]:
    busy = {run[0] for run in r.md.values()}
    return [i for i in range(r.held.n_samplers) if i not in busy]


def feed_samplers(r: AsyncRun) -> None:
    """Start MD on idle samplers when the queue will run dry before their picks arrive:
    queued + coming picks below what DFT takes during one MD run (x 1.5, at least 2).
    MD only as fast as DFT consumes: each run's picks are labelled, as in a round, rather
    than the most uncertain of many runs (where MD is faster than DFT, a queue kept a
    run's worth deep served those: strained frames, worse forces where MD runs), and
    the trainer keeps the CPUs in between."""
    picks = r.s.cfg.selection.picks_per_round
    if r.md_wall_s is None or r.label_wall_s is None:
        need = picks  # no rates measured yet: one run's worth
    else:
        need = max(1.5 * r.md_wall_s * len(r.pool.workers) / max(r.label_wall_s, 1e-3), 2)
    for i in idle_samplers(r):  # older models' frames only fill in: not counted
        coming = r.queue.ranked(source=r.gen) + picks * len(r.md)
        if coming >= need:
            return
        start_md(r, i)


def start_md(r: AsyncRun, index: int) -> None:
    s = r.s
    if r.state.stop_reason or s.ledger.labels_left() <= 0 or r.model is None:
        return
    r.runs += 1
    md_cfg = md_config(s.cfg, async_md_seed(s.cfg, r.gen, r.runs))
    shares = replica_shares(md_cfg.replicas, r.held.n_samplers)
    if index >= len(shares):  # more samplers than replicas
        return
    offset, count = shares[index]
    # from the seeds and the MD picks this model trained on, not those that arrived since
    # (its own: MD from them compounds its errors), the older of its newest picks first
    # (MD from the very newest was measured less accurate on an earlier build); see adopt
    starts = md_starts(s.seeds, s.reference_paths(), r.md_from, md_cfg.replicas, s.systems)
    starts = replica_starts(r.walkers, starts, md_cfg.replicas, s.cfg.campaign.persistent_replicas)
    payload, running = r.payload, running_model(r)
    if running is not None:
        payload = r.held.share(running[0])
        running = model_from_payload(running[0], "cpu")
    ref = r.held.start_md(index, payload, starts, md_cfg.model_copy(update={"replicas": count}), offset)
    r.md[ref] = (index, r.gen, time.perf_counter(), running)


def running_model(r: AsyncRun) -> tuple[dict, dict] | None:
    """The generation in training as of its last epoch (``(payload, row)``), when MD is to
    run on it: a warm start (a cold one's early epochs are untrained) that has taken in a
    label the newest generation had not, else None (MD on the newest generation)."""
    if not r.s.cfg.campaign.md_on_running_model or r.train_ref is None or r.gen < 1:
        return None
    running = r.held.running_model()
    if running is None or running[1].get("n_structures", 0) <= r.train_n_prev:
        return None
    return running


def on_frames(r: AsyncRun, ref) -> None:
    index, g, t0, running = r.md.pop(ref)
    frames = r.held.outcome(ref)
    if isinstance(frames, Lost):  # its node was lost: MD again on a new sampler
        r.held.replace_lost(frames, sampler=index)
        start_md(r, index)
        return
    r.walkers = walkers_after(r.walkers, frames)
    wall = time.perf_counter() - t0
    r.info["time_sample_s"] = r.info.get("time_sample_s", 0.0) + wall
    r.md_wall_s = moving_average(r.md_wall_s, wall)
    source = g if running is None else g + 1  # MD on generation g + 1 mid-training
    if g != r.gen:  # run by an older model: ranked by the newest one
        score_frames(r.model, frames)
        offer(r, frames, source, r.labelled_emb)
    elif running is not None:  # ranked by the model it ran on (frames scored in MD)
        offer(r, frames, source, labelled_embeddings(running, r.s.training_set()))
    else:
        offer(r, frames, source, r.labelled_emb)


def offer(r: AsyncRun, frames: list, source: int, labelled_emb) -> None:
    """Rank an MD run's frames (model ``source``'s MD) as a round does, against
    ``labelled_emb`` (the labelled set's embeddings by the model that scored the frames);
    the picks (and audits) join the queue."""
    cfg, info = r.s.cfg, r.info
    if not frames:
        return
    n_audit = max(cfg.selection.audit_per_round - info["audits"], 0)
    ranked = rank_frames(
        frames, cfg.selection, n_audit, None, labelled_emb, selection_rng(cfg.seed, r.gen, r.runs), r.s.weights
    )
    info["md_frames"] += len(frames)
    info["md_stopped"] += int(ranked.stopped.sum())
    info["audits"] += len(ranked.audits)
    for k in FRAC_KEYS:
        info[k] += getattr(ranked.selection, k) * ranked.n_rest
    cands = [candidate(r, frames[int(i)], TOP, "audit", source) for i in ranked.audits]
    cands += [candidate(r, frames[int(i)], float(ranked.scores[int(i)]), "md", source) for i in ranked.picks]
    r.queue.offer(cands)
    if cfg.selection.strategy != "random":
        r.queue.drop_below(ranked.selection.window[0])  # the newest model finds these accurate now


def candidate(r: AsyncRun, frame, score: float, origin: str, source: int) -> Candidate:
    a = trimmed(frame.copy())  # what a round's picks.extxyz keeps
    return Candidate(content_key(a, r.s.dft_cfg), a, score, origin, r.gen, source)
