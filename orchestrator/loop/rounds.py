"""Synchronous rounds: round 0 labels an initial set and a hold-out, then each round trains ->
samples -> selects -> labels -> evaluates -> logs -> checkpoints.

Durability: the campaign state (round, phase within it) is a JSON file rewritten atomically
after every phase; each phase's product is on disk before the phase is marked done (the
round's checkpoint after training, its picks after selection, each label as it arrives).
``resume`` therefore redoes at most the interrupted phase, and labels already stored are
reused, never recomputed nor re-charged.
"""

from __future__ import annotations

import time

from ase.io import read

from orchestrator.initial import async_round0, initial_items
from orchestrator.loop.repairs import frames_intact, round_model
from orchestrator.outputs import reports
from orchestrator.records.labelling import label_structures, round0_failure_summary
from orchestrator.records.state import CampaignState
from orchestrator.references import seed_normal_modes
from orchestrator.seeds import round_md_seed
from orchestrator.selection import rank_frames, selection_rng
from orchestrator.session import Session
from orchestrator.steps import (
    draw_probes,
    labelled_embeddings,
    md_config,
    md_starts,
    picks_line,
    probe_frames,
    trimmed,
)
from workers.dft import Status
from workers.errors import CampaignFailed
from workers.files import write_frames
from workers.harmonic import load_reference
from workers.model.checkpoint import load_checkpoint
from workers.model.committee import committee_predictions


def initial_round(s: Session, state: CampaignState) -> None:
    cfg = s.cfg
    with s.rt.dft_pool() as pool:
        pool.warm_up()  # worker start-up (PySCF imports) is not DFT time on offer
        s.rt.start_async_actors()
        s.clock.started()
        new_refs = [p for p in s.reference_paths() if not p.exists()]
        modes = seed_normal_modes(cfg, s.reference_paths(), s.seeds, pool, s.ledger, s.say)
        s.clock.busy_s += sum(load_reference(p).wall_s for p in new_refs)  # one worker each
        items = initial_items(cfg, s.seeds, modes)
        if cfg.campaign.mode == "async":  # the rest joins the queue while the first model trains
            items = async_round0(items)
        what = "initial set" + (" + hold-out" if any(o == "holdout" for _, o in items) else "")
        with s.say.dft_progress(len(items), f"round 0: labelling {what}") as tick:
            report = label_structures(
                items, 0, pool, s.store, s.ledger, s.dft_cfg, per_round_limit=False, on_label=s.timed(tick)
            )
    n_ok = sum(1 for lab in report.all_labels if lab.status is Status.OK)
    s.say.say(f"  {n_ok}/{len(items)} labelled ({report.failures} failed), {report.dft_seconds:.1f} DFT s")
    s.say_moved(report)
    usable = len(s.store.training_structures())
    if usable < max(2, min(cfg.system.initial_labels, len(items)) // 2):
        raise CampaignFailed(round0_failure_summary(s.store.labels(), usable, cfg.system.initial_labels))
    s.tracker.log_metrics(
        state.parent_run_id,
        {
            "labels_total": s.ledger.charged_labels,
            "labels_initial": len(items),
            "dft_seconds": report.dft_seconds,
            # minima + Hessians of normal-mode sampling (CPU-seconds, charged to the hours)
            "harmonic_dft_seconds": sum(load_reference(p).cost_s for p in s.reference_paths()),
            **({"lowest_mode_cm": float(min(m.frequencies_cm.min() for m in modes))} if modes else {}),
        },
        step=0,
    )
    state.round, state.phase = 1, "start"
    s.save(state)


def active_round(s: Session, state: CampaignState) -> None:
    rnd, run = state.round, s.run
    s.say.say(f"\n[bold]round {rnd}[/]")
    state.round_run_id = s.tracker.start_round(state.parent_run_id, rnd, state.round_run_id)
    s.save(state)
    info = state.round_info
    if state.phase == "start":
        t0 = time.perf_counter()
        models = f" ({s.members} committee members)" if s.members > 1 else ""
        with s.say.phase(f"training on {len(s.training_set(rnd))} labels{models}"):
            for member in range(s.members):
                s.train(rnd, member=member)
        info["time_train_s"] = time.perf_counter() - t0
        state.phase = "trained"
        s.save(state)
    model, ckpt = round_model(s, rnd)
    model = model.eval()
    if state.phase in ("selected", "labelled") and not frames_intact(s, rnd, info):
        state.phase = "trained"  # the selection made again (the same MD seeds)
    if state.phase == "trained":
        info.update(sample_and_select(s, model, rnd))
        state.phase = "selected"
        s.save(state)
    picks = read(run.picks(rnd), index=":") if run.picks(rnd).stat().st_size else []
    audit_file = run.audit(rnd)
    audits = read(audit_file, index=":") if audit_file.exists() and audit_file.stat().st_size else []
    if state.phase == "selected":
        t0 = time.perf_counter()
        what = f"{len(picks)} picks" + (f" + {len(audits)} audit frames" if audits else "")
        items = [(a, "audit") for a in audits] + [(a, "probe" if "probe" in a.info else "md") for a in picks]
        with s.rt.dft_pool() as pool, s.say.dft_progress(len(items), f"round {rnd}: DFT on {what}") as tick:
            s.clock.started()
            report = label_structures(items, rnd, pool, s.store, s.ledger, s.dft_cfg, on_label=s.timed(tick))
        s.say_moved(report)
        info.update(
            time_label_s=time.perf_counter() - t0,
            dft_utilisation=report.utilisation,
            budget_refused=float(report.budget_exhausted),
        )
        state.phase = "labelled"
        s.save(state)
    metrics = reports.round_metrics(s.cfg, s.store, s.ledger, s.dft_cfg, s.score_key, rnd, model, ckpt, picks, info)
    reports.log_round(s.run, s.store, s.tracker, s.say, s.dft_cfg, s.score_key, state, rnd, model, picks, metrics)
    state.history.append(metrics)
    state.round, state.phase, state.round_run_id, state.round_info = rnd + 1, "start", None, {}
    s.save(state)


def sample_and_select(s: Session, model, rnd: int) -> dict:
    cfg = s.cfg
    md_cfg = md_config(cfg, round_md_seed(cfg, rnd))
    labelled = s.training_set(rnd)
    starts = md_starts(s.seeds, s.reference_paths(), s.md_start_labels(rnd), md_cfg.replicas, s.systems)
    t0 = time.perf_counter()
    with s.say.phase(f"MD: {md_cfg.replicas} replicas x {md_cfg.steps} steps ({md_cfg.engine})"):
        frames = s.rt.sample(model, starts, md_cfg)
    if s.members > 1:  # DP-GEN's force deviation over the committee, per frame
        others = [load_checkpoint(s.run.checkpoint(rnd, m))[0].eval() for m in range(1, s.members)]
        deviation = committee_predictions([model, *others], frames)["max_devi_f"] if frames else []
        for frame, dev in zip(frames, deviation, strict=True):
            frame.info["committee_force_dev"] = float(dev)
    t_sample = time.perf_counter() - t0
    t0 = time.perf_counter()
    room = min(cfg.budget.max_labels_per_round, max(s.ledger.labels_left(), 0))
    n_audit = min(cfg.selection.audit_per_round, room)
    labelled_emb = labelled_embeddings(model, labelled)
    # audit frames first (served first from the round's room), then probes, then picks from the rest
    n_probes = min(cfg.selection.probes_per_round, room - n_audit)
    found = probe_frames(model, frames, cfg.selection.probe_paths) if n_probes > 0 else []
    probes = draw_probes(found, cfg.selection, n_probes, labelled_emb, selection_rng(cfg.seed, rnd, 1))
    ranked = rank_frames(frames, cfg.selection, n_audit, room - len(probes), labelled_emb,
                         selection_rng(cfg.seed, rnd), s.weights)  # fmt: skip
    picks = [trimmed(p) for p in probes] + [trimmed(frames[int(i)]) for i in ranked.picks]
    audits = [trimmed(frames[int(i)]) for i in ranked.audits]
    s.run.round_dir(rnd).mkdir(parents=True, exist_ok=True)
    write_frames(s.run.audit(rnd), audits)
    write_frames(s.run.picks(rnd), picks)
    sel = ranked.selection
    lo, hi, n_in = *sel.window, sel.counts["eligible"]
    audit_note = f" + {len(audits)} at random (audit)" if audits else ""
    if found:  # the picks' probes first
        audit_note += f"; {len(probes)} of {len(found)} probes ({', '.join(p.info['probe'] for p in probes)})"
    s.say.say(f"  {len(frames)} frames, {n_in} in window [{lo:.3g}, {hi:.3g}], {len(picks)} picked{audit_note}")
    if line := picks_line(picks):
        s.say.say(f"  picks {line}")
    return {
        "n_picks": len(picks),
        "n_probes": len(probes),
        "n_probes_found": len(found),
        "n_audits": len(audits),
        "time_sample_s": t_sample,
        "time_select_s": time.perf_counter() - t0,
        "md_frames": len(frames),
        "md_stopped": int(ranked.stopped.sum()),
        "frac_accurate": sel.frac_accurate,
        "frac_candidate": sel.frac_candidate,
        "frac_failed": sel.frac_failed,
    }


def check_stop(s: Session, state: CampaignState) -> None:
    reason = s.stop_rule(state.history[-1])
    if reason:
        state.stop_reason, state.phase = reason, "final"
        s.save(state)
