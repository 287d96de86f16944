"""One potential for several systems, end to end through the real CLI (local Ray, PySCF,
SQLite MLflow): shares by weight, per-system charge, tags, metrics and picks."""

from collections import Counter

import pytest
from ase.io import read

from tests.integration.helpers import REPO, mlflow_runs, run_catal

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY_MULTI = REPO / "tests" / "data" / "tiny_multi.yaml"
NAMES = ("CH3CH2OH", "H2O", "ammonium")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("multi") / "tiny-multi"
    proc = run_catal("run", str(TINY_MULTI), "--set", f"out_dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "picks per system:" in " ".join(proc.stdout.split())
    return out


def test_each_system_gets_its_share_and_its_own_charge(finished):
    from orchestrator.records.store import LabelStore

    rows = LabelStore(finished / "labels.db").labels()
    by = Counter((r.origin, r.atoms.info.get("system")) for r in rows)
    # 8 initial labels and 4 hold-out shared 1:2:1 (water weighs 2): every system has its own
    assert {s: by["seed", s] for s in NAMES} == {"CH3CH2OH": 2, "H2O": 4, "ammonium": 2}
    assert {s: by["holdout", s] for s in NAMES} == {"CH3CH2OH": 1, "H2O": 2, "ammonium": 1}
    assert all(by["md", s] >= 1 for s in NAMES), by  # each system picked from its own MD
    assert sum(by.values()) == len(rows)  # every label knows its system
    # NH4 with 0 charge has 11 electrons (rejected with spin 0): labelled at +1, all of them
    ammonium = [r for r in rows if r.atoms.info.get("system") == "ammonium"]
    assert ammonium and all(r.status.value == "ok" for r in ammonium)
    assert all(r.atoms.get_chemical_formula() == "H4N" for r in ammonium)


def test_per_system_metrics_are_tracked_and_picks_name_their_system(finished):
    _, children = mlflow_runs(finished, "tiny-multi")
    for child in children:
        metrics = child.data.metrics
        for name in NAMES:
            assert metrics[f"holdout_force_mae/{name}"] > 0
        # a system with no audit frame this round has no audit figure (not a nan in the charts)
        per_system = {k: v for k, v in metrics.items() if "/" in k}
        assert all(v == v for v in per_system.values()), per_system
        picks = read(finished / "rounds" / f"round_{int(metrics['round']):03d}" / "picks.extxyz", ":")
        got = [sum(a.info["system"] == name for a in picks) for name in NAMES]
        assert [metrics[f"picks/{name}"] for name in NAMES] == got
    picks = read(finished / "rounds" / "round_001" / "picks.extxyz", ":")
    assert picks and all(a.info["system"] in NAMES for a in picks)
    for a in picks:  # the most uncertain atom each pick names is one of its atoms
        assert 0 <= a.info["forces_std_atom"] < len(a)
    exported = read(finished / "labels.extxyz", ":")
    assert {a.info["system"] for a in exported} == set(NAMES)
