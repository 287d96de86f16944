"""What a round (or an asynchronous generation) reports: its metrics, plots and MLflow run."""

from __future__ import annotations

import numpy as np

from orchestrator.outputs import plots
from orchestrator.outputs.metrics import calibration
from orchestrator.records.labelling import pick_errors
from orchestrator.records.state import CampaignState
from workers.dft import Status
from workers.model.calculator import predict
from workers.model.calibration import coverage
from workers.model.training import evaluate


def error_bar_metrics(model, structures: list) -> dict:
    """The calibration in force (hold-out fitted) and how often its 68% / 95% intervals
    cover the errors on ``structures`` (the round's audit frames: MD, never trained on)."""
    cal = model.calibration
    out = {"calibration_energy_scale": cal.energy_scale, "calibration_forces_scale": cal.forces_scale,
           "calibration_energy_power": cal.energy_power, "calibration_forces_power": cal.forces_power,
           "calibration_forces_distance_power": cal.forces_distance_power}  # fmt: skip
    preds = predict(model, structures) if structures else []
    if not preds or "forces_std" not in preds[0]:
        return out
    f_err = np.concatenate([p["forces"] - a.get_forces() for p, a in zip(preds, structures, strict=True)])
    f_std = np.concatenate([p["forces_std"] for p in preds])[:, None]
    e_err = np.array([p["energy"] - a.get_potential_energy() for p, a in zip(preds, structures, strict=True)])
    e_std = np.array([p["energy_std"] for p in preds])
    out.update(
        {
            "audit_forces_coverage_68": coverage(f_err, f_std),
            "audit_forces_coverage_95": coverage(f_err, f_std, cal.forces_k95),
            "audit_energy_coverage_95": coverage(e_err, e_std, cal.energy_k95),
        }
    )
    return out


def system_metrics(model, names: list[str], sets: dict[str, list], picks: list | None = None) -> dict:
    """Per-system errors where a campaign has several systems (``{}`` for one):
    ``<set>_force_mae/<system>`` and ``<set>_energy_mae/<system>`` for each named set of
    labelled structures (tagged ``info["system"]``; none where the set has no structure of
    that system, e.g. a round's two audits), and ``picks/<system>`` (how many of the round's
    picks each system got)."""
    if len(names) < 2:
        return {}
    out = {}
    for what, structures in sets.items():
        for name in names:
            mine = [a for a in structures if a.info.get("system") == name]
            if mine:
                m = evaluate(model, mine)
                out[f"{what}_force_mae/{name}"] = m["force_mae"]
                out[f"{what}_energy_mae/{name}"] = m["energy_mae"]
    for name in names if picks is not None else []:
        out[f"picks/{name}"] = float(sum(1 for a in picks if a.info.get("system") == name))
    return out


def round_metrics(cfg, store, ledger, dft_cfg, score_key: str, rnd: int, model, ckpt: dict, picks: list,
                  info: dict) -> dict:  # fmt: skip
    """A round's (or generation's) metrics: hold-out and audit errors of its ``model``,
    its picks' errors against their selection score, labels, DFT use, phase times."""
    holdout = store.holdout_structures()
    hm = evaluate(model, holdout) if holdout else {}
    # the round's random MD frames, scored by the model that ran the MD; no model has
    # trained on them yet (they join the training set from the next round on)
    audit = [s.atoms for s in store.labels(al_round=rnd, origin="audit", status="ok")]
    am = evaluate(model, audit) if audit else {}
    new = store.labels(al_round=rnd)
    pe = pick_errors(picks, store, dft_cfg, score_key)
    cal = calibration(pe["entropy"], pe["error"])
    cal_score = calibration(pe["score"], pe["error"])
    names = [e.label for e in cfg.system.entries()]
    return {
        **error_bar_metrics(model, audit),
        **system_metrics(model, names, {"holdout": holdout, "audit": audit}, picks),
        "round": rnd,
        "labels_total": ledger.charged_labels,
        "labels_round": len(new),
        # the round's model (the one the hold-out metrics score) was trained on these
        "labels_trained": info.get("labels_trained", len(store.training_structures(rnd))),
        "budget_left": cfg.budget.max_labels - ledger.charged_labels,
        "holdout_energy_mae": hm.get("energy_mae", float("nan")),
        "holdout_force_mae": hm.get("force_mae", float("nan")),
        "audit_energy_mae": am.get("energy_mae", float("nan")),
        "audit_force_mae": am.get("force_mae", float("nan")),
        "audit_labels": float(len(audit)),
        "picks_energy_mae_per_atom": float(np.mean(pe["error"])) if len(pe["error"]) else float("nan"),
        "entropy_spearman": cal["spearman"],
        "entropy_auroc": cal["auroc"],
        "score_spearman": cal_score["spearman"],  # the selection strategy's own score vs error
        "score_auroc": cal_score["auroc"],
        "dft_seconds": float(sum(s.wall_s for s in new)),
        "dft_failures": float(sum(1 for s in new if s.status is not Status.OK)),
        "support_clamped": float(ckpt.get("support_clamped", 0)),
        "train_structures_per_s": float(ckpt.get("structures_per_s", 0.0)),
        "time_train_s": info.get("time_train_s", 0.0),
        "time_sample_s": info.get("time_sample_s", 0.0),
        "time_select_s": info.get("time_select_s", 0.0),
        "time_label_s": info.get("time_label_s", 0.0),
        "dft_utilisation": info.get("dft_utilisation", float("nan")),
        "budget_refused": info.get("budget_refused", 0.0),
        **{k: info[k] for k in ("md_frames", "md_stopped", "frac_accurate", "frac_candidate", "frac_failed")},
        "n_probes": float(info.get("n_probes", 0)),  # picks that are probes (selection.probes_per_round)
        "n_probes_found": float(info.get("n_probes_found", 0)),  # structures past a turn of the model, drawn among
    }


def log_round(run, store, tracker, say, dft_cfg, score_key: str, state: CampaignState, rnd: int, model,
              picks: list, metrics: dict, kind: str = "round") -> None:  # fmt: skip
    """Its plots (hold-out parity, picks' score vs error) and metrics to the round's MLflow
    child run and the campaign run; the child run closed; the console's round summary."""
    rdir = run.round_dir(rnd)
    holdout = store.holdout_structures()
    artifacts = [run.picks(rnd)]
    if holdout:
        preds = predict(model, holdout)
        artifacts.append(
            plots.parity(
                rdir / "parity_holdout.png",
                [a.get_potential_energy() / len(a) for a in holdout],
                [p["energy"] / len(a) for p, a in zip(preds, holdout, strict=True)],
                np.concatenate([a.get_forces().ravel() for a in holdout]),
                np.concatenate([p["forces"].ravel() for p in preds]),
                f"{kind} {rnd}: hold-out",
            )
        )
    pe = pick_errors(picks, store, dft_cfg, score_key)
    if np.isfinite(pe["entropy"]).any():
        plot = plots.entropy_vs_error(rdir / "entropy_vs_error.png", pe["entropy"], pe["error"], f"{kind} {rnd}: picks")
        artifacts.append(plot)
    tracker.log_metrics(state.round_run_id, metrics, step=rnd)
    tracker.log_metrics(state.parent_run_id, metrics, step=rnd)
    tracker.log_artifacts(state.round_run_id, artifacts)
    tracker.end(state.round_run_id)
    say.round_summary(rnd, metrics, kind)
