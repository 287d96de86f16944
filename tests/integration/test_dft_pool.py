"""The DFT actor pool under a real local Ray, with real PySCF at HF/STO-3G."""

import pytest
from ase.build import molecule

from orchestrator.records.budget import BudgetLimits, Ledger
from orchestrator.records.labelling import label_structures
from orchestrator.records.store import LabelStore
from workers.dft import DFTConfig, Status
from workers.structures import rattled_copies

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def ethanols():
    return rattled_copies(molecule("CH3CH2OH"), 8, stdev_a=(0.02, 0.05), seed=11)


def test_pool_labels_eight_ethanols(ray_local, ethanols, tmp_path):
    from workers.actors import DFTPool

    cfg = DFTConfig(threads=1)
    pool = DFTPool(cfg, n_workers=2)
    pool.warm_up()  # actor start-up (importing PySCF) is not labelling time
    store = LabelStore(tmp_path / "labels.db")
    ledger = Ledger(BudgetLimits(max_labels=8, max_labels_per_round=8, holdout_labels=0))
    try:
        report = label_structures([(a, "md") for a in ethanols], 1, pool, store, ledger, cfg)
    finally:
        pool.shutdown()
    assert len(report.stored) == 8 and not report.budget_exhausted
    assert all(s.status is Status.OK for s in report.stored)
    assert len(store) == 8 == ledger.charged_labels
    assert report.utilisation > 0.5


@pytest.mark.parametrize("room", [True, False], ids=["replaced", "pool-shrinks"])
def test_killed_worker_still_yields_every_label_once(ray_local, ethanols, tmp_path, room):
    """A worker lost mid-label: its jobs go to the others; it is replaced when the cluster has
    room, else the pool goes on with the workers left (a lost node's CPUs are gone)."""
    from workers.actors import DFTPool

    cfg = DFTConfig(threads=1)
    pool = DFTPool(cfg, n_workers=2, can_replace=lambda: room)
    pool.warm_up()
    store = LabelStore(tmp_path / "labels.db")
    ledger = Ledger(BudgetLimits(max_labels=8, max_labels_per_round=8, holdout_labels=0))
    killed = []

    def kill_once(stored):
        # after the first label, worker 0 is busy with its next queued structure: kill it
        if not killed:
            killed.append(pool.workers[0])
            ray_local.kill(pool.workers[0])

    try:
        report = label_structures([(a, "md") for a in ethanols], 1, pool, store, ledger, cfg, on_label=kill_once)
        left = list(pool.workers)
    finally:
        pool.shutdown()
    assert killed and report.resubmitted >= 1
    assert killed[0] not in left and len(left) == (2 if room else 1)
    keys = [s.key for s in store.labels()]
    assert len(keys) == 8 == len(set(keys))  # every label, each stored once
    assert ledger.charged_labels == 8 and ledger.reservations == {}
    assert sum(s.charged for s in store.labels()) == 8
    assert len(report.stored) == 8
