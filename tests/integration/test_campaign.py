"""Whole campaigns through the real CLI: local Ray, PySCF HF/STO-3G, SQLite MLflow, ase.db."""

import json
import signal
import subprocess

import numpy as np
import pytest
import torch

from orchestrator.references import install_references
from tests.integration.helpers import TINY, catal_cmd, env, label_keys, mlflow_runs, run_catal, wait_for_state

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROUND_METRICS = {
    "labels_total", "labels_round", "labels_trained", "budget_left", "holdout_energy_mae", "holdout_force_mae",
    "entropy_spearman", "entropy_auroc", "frac_accurate", "frac_candidate", "frac_failed",
    "dft_seconds", "dft_failures", "support_clamped", "time_train_s", "time_sample_s", "time_label_s",
    "audit_force_mae", "audit_energy_mae", "audit_labels",
}  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One uninterrupted tiny campaign (2 rounds); its directory."""
    out = tmp_path_factory.mktemp("campaign") / "tiny"
    proc = run_catal("run", str(TINY), "--set", f"out_dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mlflow ui --backend-store-uri" in proc.stdout
    return out


def test_two_rounds_tracked_in_mlflow(finished):
    parents, children = mlflow_runs(finished)
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["budget.max_labels"] == "24"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    for child in children:
        assert set(child.data.metrics) >= ROUND_METRICS, ROUND_METRICS - set(child.data.metrics)
        assert child.info.status == "FINISHED"
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{finished / 'mlflow.db'}")
    artifacts = {a.path for a in client.list_artifacts(children[0].info.run_id)}
    assert {"picks.extxyz", "parity_holdout.png", "entropy_vs_error.png"} <= artifacts
    top = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"learning_curve.png", "model", "labels.extxyz"} <= top


def test_store_holds_exactly_the_charged_labels_within_budget(finished):
    from orchestrator.records.store import LabelStore

    rows = LabelStore(finished / "labels.db").labels()
    keys = [r.key for r in rows]
    assert len(keys) == len(set(keys))
    assert sum(r.charged for r in rows) == len([r for r in rows if r.status.value != "rejected"])
    assert sum(r.charged for r in rows) <= 24
    per_round = {}
    for r in rows:
        per_round[r.round] = per_round.get(r.round, 0) + r.charged
    assert per_round[0] == 8 + 3  # initial + hold-out
    assert all(per_round.get(k, 0) <= 3 for k in (1, 2))
    state = json.loads((finished / "state.json").read_text())
    assert state["finished"] and state["stop_reason"].startswith("max rounds")


def test_final_model_loads_in_the_ase_calculator(finished):
    from ase.build import molecule

    from workers.model import CatalCalculator

    ckpt = torch.load(finished / "model.pt", weights_only=True)
    assert ckpt["format"] == "catal-potential-v5"
    assert ckpt["calibration"]["n_structures"] == 3  # rescaled on the campaign's 3 hold-out labels
    atoms = molecule("CH3CH2OH")
    atoms.calc = CatalCalculator.from_checkpoint(finished / "model.pt")
    assert atoms.get_forces().shape == (9, 3)
    f_std = atoms.calc.results["forces_std"]
    assert f_std.shape == (9,) and np.isfinite(f_std).all()
    assert atoms.calc.results["forces_std_max"] == pytest.approx(f_std.max())
    assert atoms.calc.calibration.forces_scale == pytest.approx(ckpt["calibration"]["forces_scale"])
    for name in ("round_001.pt", "round_002.pt"):
        assert (finished / "checkpoints" / name).exists()


def test_audit_frames_are_scored_by_the_model_that_has_not_trained_on_them(finished):
    """Round r's random MD frames are scored with round r's model; round r+1 trains on them."""
    from orchestrator.records.store import LabelStore
    from workers.model import evaluate, load_checkpoint

    store = LabelStore(finished / "labels.db")
    audit = [s.atoms for s in store.labels(al_round=1, origin="audit", status="ok")]
    assert len(audit) == 1
    _, children = mlflow_runs(finished)
    logged = next(c for c in children if c.data.tags["catal.round"] == "1").data.metrics["audit_force_mae"]
    before = evaluate(load_checkpoint(finished / "checkpoints" / "round_001.pt")[0], audit)["force_mae"]
    after = evaluate(load_checkpoint(finished / "checkpoints" / "round_002.pt")[0], audit)["force_mae"]
    assert before != after  # round 2's model trained on the frame, so it scores it differently
    # the logged value is round 1's score (float32 round trip), far closer to it than to round 2's
    assert abs(logged - before) < 0.1 * abs(logged - after), (logged, before, after)
    ckpt = torch.load(finished / "checkpoints" / "round_002.pt", weights_only=True)
    assert ckpt["round"] == 2  # round 2's model saw round 1's audit frame in its training set
    trained = {s.key for s in store.labels(status="ok") if s.origin != "holdout" and s.round < 2}
    assert {s.key for s in store.labels(al_round=1, origin="audit")} <= trained


def test_normal_mode_reference_is_stored_and_charged(finished):
    from workers.harmonic import load_reference

    ref = load_reference(finished / "harmonic" / "seed_000.npz")
    assert ref.hessian_ev_a2.shape == (27, 27) and ref.cost_s > 0
    _, children = mlflow_runs(finished)
    parents, _ = mlflow_runs(finished)
    assert parents[0].data.metrics["harmonic_dft_seconds"] == pytest.approx(ref.cost_s)
    assert parents[0].data.metrics["lowest_mode_cm"] > 100.0


def test_md_starts_from_the_dft_minimum_and_the_newest_labels(finished):
    """Replicas start at the seed's stored DFT minimum (not the ase.build geometry) and the
    newest labelled structures."""
    from ase.build import molecule

    from orchestrator.config import load_config
    from orchestrator.references import reference_paths
    from orchestrator.steps import md_starts
    from workers.harmonic import load_reference
    from workers.structures import load_seed_structures

    cfg = load_config(finished / "config.yaml")
    minimum = load_reference(finished / "harmonic" / "seed_000.npz").atoms
    labelled = [molecule("CH3CH2OH") for _ in range(3)]
    for k, a in enumerate(labelled):
        a.positions += 0.01 * (k + 1)
    seeds = load_seed_structures(cfg.system.structures)
    starts = md_starts(seeds, reference_paths(cfg, finished, seeds), labelled, 2)
    assert len(starts) == 3 and all(a.calc is None for a in starts)
    np.testing.assert_allclose(starts[0].positions, minimum.positions, atol=1e-12)
    assert np.abs(starts[0].positions - molecule("CH3CH2OH").positions).max() > 1e-3  # relaxed, not as built
    np.testing.assert_allclose(starts[1].positions, labelled[1].positions)
    np.testing.assert_allclose(starts[2].positions, labelled[2].positions)


def test_status_and_export_commands(finished, tmp_path):
    proc = run_catal("status", str(finished))
    assert proc.returncode == 0, proc.stderr
    assert "finished" in proc.stdout and "hold-out F" in proc.stdout and "audit F" in proc.stdout
    dest = tmp_path / "labels.extxyz"
    proc = run_catal("export", str(finished), "--format", "extxyz", "-o", str(dest))
    assert proc.returncode == 0 and dest.exists()
    from ase.io import read

    assert len(read(dest, index=":")) == len(label_keys(finished))


def test_resuming_a_finished_campaign_changes_nothing(finished):
    before = label_keys(finished)
    proc = run_catal("resume", str(finished))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "already finished" in proc.stdout
    assert label_keys(finished) == before
    parents, _ = mlflow_runs(finished)
    assert parents[0].info.status == "FINISHED"


def test_run_refuses_an_existing_campaign(finished):
    proc = run_catal("run", str(TINY), "--set", f"out_dir={finished}")
    assert proc.returncode == 2 and "catal resume" in proc.stderr


def test_killed_driver_resumes_without_repeating_dft(finished, tmp_path):
    out = tmp_path / "tiny"
    install_references(_references(finished), out)  # the same reference: the same labels
    proc = subprocess.Popen(
        catal_cmd("run", str(TINY), "--set", f"out_dir={out}"),
        env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    state_file = out / "state.json"
    # kill mid-round: once round 1's picks are chosen, while its DFT is under way
    _wait_for_round_1_labelling(proc, out)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the dead driver's lock is left on disk, but the OS released it: resume is not refused
    assert f'"pid": {proc.pid}' in (out / ".catal.lock").read_text()
    before = label_keys(out)
    assert json.loads(state_file.read_text())["finished"] is False
    reference = out / "harmonic" / "seed_000.npz"
    stamp = (reference.stat().st_mtime_ns, reference.read_bytes())

    resumed = run_catal("resume", str(out))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # the minimum and Hessian are read back, never recomputed
    assert (reference.stat().st_mtime_ns, reference.read_bytes()) == stamp
    assert "DFT minimum + Hessian" not in resumed.stdout
    after = label_keys(out)
    assert len(after) == len(set(after))  # no structure labelled twice
    assert set(before) <= set(after)
    assert set(after) == set(label_keys(finished))  # same labels as the uninterrupted run
    parents, children = mlflow_runs(out)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(c.data.tags["catal.round"] for c in children) == ["1", "2"]


def _references(finished) -> list:
    """The uninterrupted campaign's minimum + Hessian: later campaigns start from a copy."""
    return sorted((finished / "harmonic").glob("seed_*.npz"))


def _wait_for_round_1_labelling(proc, out):
    wait_for_state(proc, out, lambda st: st.get("round") == 1 and st.get("phase") in ("selected", "labelled"))


def test_one_driver_per_directory_and_sigterm_stops_cleanly(finished, tmp_path):
    out = tmp_path / "tiny"
    install_references(_references(finished), out)
    proc = subprocess.Popen(
        catal_cmd("run", str(TINY), "--set", f"out_dir={out}"),
        env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_for_round_1_labelling(proc, out)
    second = run_catal("resume", str(out))  # a second driver on the same directory
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "in use by another catal driver" in lines[0] and f"pid {proc.pid}" in lines[0]

    proc.send_signal(signal.SIGTERM)  # what `ray job stop` and batch schedulers send
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-3000:]
    assert "terminated (SIGTERM)" in stdout and f"catal resume {out}" in stdout
    parents, children = mlflow_runs(out)
    assert parents[0].info.status == "KILLED"
    assert all(c.info.status in ("KILLED", "FINISHED") for c in children)
    before = label_keys(out)

    resumed = run_catal("resume", str(out))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = label_keys(out)
    assert len(after) == len(set(after)) and set(before) <= set(after)  # nothing labelled twice
    assert set(after) == set(label_keys(finished))
    parents, _ = mlflow_runs(out)
    assert parents[0].info.status == "FINISHED"


def test_round_0_failures_stop_the_campaign_with_a_summary(tmp_path):
    """Every SCF capped at 1 cycle with no ladder: round 0 fails, one line says why, the
    labels stay, the MLflow run is FAILED."""
    out = tmp_path / "tiny_fail"
    sets = [f"out_dir={out}", "dft.max_cycle=1", "dft.ladder=false", "system.initial=rattle"]
    proc = run_catal("run", str(TINY), *[a for s in sets for a in ("--set", s)])
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("catal:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "round 0: 11/11 labels failed (SCF not converged x11)" in lines[0], lines[0]
    assert len(label_keys(out)) == 11  # failures are stored (and charged) as data
    parents, _ = mlflow_runs(out)
    assert parents[0].info.status == "FAILED"


def test_a_campaign_with_the_mace_backbone(finished, tmp_path):
    """The same tiny campaign, one round, on MACE (mace-torch): trainer, sampler (batched MD),
    selection and the final checkpoint all work with the other backbone."""
    out = tmp_path / "tiny_mace"
    install_references(_references(finished), out)
    overrides = [
        f"out_dir={out}",
        "model.backbone.kind=mace",
        "model.backbone.features=8",
        "model.backbone.correlation=2",
        "training.epochs=12",
        "warm_start_epochs=6",
        "stop.max_rounds=1",
    ]
    proc = run_catal("run", str(TINY), *[a for o in overrides for a in ("--set", o)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    from ase.build import molecule

    from workers.model.calculator import CatalCalculator

    calc = CatalCalculator.from_checkpoint(out / "model.pt")
    assert calc.model.cfg.backbone.kind == "mace"
    atoms = molecule("CH3CH2OH")
    atoms.calc = calc
    assert torch.isfinite(torch.as_tensor(atoms.get_forces())).all()
    assert atoms.calc.results["energy_std"] > 0
    parents, children = mlflow_runs(out)
    assert len(children) == 1 and parents[0].data.params["model.backbone.kind"] == "mace"


def test_a_final_model_from_scratch_is_kept_only_where_it_holds_the_dft_minimum(finished, tmp_path):
    """``campaign.final_scratch_epochs`` with ``final_scratch_tries``: the final model trained
    from scratch (its own epochs) is kept only without imaginary modes at the seed's DFT minimum
    and with its bonds kept in a short MD run from it (``final_scratch_md_runs``); else trained
    again on another seed, else the warm-started final model (warm_start_epochs)."""
    from workers.model.checkpoint import load_checkpoint

    out = tmp_path / "tiny_scratch"
    install_references(_references(finished), out)
    overrides = [f"out_dir={out}", "stop.max_rounds=1", "campaign.final_scratch_epochs=30",
                 "campaign.final_scratch_tries=2", "campaign.final_scratch_md_runs=1"]  # fmt: skip
    proc = run_catal("run", str(TINY), *[a for o in overrides for a in ("--set", o)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    parents, _ = mlflow_runs(out)
    final = parents[0].data.metrics
    _, ckpt = load_checkpoint(out / "model.pt")
    flaws = proc.stdout.count("final model from scratch, training")
    assert final["final_trainings"] == flaws + 1 and flaws <= 2
    if final["final_from_scratch"]:  # the kept training was checked at the same minimum as the final figures
        assert ckpt["epoch"] == 30 and final["final_n_imaginary"] == 0 and flaws < 2
    else:
        assert ckpt["epoch"] == 20 and flaws == 2 and "warm-started instead" in proc.stdout
