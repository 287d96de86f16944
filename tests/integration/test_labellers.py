"""The `ase` labeller and a periodic cell, end to end through the real CLI (local Ray, SQLite
MLflow): EMT copper labels with stress, a potential that predicts stress, failures as data."""

import numpy as np
import pytest
from ase.calculators.emt import EMT

from tests.integration.helpers import REPO, mlflow_runs, run_catal

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY_CU = REPO / "tests" / "data" / "tiny_cu_emt.yaml"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("cu") / "tiny-cu"
    proc = run_catal("run", str(TINY_CU), "--set", f"out_dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_labels_are_emt_with_stress_and_name_their_labeller(finished):
    from orchestrator.records.store import LabelStore

    rows = LabelStore(finished / "labels.db").labels()
    assert len(rows) >= 12 and all(r.status.value == "ok" for r in rows)
    assert {r.origin for r in rows} >= {"seed", "holdout", "md"}
    for r in rows[:4] + rows[-2:]:  # the stored label is EMT's, stress included
        a = r.atoms.copy()
        assert a.pbc.all() and len(a) == 32
        a.calc = EMT(fixed_cutoff=True)
        np.testing.assert_allclose(r.atoms.get_forces(), a.get_forces(), atol=1e-10)
        np.testing.assert_allclose(r.atoms.get_stress(), a.get_stress(), atol=1e-12)
    import sqlite3

    with sqlite3.connect(finished / "labels.db") as db:  # provenance: which labeller made it
        kinds = {v for (v,) in db.execute("select value from text_key_values where key = 'labeller'")}
    assert kinds == {"ase:ase.calculators.emt:EMT"}


def test_the_final_potential_learned_the_stress_labels(finished):
    """The campaign's trainer fitted the stress (w_stress): on its own training labels the final
    model's stress error is well below the labels' size, and it reports stress through ASE."""
    from orchestrator.records.store import LabelStore
    from workers.model.calculator import CatalCalculator

    calc = CatalCalculator.from_checkpoint(finished / "model.pt")
    labelled = LabelStore(finished / "labels.db").training_structures()
    errors, size = [], []
    for a in labelled:
        b = a.copy()
        b.calc = calc
        errors.append(np.abs(b.get_stress() - a.get_stress()).mean())  # eV/Å^3, Voigt
        size.append(np.abs(a.get_stress()).mean())
    assert np.mean(errors) < 0.5 * np.mean(size), (np.mean(errors), np.mean(size))
    _, children = mlflow_runs(finished, "tiny-cu")
    assert children and all(c.data.metrics["holdout_force_mae"] > 0 for c in children)


def test_a_calculation_the_labeller_cannot_do_is_a_failed_label_not_a_crash(tmp_path):
    """Silicon under EMT (no parameters): every label fails with the calculator's reason; the
    campaign stops with one line saying so, every failure stored."""
    from ase.build import bulk
    from ase.io import write

    from orchestrator.records.store import LabelStore

    write(tmp_path / "si.extxyz", bulk("Si", cubic=True))
    out = tmp_path / "si-run"
    seeds = f"system.structures={tmp_path / 'si.extxyz'}"
    proc = run_catal("run", str(TINY_CU), "--set", f"out_dir={out}", "--set", seeds)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    rows = LabelStore(out / "labels.db").labels()
    assert rows and all(r.status.value == "failed" for r in rows)
    assert all("NotImplementedError" in r.reason and "Si" in r.reason for r in rows)
