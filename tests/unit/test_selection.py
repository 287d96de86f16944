import numpy as np
import pytest
from pydantic import ValidationError

from orchestrator.draws import farthest_point_sampling, proportional_order
from orchestrator.selection import SelectionConfig, select, selection_rng, trust_window


def _data(n=50, d=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 5, n), rng.normal(size=(n, d)), np.zeros(n, dtype=bool)


def test_never_exceeds_quota_and_respects_window():
    scores, emb, stopped = _data()
    cfg = SelectionConfig(draw="top", window_mode="absolute", window_lo=1.0, window_hi=4.0)
    for quota in (0, 1, 5, 17, 100):
        sel = select(scores, emb, stopped, cfg, quota)
        assert len(sel.picked) <= quota
        assert len(set(sel.picked.tolist())) == len(sel.picked)
        assert ((scores[sel.picked] >= 1.0) & (scores[sel.picked] <= 4.0)).all()
    inside = ((scores >= 1.0) & (scores <= 4.0)).sum()
    assert len(select(scores, emb, stopped, cfg, 100).picked) == inside


def test_top_k_by_score_without_diversity():
    scores, emb, stopped = _data()
    cfg = SelectionConfig(draw="top", window_mode="absolute", window_lo=0.0, window_hi=10.0, diversity=False)
    sel = select(scores, emb, stopped, cfg, 5)
    assert set(sel.picked) == set(np.argsort(-scores)[:5])


def test_duplicated_candidates_yield_distinct_picks():
    emb = np.repeat(np.eye(3), 10, axis=0)  # 3 distinct structures, each 10 times
    scores = np.linspace(1, 2, 30)
    for diversity in (True, False):
        cfg = SelectionConfig(
            draw="top", window_mode="absolute", window_lo=0, window_hi=10, diversity=diversity, top_k_factor=10
        )
        sel = select(scores, emb, np.zeros(30, bool), cfg, 5)
        assert len(sel.picked) == 3
        assert len({tuple(emb[i]) for i in sel.picked}) == 3


def test_stopped_frames_are_never_picked_and_count_as_failed():
    scores, emb, stopped = _data(20)
    stopped[:10] = True
    sel = select(scores, emb, stopped, SelectionConfig(draw="top", window_lo=0.0, window_hi=1.0), 20)
    assert not set(sel.picked.tolist()) & set(range(10))
    assert sel.frac_failed >= 0.5
    assert sel.frac_accurate + sel.frac_candidate + sel.frac_failed == pytest.approx(1.0)


def test_quantile_window_edges():
    # all equal entropies: window collapses to the value, everything is a candidate
    emb = np.random.default_rng(1).normal(size=(6, 3))
    sel = select(np.full(6, 2.0), emb, np.zeros(6, bool), SelectionConfig(draw="top"), 4)
    assert sel.window == (2.0, 2.0) and len(sel.picked) == 4 and sel.frac_candidate == 1.0
    # fewer candidates than quota: all in-window ones, no more
    sel = select(
        np.array([1.0, 2.0, 3.0]), emb[:3], np.zeros(3, bool), SelectionConfig(draw="top", window_lo=0, window_hi=1), 10
    )
    assert sorted(sel.picked.tolist()) == [0, 1, 2]
    # no candidates at all
    sel = select(np.zeros(0), np.zeros((0, 3)), np.zeros(0, bool), SelectionConfig(draw="top"), 4)
    assert len(sel.picked) == 0
    lo, hi = trust_window(np.array([1.0, np.nan, 3.0]), 0.0, 1.0, "quantile")
    assert (lo, hi) == (1.0, 3.0)


def test_candidates_near_labelled_structures_are_dropped():
    scores, emb, stopped = _data(10)
    labelled = emb[:3] + 1e-3
    cfg = SelectionConfig(draw="top", window_mode="absolute", window_lo=0, window_hi=10, min_embedding_distance=0.01)
    sel = select(scores, emb, stopped, cfg, 10, labelled_embeddings=labelled)
    assert not set(sel.picked.tolist()) & {0, 1, 2}
    assert len(sel.picked) == 7


def test_random_strategy_is_a_uniform_draw_among_physical_frames():
    """Pure random: no window, no diversity step, no filter on labelled neighbours; every
    physical frame equally likely (near-duplicates too), stopped frames never."""
    n = 20
    emb = np.zeros((n, 3))
    emb[:2] = [[10.0, 0, 0], [-10.0, 0, 0]]  # two far frames: farthest-point would always take them
    emb[2:] += np.linspace(0, 1e-3, n - 2)[:, None]  # the rest a tight cluster
    scores = np.linspace(0.0, 1.0, n)  # ignored
    stopped = np.zeros(n, dtype=bool)
    stopped[-2:] = True
    cfg = SelectionConfig(strategy="random")
    counts = np.zeros(n)
    draws = 600
    for seed in range(draws):
        sel = select(scores, emb, stopped, cfg, 3, labelled_embeddings=emb[2:4], rng=np.random.default_rng(seed))
        assert len(sel.picked) == 3 and len(set(sel.picked.tolist())) == 3
        counts[sel.picked] += 1
    assert counts[-2:].sum() == 0
    expected = draws * 3 / (n - 2)  # 100 per physical frame
    assert np.all(np.abs(counts[:-2] - expected) < 35), counts  # ~3.5 sd of a binomial(600, 1/6)
    # the strategies that rank take the far frames every time instead
    sel = select(np.ones(n), emb, stopped, SelectionConfig(draw="top", strategy="energy_std", window_lo=0.0), 3)
    assert {0, 1} <= set(sel.picked.tolist())


def test_selection_streams_of_neighbouring_seeds_and_rounds_differ():
    """Seed s round r + 1 and seed s + 1 round r draw differently (a summed seed made them equal)."""
    a = selection_rng(0, 1).permutation(1000)
    b = selection_rng(1, 0).permutation(1000)
    assert not np.array_equal(a, b)
    assert np.array_equal(selection_rng(3, 2).permutation(1000), selection_rng(3, 2).permutation(1000))


def test_farthest_point_sampling_spreads_out():
    x = np.array([[0.0], [0.1], [0.2], [5.0], [10.0]])
    assert farthest_point_sampling(x, 3, first=0).tolist() == [0, 4, 3]


def test_bad_window_is_a_config_error():
    with pytest.raises(ValidationError, match="window_lo"):
        SelectionConfig(window_lo=0.9, window_hi=0.1)
    with pytest.raises(ValidationError, match="quantile"):
        SelectionConfig(window_lo=0.5, window_hi=3.0)


def test_audits_are_drawn_among_physical_frames_and_left_out_of_the_rest():
    import numpy as np

    from orchestrator.selection import draw_audits

    stopped = np.array([True, False, False, True, False, False])
    audit, rest = draw_audits(stopped, 2, np.random.default_rng(0))
    assert len(audit) == 2 and not stopped[audit].any()
    assert sorted(np.concatenate([audit, rest]).tolist()) == list(range(6))
    audit, rest = draw_audits(stopped, 10, np.random.default_rng(0))  # at most the physical frames
    assert sorted(audit.tolist()) == [1, 2, 4, 5] and rest.tolist() == [0, 3]
    audit, rest = draw_audits(stopped, 0, np.random.default_rng(0))
    assert len(audit) == 0 and rest.tolist() == list(range(6))


def test_proportional_draw_picks_each_frame_as_often_as_its_score_says():
    w = np.array([1.0, 2.0, 3.0, 4.0, 0.0])
    rng = np.random.default_rng(0)
    orders = np.array([proportional_order(w, rng) for _ in range(20000)])
    first = np.bincount(orders[:, 0], minlength=5) / len(orders)
    np.testing.assert_allclose(first, w / w.sum(), atol=0.015)  # ~4 sd of a binomial share
    assert (orders[:, -1] == 4).all()  # a zero score comes after every positive one
    # second draw among those left: P(second = 3 | first = 0) = 4 / 9
    after0 = orders[orders[:, 0] == 0]
    assert np.mean(after0[:, 1] == 3) == pytest.approx(4 / 9, abs=0.04)
    assert sorted(proportional_order(np.zeros(4), rng).tolist()) == [0, 1, 2, 3]  # no signal: uniform


def test_draw_power_sharpens_the_proportional_draw_toward_top_k():
    scores, emb, stopped = _data(200)
    base = SelectionConfig(strategy="latent_distance", draw="proportional", window_lo=0.0, window_hi=1.0)

    def mean_picked(power: float) -> float:
        cfg = base.model_copy(update={"draw_power": power})
        return float(np.mean([scores[select(scores, emb, stopped, cfg, 1, rng=selection_rng(0, r)).picked[0]]
                              for r in range(3000)]))  # fmt: skip

    # one pick: its expected score is E[s^(p+1)] / E[s^p] over the candidates
    means = {power: mean_picked(power) for power in (1.0, 3.0)}
    for power, got in means.items():
        want = (scores ** (power + 1)).mean() / (scores**power).mean()
        assert got == pytest.approx(want, rel=0.03)
    assert means[3.0] > means[1.0] + 0.5  # uniform-in-[0, 5] scores: 3.33 vs 4.0
    top = np.sort(scores)[-10:]
    cfg = base.model_copy(update={"draw_power": 64.0})
    picks = select(scores, emb, stopped, cfg, 5, rng=selection_rng(0, 0)).picked
    assert set(scores[picks]) <= set(top)  # a large power: the draw is nearly top-k
    with pytest.raises(ValidationError):
        SelectionConfig(draw_power=0.0)


def test_proportional_selection_stays_in_the_window_and_leans_to_high_scores():
    scores, emb, stopped = _data(200)
    cfg = SelectionConfig(strategy="latent_distance", draw="proportional", window_lo=0.0, window_hi=0.9, draw_power=1.0)
    hi = np.quantile(scores, 0.9)
    picked = [select(scores, emb, stopped, cfg, 10, rng=selection_rng(0, r)).picked for r in range(300)]
    assert all(len(p) == 10 and len(set(p.tolist())) == 10 and (scores[p] <= hi).all() for p in picked)
    got = np.concatenate(picked)
    # the mean picked score of a score-proportional draw is E[s^2] / E[s] over the window
    inside = scores[scores <= hi]
    assert scores[got].mean() == pytest.approx((inside**2).mean() / inside.mean(), rel=0.05)
    assert scores[got].mean() > inside.mean() * 1.15
    # exact duplicates are never both picked
    dup = np.repeat(np.eye(3), 10, axis=0)
    sel = select(np.linspace(1, 2, 30), dup, np.zeros(30, bool), cfg.model_copy(update={"window_hi": 1.0}), 5)
    assert len(sel.picked) == 3 and len({tuple(dup[i]) for i in sel.picked}) == 3


def _md_frame(replica: int, step: int, score: float, stop: str = ""):
    from ase import Atoms

    a = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    a.info.update(replica=replica, step=step, latent_distance_max=score, stop_reason=stop,
                  embedding=np.array([score, replica, step], dtype=float))  # fmt: skip
    return a


def test_uncap_stopped_replicas_lifts_the_ceiling_only_for_replicas_a_stop_rule_ended():
    from orchestrator.selection import rank_frames, stopped_replica_frames

    # replica 0: 40 typical frames; replica 1: 6 frames climbing toward a hole, then the stop;
    # replica 2: 6 equally unfamiliar frames that never stopped
    frames = [_md_frame(0, s, 1.0 + 0.01 * s) for s in range(40)]
    frames += [_md_frame(1, s, 3.0 + 0.1 * s) for s in range(6)] + [_md_frame(1, 6, 9.0, "bond")]
    frames += [_md_frame(2, s, 3.05 + 0.1 * s) for s in range(6)]
    mask = stopped_replica_frames(frames)
    assert mask.tolist() == [False] * 40 + [True] * 7 + [False] * 6
    base = dict(strategy="latent_distance", draw="proportional", draw_power=4.0, picks_per_round=53, window_hi=0.8)
    scores = np.array([f.info["latent_distance_max"] for f in frames])
    hi = np.quantile(scores[:-7].tolist() + scores[-6:].tolist(), 0.8)  # the physical frames' 80% quantile
    capped = rank_frames(frames, SelectionConfig(**base), 0, None, None, selection_rng(0, 0))
    lifted = rank_frames(frames, SelectionConfig(**base, uncap_stopped_replicas=True), 0, None, None,
                         selection_rng(0, 0))  # fmt: skip
    above = set(np.flatnonzero(scores > hi).tolist())
    assert above & set(range(40, 46)) and above & set(range(47, 53))  # both unfamiliar replicas reach above
    # capped: nothing above the ceiling is picked; lifted: replica 1's frames above it are, replica 2's not
    assert not set(capped.picks.tolist()) & above
    assert set(lifted.picks.tolist()) & above == above & set(range(40, 46))
    assert 46 not in lifted.picks  # the frame that broke the rule stays failed
    assert lifted.selection.frac_failed < capped.selection.frac_failed


def test_probes_are_drawn_as_picks_with_no_ceiling_and_at_most_their_share():
    from orchestrator.steps import draw_probes

    found = [_md_frame(-1, k, s) for k, s in enumerate([1.0] * 9 + [100.0])]  # one probe far beyond the rest
    cfg = SelectionConfig(strategy="latent_distance", draw="proportional", draw_power=4.0, window_hi=0.5)
    one = draw_probes(found, cfg, 1, None, selection_rng(0, 1, 1))
    assert len(one) == 1 and one[0] is found[-1]  # above any quantile ceiling, still drawn (4th power: ~1 - 1e-7)
    assert len(draw_probes(found, cfg, 3, None, selection_rng(0, 1, 1))) == 3
    assert draw_probes(found, cfg, 0, None, selection_rng(0, 1, 1)) == [] and draw_probes([], cfg, 2, None, None) == []
    uniform = SelectionConfig(strategy="random")
    got = [draw_probes(found, uniform, 1, None, selection_rng(0, r, 1))[0] is found[-1] for r in range(400)]
    assert 0.05 < np.mean(got) < 0.16  # random picks ignore the score: 1 in 10
    committee = SelectionConfig(strategy="committee")  # probes carry no committee deviation: drawn uniformly
    got = [draw_probes(found, committee, 1, None, selection_rng(0, r, 1))[0] is found[-1] for r in range(400)]
    assert 0.05 < np.mean(got) < 0.16
