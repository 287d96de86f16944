"""The ase.db label store: content keys, durable rows, reuse with zero DFT, extxyz export."""

import numpy as np
import pytest
from ase.build import molecule
from ase.io import read

from orchestrator.records.budget import BudgetLimits, Ledger
from orchestrator.records.labelling import SerialPool, label_structures
from orchestrator.records.store import LabelStore, content_key
from workers.dft import DFTConfig, Status
from workers.structures import rattled_copies


class CountingPool(SerialPool):
    """A real serial PySCF pool that counts the DFT calls it makes."""

    calls = 0

    def run(self, jobs, on_result, on_dispatch=None, on_batch=None):
        def counted():
            for job in jobs:
                self.calls += 1
                yield job

        return super().run(counted(), on_result, on_dispatch, on_batch)


def test_content_key_rounding_and_settings():
    cfg = DFTConfig()
    a = molecule("H2O")
    b = a.copy()
    b.positions[0, 0] += 2e-7  # below the 1e-5 Å rounding
    assert content_key(a, cfg) == content_key(b, cfg)
    b.positions[0, 0] += 1e-4
    assert content_key(a, cfg) != content_key(b, cfg)
    assert content_key(a, cfg) != content_key(a, DFTConfig(basis="6-31g"))
    assert content_key(a, cfg) == content_key(a, DFTConfig(threads=4))  # threads don't change labels


def test_second_run_does_no_dft_and_charges_nothing(tmp_path):
    cfg = DFTConfig()
    store = LabelStore(tmp_path / "labels.db")
    ledger = Ledger(BudgetLimits(max_labels=10, max_labels_per_round=10, holdout_labels=0))
    water = rattled_copies(molecule("H2O"), 4, seed=1)
    items = [(a, "seed") for a in water]
    pool = CountingPool(cfg)
    first = label_structures(items, 0, pool, store, ledger, cfg)
    assert pool.calls == 4 and len(first.stored) == 4 and ledger.charged_labels == 4

    # a new process: fresh store handle, ledger rebuilt from the store
    store2 = LabelStore(tmp_path / "labels.db")
    ledger2 = Ledger.from_charges(ledger.limits, store2.charges())
    assert ledger2.charged_labels == 4
    pool2 = CountingPool(cfg)
    second = label_structures(items, 0, pool2, store2, ledger2, cfg)
    assert pool2.calls == 0
    assert len(second.reused) == 4 and not second.stored
    assert ledger2.charged_labels == 4
    assert {s.key for s in second.reused} == {s.key for s in first.stored}


def test_ledger_gates_dispatch_and_rows_carry_metadata(tmp_path):
    cfg = DFTConfig()
    store = LabelStore(tmp_path / "labels.db")
    ledger = Ledger(BudgetLimits(max_labels=3, max_labels_per_round=3, holdout_labels=0))
    items = [(a, "md") for a in rattled_copies(molecule("H2O"), 5, seed=2)]
    items.append((molecule("OH"), "md"))  # rejected at spin 0: not charged
    report = label_structures(items, 2, CountingPool(cfg), store, ledger, cfg)
    assert report.budget_exhausted
    assert len(store) == 3 == ledger.charged_labels
    row = store.labels()[0]
    assert row.round == 2 and row.origin == "md" and row.status is Status.OK and row.charged
    assert row.atoms.get_potential_energy() < 0
    assert row.atoms.get_forces().shape == (3, 3)
    assert row.wall_s > 0 and row.rung == "plain"


def test_rejected_label_is_stored_but_not_charged(tmp_path):
    cfg = DFTConfig()
    store = LabelStore(tmp_path / "labels.db")
    ledger = Ledger(BudgetLimits(max_labels=3, max_labels_per_round=3, holdout_labels=0))
    report = label_structures([(molecule("OH"), "seed")], 0, SerialPool(cfg), store, ledger, cfg)
    assert report.failures == 1
    (row,) = store.labels()
    assert row.status is Status.REJECTED and not row.charged and "spin" in row.reason
    assert ledger.charged_labels == 0
    assert store.training_structures() == []


def test_training_structures_leave_out_the_origins_asked(tmp_path):
    cfg = DFTConfig()
    store = LabelStore(tmp_path / "labels.db")
    ledger = Ledger(BudgetLimits(max_labels=6, max_labels_per_round=6, holdout_labels=0))
    waters = rattled_copies(molecule("H2O"), 4, seed=5)
    items = [(waters[0], "seed"), (waters[1], "probe"), (waters[2], "md"), (waters[3], "holdout")]
    label_structures(items, 1, SerialPool(cfg), store, ledger, cfg)
    assert len(store.training_structures()) == 3  # the hold-out never trains
    starts = store.training_structures(exclude=("probe",))  # what MD may start from
    assert len(starts) == 2
    assert not any(np.allclose(a.positions, waters[1].positions) for a in starts)


def test_export_extxyz(tmp_path):
    cfg = DFTConfig()
    store = LabelStore(tmp_path / "labels.db")
    ledger = Ledger(BudgetLimits(max_labels=5, max_labels_per_round=5, holdout_labels=0))
    items = [(a, "seed") for a in rattled_copies(molecule("H2O"), 2, seed=3)]
    label_structures(items, 0, SerialPool(cfg), store, ledger, cfg)
    n = store.export_extxyz(tmp_path / "labels.extxyz")
    frames = read(tmp_path / "labels.extxyz", index=":")
    assert n == len(frames) == 2
    assert frames[0].info["origin"] == "seed"
    assert frames[0].get_potential_energy() == pytest.approx(store.labels()[0].atoms.get_potential_energy())
