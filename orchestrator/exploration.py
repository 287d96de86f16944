"""An asynchronous campaign's MD (``orchestrator.asynchronous``): when a sampler starts, on
which model and from where, and how its frames are ranked into the label queue."""

from __future__ import annotations

import time

import numpy as np
import ray

from orchestrator.campaign import trimmed
from orchestrator.replicas import replica_starts, walkers_after
from orchestrator.runtime import first_line
from orchestrator.scheduler import TOP, Candidate
from orchestrator.selection import draw_audits, frame_arrays, frame_scores, select, selection_rng
from orchestrator.store import content_key
from workers.model.calculator import predict
from workers.model.checkpoint import model_from_payload
from workers.sampling import replica_shares

ALL_ROUNDS = 1 << 30  # training_set(ALL_ROUNDS): every label stored so far
FRAC_KEYS = ("frac_accurate", "frac_candidate", "frac_failed")  # selection stats summed over MD runs


class Exploration:
    """The MD half of ``AsyncCampaign`` (its state: ``md``, ``walkers``, ``md_from``, ``info``...)."""

    def idle_samplers(self) -> list[int]:
        busy = {run[0] for run in self.md.values()}
        return [i for i in range(self.c.rt.n_samplers) if i not in busy]

    def feed_samplers(self) -> None:
        """Start MD on idle samplers when the queue will run dry before their picks arrive:
        queued + coming picks below what DFT takes during one MD run (x 1.5, at least 2).
        MD only as fast as DFT consumes: each run's picks are labelled, as in a round, rather
        than the most uncertain of many runs (where MD is faster than DFT, a queue kept a
        run's worth deep served those: strained frames, worse forces where MD runs), and
        the trainer keeps the CPUs in between."""
        picks = self.cfg.selection.picks_per_round
        if self.md_wall_s is None or self.label_wall_s is None:
            need = picks  # no rates measured yet: one run's worth
        else:
            need = max(1.5 * self.md_wall_s * len(self.pool.workers) / max(self.label_wall_s, 1e-3), 2)
        for i in self.idle_samplers():  # older models' frames only fill in: not counted
            coming = self.queue.ranked(source=self.gen) + picks * len(self.md)
            if coming >= need:
                return
            self.start_md(i)

    def start_md(self, index: int) -> None:
        if self.state.stop_reason or self.c.ledger.labels_left() <= 0 or self.model is None:
            return
        c = self.c
        self.runs += 1
        md_cfg = c.md_config(self.cfg.seed * 1000 + 7919 * self.gen + self.runs)
        shares = replica_shares(md_cfg.replicas, c.rt.n_samplers)
        if index >= len(shares):  # more samplers than replicas
            return
        offset, count = shares[index]
        # from the seeds and the MD picks this model trained on, not those that arrived since
        # (its own: MD from them compounds its errors), the older of its newest picks first
        # (MD from the very newest was measured less accurate on an earlier build); see adopt
        starts = c.md_starts(self.md_from, md_cfg.replicas)
        starts = replica_starts(self.walkers, starts, md_cfg.replicas, self.cfg.campaign.persistent_replicas)
        payload, running = self.payload, self.running_model()
        if running is not None:
            payload = ray.put(running[0])
            running = model_from_payload(running[0], "cpu")
        ref = c.rt.start_md(index, payload, starts, md_cfg.model_copy(update={"replicas": count}), offset)
        self.md[ref] = (index, self.gen, time.perf_counter(), running)

    def running_model(self) -> tuple[dict, dict] | None:
        """The generation in training as of its last epoch (``(payload, row)``), when MD is to
        run on it: a warm start (a cold one's early epochs are untrained) that has taken in a
        label the newest generation had not, else None (MD on the newest generation)."""
        if not self.cfg.campaign.md_on_running_model or self.train_ref is None or self.gen < 1:
            return None
        running = self.c.rt.running_model()
        if running is None or running[1].get("n_structures", 0) <= self.train_n_prev:
            return None
        return running

    def on_frames(self, ref) -> None:
        c = self.c
        index, g, t0, running = self.md.pop(ref)
        try:
            frames = ray.get(ref)
        except ray.exceptions.RayActorError as err:  # its node was lost: MD again on a new sampler
            c.say.say(f"  [yellow]a sampler lost[/] ({first_line(err)}); MD again")
            c.rt.replace_sampler(index)
            self.start_md(index)
            return
        self.walkers = walkers_after(self.walkers, frames)
        wall = time.perf_counter() - t0
        self.info["time_sample_s"] = self.info.get("time_sample_s", 0.0) + wall
        self.md_wall_s = moving_average(self.md_wall_s, wall)
        source = g if running is None else g + 1  # MD on generation g + 1 mid-training
        if g != self.gen:  # run by an older model: ranked by the newest one
            self.score(frames)
            self.offer(frames, source, self.labelled_emb)
        elif running is not None:  # ranked by the model it ran on (frames scored in MD)
            labelled = self.c.training_set(ALL_ROUNDS)
            emb = np.stack([r["embedding"] for r in predict(running, labelled)]) if labelled else None
            self.offer(frames, source, emb)
        else:
            self.offer(frames, source, self.labelled_emb)

    def offer(self, frames: list, source: int, labelled_emb) -> None:
        """Rank an MD run's frames (model ``source``'s MD) as a round does, against
        ``labelled_emb`` (the labelled set's embeddings by the model that scored the frames);
        the picks (and audits) join the queue."""
        cfg, info = self.cfg, self.info
        if not frames:
            return
        scores = frame_scores(frames, cfg.selection.strategy)
        emb, stopped = frame_arrays(frames)
        rng = selection_rng(cfg.seed, self.gen, self.runs)
        n_audit = max(cfg.selection.audit_per_round - info["audits"], 0)
        audit_idx, rest = draw_audits(stopped, n_audit, rng)
        sel = select(scores[rest], emb[rest], stopped[rest], cfg.selection, cfg.selection.picks_per_round,
                     labelled_emb, rng)  # fmt: skip
        n = len(frames)
        info["md_frames"] += n
        info["md_stopped"] += int(stopped.sum())
        info["audits"] += len(audit_idx)
        for k in FRAC_KEYS:
            info[k] += getattr(sel, k) * len(rest)
        cands = [self.candidate(frames[int(i)], TOP, "audit", source) for i in audit_idx]
        picked = rest[np.asarray(sel.picked, dtype=int)]
        cands += [self.candidate(frames[int(i)], float(scores[int(i)]), "md", source) for i in picked]
        self.queue.offer(cands)
        if cfg.selection.strategy != "random":
            self.queue.drop_below(sel.window[0])  # the newest model finds these accurate now

    def candidate(self, frame, score: float, origin: str, source: int) -> Candidate:
        a = trimmed(frame.copy())  # what a round's picks.extxyz keeps
        return Candidate(content_key(a, self.c.dft_cfg), a, score, origin, self.gen, source)


def moving_average(mean: float | None, x: float, weight: float = 0.3) -> float:
    """Exponential moving average (the first value as is)."""
    return x if mean is None else (1 - weight) * mean + weight * x
