"""The campaign's end, either mode: the final model on every label, its checks, the exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from orchestrator.outputs import plots
from orchestrator.outputs.reports import system_metrics
from orchestrator.records.state import CampaignState
from orchestrator.references import final_figures
from orchestrator.session import Session
from workers.model.checkpoint import load_checkpoint
from workers.model.training import evaluate


def final_model(s: Session, rnd: int, n_labels: int) -> Path:
    """The final model: the one an asynchronous campaign started while its last labels
    were in flight, when it trained on every label (``n_labels``); else trained now."""
    out = s.rt.final_training()
    if out is not None and out["history"] and out["history"][-1].get("n_structures") == n_labels:
        return s.save_trained(s.run.final_model, out, rnd)
    return s.train(rnd, final=True)


def finalise(s: Session, state: CampaignState) -> None:
    rnd, run = state.round, s.run  # one past the last finished round: the final model sees every label
    n_labels = len(s.training_set(rnd + 1))
    with s.say.phase(f"final model on {n_labels} labels"):
        path = final_model(s, rnd, n_labels)
    model, _ = load_checkpoint(path)
    holdout = s.store.holdout_structures()
    final = {f"final_holdout_{k}": v for k, v in (evaluate(model, holdout) if holdout else {}).items()}
    final.update(system_metrics(model, list(s.weights), {"final_holdout": holdout}))
    final["labels_total"] = s.ledger.charged_labels
    final["labels_trained"] = n_labels
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
