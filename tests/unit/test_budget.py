"""Ledger properties over random limits and random success/failure/crash schedules."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from orchestrator.records.budget import BudgetLimits, Ledger

limits_st = st.builds(
    lambda total, per_round, hours, charge_failures, est: BudgetLimits(
        max_labels=total,
        max_labels_per_round=min(per_round, total),
        max_dft_hours=hours,
        holdout_labels=0,
        charge_failures=charge_failures,
        label_cost_estimate_s=est,
    ),
    st.integers(1, 40),
    st.integers(1, 40),
    st.one_of(st.none(), st.floats(0.001, 0.05)),
    st.booleans(),
    st.floats(1.0, 30.0),
)
# one event: (round, outcome, cost as a fraction of the estimate)
events_st = st.lists(
    st.tuples(
        st.integers(0, 4),
        st.sampled_from(["ok", "failed", "rejected", "crash", "hold"]),
        st.floats(0.0, 1.0),
    ),
    max_size=120,
)


def _check(ledger: Ledger, limits: BudgetLimits) -> None:
    assert ledger.charged_labels <= limits.max_labels
    assert ledger.charged_labels + ledger.reserved_labels <= limits.max_labels
    for rnd, n in ledger.charged_per_round.items():
        assert n <= limits.max_labels_per_round, rnd
    if limits.max_dft_hours is not None:
        assert ledger.charged_s <= limits.max_dft_hours * 3600 + 1e-6


@settings(max_examples=300, deadline=None)
@given(limits_st, events_st)
def test_limits_never_exceeded_and_no_slot_leaks(limits, events):
    ledger = Ledger(limits)
    held = []
    for rnd, outcome, frac in events:
        token = ledger.reserve(rnd)
        _check(ledger, limits)
        if token is None:
            continue
        cost = frac * ledger.reservations[token].cost_s  # a label costs at most its estimate
        if outcome == "crash":
            ledger.release(token)  # worker lost, slot given back
        elif outcome == "hold":
            held.append((token, cost))  # still in flight
        else:
            charged = ledger.settle(token, outcome, cost)
            assert charged == (outcome == "ok" or (outcome == "failed" and limits.charge_failures))
        _check(ledger, limits)
    for token, cost in held:
        ledger.settle(token, "ok", cost)
        _check(ledger, limits)
    assert ledger.reservations == {}  # nothing leaked
    # the store-backed rebuild agrees with the live ledger
    charges = [(r, 0.0) for r, n in ledger.charged_per_round.items() for _ in range(n)]
    rebuilt = Ledger.from_charges(limits, charges)
    assert rebuilt.charged_labels == ledger.charged_labels


def test_per_round_limit_and_round_zero_exemption():
    ledger = Ledger(BudgetLimits(max_labels=10, max_labels_per_round=2, holdout_labels=0))
    assert ledger.reserve(1) is not None and ledger.reserve(1) is not None
    assert ledger.reserve(1) is None
    assert ledger.reserve(2) is not None
    tokens = [ledger.reserve(0, per_round_limit=False) for _ in range(10)]
    assert sum(t is not None for t in tokens) == 7  # 10 total - 3 reserved above
    assert ledger.labels_left() == 0


def test_hours_limit_uses_the_largest_cost_seen():
    ledger = Ledger(BudgetLimits(max_labels=100, max_dft_hours=100 / 3600, label_cost_estimate_s=10))
    t = ledger.reserve(0)
    ledger.settle(t, "ok", 40.0)  # more than estimated: charged in full
    assert ledger.estimate_s() == 40.0
    assert ledger.reserve(0) is not None  # 40 + 40 <= 100
    assert ledger.reserve(0) is None  # 40 + 80 > 100


def test_inconsistent_limits_are_config_errors():
    with pytest.raises(ValidationError, match="max_labels_per_round"):
        BudgetLimits(max_labels=5, max_labels_per_round=6)
    with pytest.raises(ValidationError, match="holdout_labels"):
        BudgetLimits(max_labels=5, max_labels_per_round=5, holdout_labels=5)
