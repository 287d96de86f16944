from orchestrator.config import load_config
from orchestrator.state import CampaignState, initial_items, load_state, save_state
from workers.structures import load_seed_structures


def test_state_round_trips_atomically(tmp_path):
    s = CampaignState(round=3, phase="selected", history=[{"round": 1, "x": 0.5}], round_info={"t": 1.0})
    save_state(tmp_path, s)
    assert load_state(tmp_path) == s
    assert not (tmp_path / "state.tmp").exists()


def test_initial_items_are_deterministic_and_sized():
    cfg = load_config("configs/demo.yaml")
    seeds = load_seed_structures(cfg.system.structures)
    a, b = initial_items(cfg, seeds), initial_items(cfg, seeds)
    origins = [o for _, o in a]
    assert origins.count("seed") == cfg.system.initial_labels
    assert origins.count("holdout") == cfg.budget.holdout_labels
    assert all((x.positions == y.positions).all() for (x, _), (y, _) in zip(a, b, strict=True))
    hold = [x for x, o in a if o == "holdout"]
    train = [x for x, o in a if o == "seed"]
    assert not any((h.positions == t.positions).all() for h in hold for t in train)


def test_stop_reasons_in_order():
    from orchestrator.config import StopConfig
    from orchestrator.state import stop_reason

    last = {"round": 2, "holdout_force_mae": 0.2, "frac_candidate": 0.3, "budget_refused": 0.0}
    stop = StopConfig(max_rounds=5, target_force_mae=0.1, converged_candidate_fraction=0.1)
    assert stop_reason(last, stop, labels_left=10) == ""
    assert stop_reason(last, stop, labels_left=0) == "budget exhausted"
    assert stop_reason({**last, "budget_refused": 1.0}, stop, 10) == "budget exhausted"
    assert stop_reason({**last, "holdout_force_mae": 0.05}, stop, 10).startswith("hold-out force MAE")
    assert stop_reason({**last, "frac_candidate": 0.02}, stop, 10).startswith("converged")
    assert stop_reason({**last, "round": 5}, stop, 10) == "max rounds (5) reached"


def test_initial_set_depends_on_system_seed_not_campaign_seed():
    base = load_config("configs/demo.yaml")
    seeds = load_seed_structures(base.system.structures)
    other_campaign = load_config("configs/demo.yaml", ["seed=7"])
    other_system = load_config("configs/demo.yaml", ["system.seed=7"])
    pos = lambda cfg: [a.positions for a, _ in initial_items(cfg, seeds)]  # noqa: E731
    assert all((x == y).all() for x, y in zip(pos(base), pos(other_campaign), strict=True))
    assert not all((x == y).all() for x, y in zip(pos(base), pos(other_system), strict=True))
