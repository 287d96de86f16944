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


def test_training_set_does_not_depend_on_label_arrival_order(tmp_path):
    """The DFT pool returns labels in completion order; training data must not."""
    import numpy as np
    from ase.build import molecule

    from orchestrator.campaign import Campaign
    from orchestrator.store import LabelStore, content_key
    from workers.dft import LabelResult, Status
    from workers.structures import rattled_copies

    cfg = load_config("configs/demo.yaml", [f"out_dir={tmp_path}"])
    dft = cfg.dft_config()
    items = [(a, 0, "seed") for a in rattled_copies(molecule("H2O"), 4, seed=0)]
    items += [(a, 1, "md") for a in rattled_copies(molecule("H2O"), 4, seed=1)]
    items.append((molecule("H2O"), 0, "holdout"))
    orders = []
    for k, perm in enumerate(([0, 1, 2, 3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4, 3, 2, 1, 0])):
        store = LabelStore(tmp_path / f"labels{k}.db")
        for i in perm:
            a, rnd, origin = items[i]
            ok = LabelResult(Status.OK, energy_ev=-1.0, forces_ev_a=np.zeros((3, 3)))
            store.put(content_key(a, dft), a, ok, rnd, origin, charged=True)
        campaign = Campaign(cfg)
        campaign.store = store
        orders.append([a.positions.tobytes() for a in campaign.training_set(2)])
        assert len(campaign.training_set(1)) == 4  # round 0 only, hold-out excluded
    assert len(orders[0]) == 8 and orders[0] == orders[1]
