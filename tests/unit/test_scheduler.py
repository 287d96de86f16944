"""The asynchronous campaign's label queue under random completion orders, worker deaths,
re-scoring and driver crashes: the budget is never exceeded, no structure labelled twice."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.loop.queue import FILLER, TOP, Candidate, LabelQueue, stale
from orchestrator.records.budget import BudgetLimits, Ledger

KEYS = [f"k{i}" for i in range(30)]  # a small alphabet: the same structure is offered often
IN_FLIGHT_PER_WORKER = 2

op_st = st.one_of(
    st.tuples(
        st.just("offer"),
        st.lists(
            st.tuples(st.sampled_from(KEYS), st.sampled_from([0.1, 0.5, 0.9, math.nan, TOP, FILLER]), st.integers(0, 3))
        ),
    ),
    st.tuples(st.just("dispatch"), st.integers(0, 3)),
    st.tuples(st.just("finish"), st.integers(0, 1000), st.sampled_from(["ok", "failed", "rejected"])),
    st.tuples(st.just("kill"), st.integers(0, 3)),
    st.tuples(st.just("rescore"), st.dictionaries(st.sampled_from(KEYS), st.floats(0.0, 1.0) | st.just(math.nan))),
    st.tuples(st.just("drop"), st.floats(0.0, 1.0)),
    st.tuples(st.just("crash")),
)


def new_queue(limits: BudgetLimits, store: dict, capacity: int) -> LabelQueue:
    """A driver (re)starting: the ledger rebuilt from the store's charged rows."""
    ledger = Ledger.from_charges(limits, [(0, cost) for charged, cost in store.values() if charged])
    queue = LabelQueue(ledger, capacity)
    queue.done = set(store)
    return queue


@settings(max_examples=300, deadline=None)
@given(
    max_labels=st.integers(1, 25),
    hours=st.one_of(st.none(), st.floats(0.002, 0.02)),
    charge_failures=st.booleans(),
    capacity=st.integers(1, 8),
    ops=st.lists(op_st, max_size=80),
)
def test_async_queue_never_exceeds_the_budget_nor_labels_twice(max_labels, hours, charge_failures, capacity, ops):
    limits = BudgetLimits(
        max_labels=max_labels,
        max_labels_per_round=max_labels,
        holdout_labels=0,
        max_dft_hours=hours,
        charge_failures=charge_failures,
        label_cost_estimate_s=5.0,
    )
    store: dict[str, tuple[bool, float]] = {}  # key -> (charged, cost_s): each put exactly once
    queue = new_queue(limits, store, capacity)
    workers: dict[int, list[str]] = {w: [] for w in range(4)}  # worker -> keys labelling on it

    for op in ops:
        kind = op[0]
        if kind == "offer":
            queue.offer([Candidate(k, None, score, "md", 3, source) for k, score, source in op[1]])
        elif kind == "dispatch":
            w = op[1]
            if len(workers[w]) < IN_FLIGHT_PER_WORKER:
                got = queue.dispatch()
                if got is not None:
                    assert got[1].key not in store, "a stored structure was dispatched again"
                    workers[w].append(got[1].key)
        elif kind == "finish":
            busy = [(w, k) for w, keys in workers.items() for k in keys]
            if busy:
                w, key = busy[op[1] % len(busy)]
                workers[w].remove(key)
                token, _ = queue.complete(key)
                status = op[2]
                cost = 5.0  # at the estimate: the hours limit then holds exactly
                charged = queue.ledger.would_charge(status)
                assert key not in store, "a structure was labelled twice"
                store[key] = (charged, cost)  # durable first, then the ledger
                queue.ledger.settle(token, status, cost)
        elif kind == "kill":  # the worker's jobs go back to the queue, it is replaced
            for key in workers[op[1]]:
                queue.lost(key)
            workers[op[1]] = []
        elif kind == "rescore":
            queue.rescore(op[1], generation=2)
        elif kind == "drop":
            queue.drop_below(op[1])
        elif kind == "crash":  # in-flight work is lost with the driver; the store survives
            queue = new_queue(limits, store, capacity)
            workers = {w: [] for w in workers}

        ledger = queue.ledger
        charged = sum(1 for c, _ in store.values() if c)
        assert ledger.charged_labels == charged
        assert ledger.charged_labels + ledger.reserved_labels <= max_labels
        if hours is not None:
            assert ledger.charged_s <= hours * 3600 + 1e-6
        in_flight = {k for keys in workers.values() for k in keys}
        assert in_flight == set(queue.in_flight)
        assert ledger.reserved_labels == len(in_flight)
        assert not (set(queue.pending) & (set(store) | in_flight))
        assert not (in_flight & set(store))
        ranked = [c for c in queue.pending.values() if c.score not in (TOP, FILLER)]
        assert len(ranked) <= capacity


def test_best_score_first_and_a_rescore_reorders():
    ledger = Ledger(BudgetLimits(max_labels=10, max_labels_per_round=10, holdout_labels=0))
    queue = LabelQueue(ledger, capacity=3)
    queue.offer([Candidate(k, None, s, "md", 1) for k, s in [("a", 0.2), ("b", 0.9), ("c", 0.5), ("d", 0.1)]])
    assert sorted(queue.pending) == ["a", "b", "c"]  # capacity: the worst (d) fell out
    queue.offer([Candidate("f", None, FILLER, "seed", 0), Candidate("t", None, TOP, "audit", 1)])
    queue.rescore({"a": 0.95, "b": 0.05}, generation=2)  # c has no new score: dropped
    assert "c" not in queue.pending and queue.pending["a"].generation == 2
    order = []
    while (got := queue.dispatch()) is not None:
        order.append(got[1].key)
    assert order == ["t", "a", "b", "f"]  # audit first, then by the newest model, filler last
    assert ledger.reserved_labels == 4


def test_stale_candidates_fall_out_and_a_lost_job_is_queued_again():
    ledger = Ledger(BudgetLimits(max_labels=2, max_labels_per_round=2, holdout_labels=0))
    queue = LabelQueue(ledger, capacity=10)
    queue.offer([Candidate(k, None, s, "md", 1) for k, s in [("a", 0.2), ("b", 0.9), ("c", 0.5)]])
    assert queue.drop_below(0.4) == 1 and "a" not in queue.pending
    token, cand = queue.dispatch()
    assert cand.key == "b"
    queue.lost("b")  # its worker died: the slot is released, b waits again
    assert ledger.reserved_labels == 0 and "b" in queue.pending
    assert [queue.dispatch()[1].key, queue.dispatch()[1].key] == ["b", "c"]
    assert queue.dispatch() is None  # the budget (2) is all reserved


def test_the_newest_models_md_first_older_frames_fill_in():
    """Frames sampled by the newest model's MD are labelled before (re-scored) frames of older
    models' MD whatever their scores; older ones fill in before the fillers, and are the
    first to go when the queue is full."""
    ledger = Ledger(BudgetLimits(max_labels=10, max_labels_per_round=10, holdout_labels=0))
    queue = LabelQueue(ledger, capacity=4)
    queue.offer([Candidate(k, None, s, "md", 1) for k, s in [("old_hi", 0.9), ("old_lo", 0.3), ("old_mid", 0.5)]])
    queue.rescore({"old_hi": 0.95, "old_lo": 0.3, "old_mid": 0.5}, generation=2)  # ranked by model 2
    assert queue.pending["old_hi"].source == 1 and queue.ranked(source=2) == 0
    queue.offer([Candidate(k, None, s, "md", 2) for k, s in [("new_lo", 0.1), ("new_hi", 0.4)]])
    assert "old_lo" not in queue.pending  # capacity 4: an older model's frame made room
    assert queue.ranked(source=2) == 2 and queue.ranked() == 4
    queue.offer([Candidate("f", None, FILLER, "seed", 0), Candidate("t", None, TOP, "audit", 1)])
    order = []
    while (got := queue.dispatch()) is not None:
        order.append(got[1].key)
    assert order == ["t", "new_hi", "new_lo", "old_hi", "old_mid", "f"]


def test_a_warm_generation_is_cut_once_stale_and_half_trained():
    assert stale(14, 75, 14, 150, 0.5)  # a generation's labels arrived, half its epochs run
    assert not stale(13, 149, 14, 150, 0.5)  # not yet a generation's labels
    assert not stale(40, 74, 14, 150, 0.5)  # not yet half its epochs
    assert not stale(1000, 150, 14, 150, 1.0)  # share 1: never cut
