"""Persistent MD replicas of an asynchronous campaign (pure functions of the driver)."""

import numpy as np
from ase import Atoms

from orchestrator.loop.replicas import replica_starts, walkers_after
from workers.sampling import last_frames


def _frame(replica: int, step: int, x: float, reason: str = "") -> Atoms:
    a = Atoms("H2", positions=[[0, 0, 0], [x, 0, 0]])
    a.info.update(replica=replica, step=step, stop_reason=reason)
    return a


def test_walkers_keep_each_replicas_last_frame_and_forget_stopped_ones():
    frames = [_frame(0, 10, 0.7), _frame(0, 20, 0.8), _frame(1, 10, 0.9), _frame(1, 20, 0.1, "min_distance")]
    walkers = walkers_after({1: _frame(1, 0, 0.75), 2: _frame(2, 0, 0.74)}, frames)
    assert sorted(walkers) == [0, 2]  # replica 1 stopped: it starts from the picks again
    assert walkers[0].positions[1, 0] == 0.8 and not walkers[0].info  # the last frame, positions only
    assert walkers[2].positions[1, 0] == 0.74  # no run of replica 2 here: kept as it was


def test_last_frames_take_each_replicas_highest_step_in_any_order():
    frames = [_frame(0, 20, 0.8), _frame(1, 10, 0.9), _frame(0, 10, 0.7), _frame(1, 30, 0.1, "min_distance")]
    last = last_frames(frames)
    assert {r: f.info["step"] for r, f in last.items()} == {0: 20, 1: 30}
    assert last[0] is frames[0]  # the frame itself, info kept (probes score it)
    physical = last_frames([f for f in frames if not f.info["stop_reason"]])  # what probes start from
    assert physical[1] is frames[1]


def test_a_share_of_replicas_persists_and_the_rest_take_every_start_in_turn():
    starts = [_frame(-1, 0, 0.5 + 0.01 * k) for k in range(5)]
    walkers = {r: _frame(r, 0, 2.0 + r) for r in range(8)}
    out = replica_starts(walkers, starts, 8, 0.5)
    xs = [a.positions[1, 0] for a in out]
    assert xs[1::2] == [3.0, 5.0, 7.0, 9.0]  # odd replicas continue
    assert np.allclose(xs[0::2], [0.5, 0.51, 0.52, 0.53])  # even ones take the starts in order
    first = replica_starts({}, starts, 8, 0.5)  # no run yet: every replica from the starts
    assert np.allclose([a.positions[1, 0] for a in first], [0.5, 0.51, 0.52, 0.53, 0.54, 0.5, 0.51, 0.52])
    assert all(a is s for a, s in zip(replica_starts(walkers, starts, 5, 0.0), starts, strict=True))
    assert all(a is walkers[r] for r, a in enumerate(replica_starts(walkers, starts, 8, 1.0)))


def test_persistent_replicas_are_spread_evenly():
    from orchestrator.loop.replicas import persistent

    assert [r for r in range(8) if persistent(r, 0.5)] == [1, 3, 5, 7]
    assert [r for r in range(6) if persistent(r, 1 / 3)] == [2, 5]
    assert not any(persistent(r, 0.0) for r in range(8)) and all(persistent(r, 1.0) for r in range(8))
