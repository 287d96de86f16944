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
