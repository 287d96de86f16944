"""The campaign's end, either mode: the final model on every label, its checks, the exports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from orchestrator.config import CampaignConfig
from orchestrator.outputs import plots
from orchestrator.outputs.reports import system_metrics
from orchestrator.records.state import CampaignState
from orchestrator.references import final_figures, minimum_references
from orchestrator.session import Session
from orchestrator.steps import sound_training
from workers.errors import DamagedFile
from workers.model.checkpoint import load_checkpoint, model_from_payload
from workers.model.checks import checked_calculator, md_flaw
from workers.model.training import evaluate
from workers.sampling import hottest_k


def final_model(s: Session, rnd: int, n_labels: int) -> tuple[Path, dict]:
    """The final model: the one an asynchronous campaign started while its last labels
    were in flight, when it trained on every label (``n_labels``); else trained now. From
    scratch (``campaign.final_scratch_epochs``) it must hold each seed's DFT minimum, its
    frequencies there no worse than twice the last round's model's, and keep every bond in
    ``campaign.final_scratch_md_runs`` short MD runs from it (``sound_training``,
    ``scratch_md_check``), else it is trained again or warm-started; the figures say how."""
    early = s.rt.final_training()
    if not (early is not None and early["history"] and early["history"][-1].get("n_structures") == n_labels):
        early = None
    if not s.cfg.campaign.final_scratch_epochs:
        return s.save_trained(s.run.final_model, early or s.rt.train(s.training_job(rnd, final=True)), rnd), {}
    job, tries = s.training_job(rnd, final=True), s.cfg.campaign.final_scratch_tries

    def train(seed: int) -> dict:  # the early training is the first try (the job's own seed)
        return early if early is not None and seed == job.seed else s.rt.train(replace(job, seed=seed))

    def said(k: int, flaw: str) -> None:
        then = "trained again on the next training seed" if k < tries else "warm-started instead"
        s.say.say(f"  [yellow]final model from scratch, training {k} of {tries}[/]: {flaw}; {then}")

    def calc_of(out: dict):
        return checked_calculator(model_from_payload(out["payload"], "cpu"))

    refs = minimum_references(s.reference_paths(), last_round_calculator(s, rnd))
    out, n = sound_training(train, calc_of, job.seed, tries, refs, said, scratch_md_check(s.cfg))
    figures = {"final_trainings": float(n + (out is None)), "final_from_scratch": float(out is not None)}
    if out is None:
        out = s.rt.train(s.training_job(rnd, final=True, scratch=False))
    return s.save_trained(s.run.final_model, out, rnd), figures


def scratch_md_check(cfg: CampaignConfig, runs: int | None = None) -> Callable[[object, list], str] | None:
    """``sound_training``'s MD check of a final training from scratch (``md_flaw``): ``runs``
    (None: ``campaign.final_scratch_md_runs``) of ``final_check_md_ps`` at the hottest sampling
    temperature; None where either is 0."""
    runs = cfg.campaign.final_scratch_md_runs if runs is None else runs
    md_ps = cfg.final_check_md_ps
    if not (runs and md_ps):
        return None
    return lambda calc, refs: md_flaw(calc, refs, hottest_k(cfg.sampling), md_ps, runs)


def last_round_calculator(s: Session, rnd: int):
    """The last round's model (the one a final training replaces) as ``checked_calculator``, or
    None where it is missing or damaged (no frequency limit then)."""
    prev = s.run.checkpoint(rnd - 1)
    try:
        return checked_calculator(load_checkpoint(prev)[0]) if prev.exists() else None
    except DamagedFile:
        return None


def finalise(s: Session, state: CampaignState) -> None:
    rnd, run = state.round, s.run  # one past the last finished round: the final model sees every label
    n_labels = len(s.training_set(rnd + 1))
    epochs = s.cfg.campaign.final_scratch_epochs
    how = f" (from scratch, {epochs} epochs, up to {s.cfg.campaign.final_scratch_tries} tries)" if epochs else ""
    with s.say.phase(f"final model on {n_labels} labels{how}"):
        path, trained = final_model(s, rnd, n_labels)
    model, _ = load_checkpoint(path)
    holdout = s.store.holdout_structures()
    final = {f"final_holdout_{k}": v for k, v in (evaluate(model, holdout) if holdout else {}).items()}
    final.update(system_metrics(model, list(s.weights), {"final_holdout": holdout}))
    final["labels_total"] = s.ledger.charged_labels
    final["labels_trained"] = n_labels
    final.update(trained)
    # over the whole campaign: DFT busy / (wall x workers), wall = first dispatch to last label
    final["campaign_dft_utilisation"] = s.clock.utilisation
    final.update(final_figures(s.cfg, s.reference_paths(), model, s.say, s.seeds))
    s.tracker.log_metrics(state.parent_run_id, final, step=rnd)
    # x = labels each model was trained on: the rounds' models, then the final one
    points = [(h.get("labels_trained", np.nan), h["holdout_force_mae"]) for h in state.history]
    points.append((final["labels_trained"], final.get("final_holdout_force_mae", np.nan)))
    curve = plots.learning_curve(
        run.learning_curve,
        {"hold-out force MAE": ([x for x, _ in points], [y for _, y in points])},
        "hold-out force MAE (eV/Å)",
        s.cfg.name,
        xlabel="DFT labels trained on",
    )
    s.store.export_extxyz(run.labels_extxyz)
    s.tracker.log_artifacts(state.parent_run_id, [curve, run.config, run.labels_extxyz])
    s.tracker.log_model(state.parent_run_id, path)
    s.tracker.end(state.parent_run_id)
    state.round_info, state.finished = final, True
    s.save(state)
    s.say.say(f"\n[bold green]done[/]: {state.stop_reason}; {s.ledger.charged_labels} labels charged")
