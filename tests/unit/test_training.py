"""Training on real PySCF labels (RHF/STO-3G ethanol, tests/data) for both heads."""

import numpy as np
import pytest

from workers.model import ModelConfig, TrainConfig, evaluate, train
from workers.model.backbone import BackboneConfig
from workers.model.training import load_training_checkpoint, save_training_checkpoint


def _baselines(pool, test):
    """Trivial predictor: the pool's mean energy and zero forces."""
    e_mean = np.mean([a.get_potential_energy() for a in pool])
    e_mae = np.mean([abs(a.get_potential_energy() - e_mean) for a in test])
    f_mae = np.mean(np.concatenate([np.abs(a.get_forces()).ravel() for a in test]))
    return e_mae, f_mae


@pytest.mark.slow
@pytest.mark.parametrize("head", ["categorical", "scalar"])
def test_training_beats_trivial_baseline(head, ethanol_labels, tmp_path):
    pool, test = ethanol_labels[:48], ethanol_labels[48:]
    cfg = TrainConfig(epochs=60, batch_size=8, lr=2e-3, patience=60, seed=0)
    model_cfg = ModelConfig(head=head, backbone=BackboneConfig(features=48, layers=2))
    result = train(cfg, pool, model_cfg=model_cfg)
    metrics = evaluate(result.model, test)
    e_base, f_base = _baselines(pool, test)
    # well below the trivial predictor on held-out structures
    assert metrics["energy_mae"] < 0.35 * e_base, (metrics, e_base)
    assert metrics["force_mae"] < 0.4 * f_base, (metrics, f_base)
    assert result.history[-1]["val_force_mae"] < result.history[0]["val_force_mae"]
    assert result.structures_per_s > 0

    # checkpoint round trip reproduces the predictions and carries the optimizer state
    path = tmp_path / "round.pt"
    save_training_checkpoint(path, result, cfg)
    model, opt_state, ckpt = load_training_checkpoint(path)
    assert ckpt["epoch"] == len(result.history)
    assert opt_state is not None and "state" in opt_state
    again = evaluate(model.float(), test)
    assert again["energy_mae"] == pytest.approx(metrics["energy_mae"], rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("histogram", ["absolute", "centred"])
def test_warm_start_keeps_support_and_counts_clamped(ethanol_labels, histogram):
    pool = ethanol_labels[:30]
    cfg = TrainConfig(epochs=3, batch_size=8, seed=0)
    first = train(cfg, pool, model_cfg=ModelConfig(num_bins=32, histogram=histogram))
    support = first.model.support
    # shift some labels far above the support: warm start keeps the support, counts clamps
    from ase.calculators.singlepoint import SinglePointCalculator

    shifted = []
    for a in ethanol_labels[30:40]:
        b = a.copy()
        b.calc = SinglePointCalculator(b, energy=a.get_potential_energy() + 50.0, forces=a.get_forces())
        shifted.append(b)
    second = train(cfg.model_copy(update={"val_fraction": 0.0}), pool + shifted, model=first.model)
    assert second.model.support == support
    if histogram == "absolute":  # bins over the training range: exactly the 10 shifted labels
        assert second.support_clamped == 10
    else:  # offsets from the location: the shifted 10, plus any the 3-epoch model misses by > span
        assert 10 <= second.support_clamped <= 40


@pytest.mark.slow
def test_categorical_head_matches_scalar_and_its_histograms_are_trained(ethanol_labels):
    """Same data, seeds and budget: the centred categorical head is as accurate as the scalar
    head, its histograms are far from flat, and its spread says which structures it gets wrong.
    Accuracy over two training seeds: one 60-epoch training on 48 labels is a lottery (seed 0
    alone read 1.35x energy MAE in a pytest-xdist worker on one machine, under 1.3x outside it)."""
    from orchestrator.outputs.metrics import spearman
    from workers.model import predict

    pool, test = ethanol_labels[:48], ethanol_labels[48:]
    backbone = BackboneConfig(features=48, layers=2)
    maes = {"scalar": [], "categorical": []}
    for seed in (0, 1):
        cfg = TrainConfig(epochs=60, batch_size=8, lr=2e-3, patience=60, seed=seed)
        for head in maes:
            model = train(cfg, pool, model_cfg=ModelConfig(head=head, backbone=backbone)).model
            maes[head].append(evaluate(model, test))
    scalar, cat = ({k: np.mean([m[k] for m in maes[h]]) for k in ("energy_mae", "force_mae")} for h in maes)
    assert cat["force_mae"] < 1.15 * scalar["force_mae"], (cat, scalar)
    assert cat["energy_mae"] < 1.3 * scalar["energy_mae"], (cat, scalar)
    preds = predict(model, test)  # the last one trained: categorical, seed 1
    excess = np.median([p["energy_excess_entropy"] for p in preds])
    entropy = np.median([p["energy_entropy"] for p in preds])
    # far from flat (the first design sat at excess ~3.6, entropy ~log(bins)); the log(4)
    # goal holds at the benchmark's budget (docs/results.md), not after 60 epochs on 48 labels
    assert excess < 2.3 and entropy < np.log(model.cfg.num_bins) - 1.5, (excess, entropy)
    f_err = [np.abs(p["forces"] - a.get_forces()).mean() for p, a in zip(preds, test, strict=True)]
    assert spearman(np.array([p["energy_std"] for p in preds]), np.array(f_err)) > 0.2


def test_split_keeps_each_structure_on_its_side_as_labels_are_added(ethanol_labels):
    """A warm start must be validated on structures its previous model never trained on:
    adding labels moves no structure between the training and validation sides."""
    from workers.model.training import split

    keyed = {a.positions.tobytes() for a in ethanol_labels}
    assert len(keyed) == len(ethanol_labels)  # distinct structures
    for n_before in (5, 12, 30):
        train_a, val_a = split(ethanol_labels[:n_before], 0.15, seed=0)
        train_b, val_b = split(ethanol_labels[: n_before + 20], 0.15, seed=0)
        assert len(train_a) + len(val_a) == n_before and val_a and train_a
        assert len(val_a) == max(round(0.15 * n_before), 1) and len(val_b) == round(0.15 * (n_before + 20))
        # of what the earlier model trained on, at most the validation set's growth is validated on now
        leaked = {a.positions.tobytes() for a in train_a} & {a.positions.tobytes() for a in val_b}
        assert len(leaked) <= len(val_b) - len(val_a), (n_before, len(leaked))
    # the same list in another order: the same sides; another seed: other sides
    train_r, val_r = split(ethanol_labels[::-1], 0.15, seed=0)
    train_f, val_f = split(ethanol_labels, 0.15, seed=0)
    assert {a.positions.tobytes() for a in val_r} == {a.positions.tobytes() for a in val_f}
    assert {a.positions.tobytes() for a in split(ethanol_labels, 0.15, seed=1)[1]} != {
        a.positions.tobytes() for a in val_f
    }
    assert split(ethanol_labels[:1], 0.15, seed=0) == (ethanol_labels[:1], [])


def test_few_validation_structures_keep_the_last_epoch(ethanol_labels):
    """Below MIN_VAL_SELECT validation structures no epoch is picked by them: every epoch runs
    (no early stop) and the last one's weights come back."""
    from workers.model.training import MIN_VAL_SELECT

    cfg = TrainConfig(epochs=4, batch_size=4, lr=2e-3, patience=1, seed=0, val_fraction=0.3)
    model_cfg = ModelConfig(head="scalar", backbone=BackboneConfig(features=8, layers=1))
    structures = ethanol_labels[:10]  # 3 validate: fewer than MIN_VAL_SELECT
    assert 0.3 * len(structures) < MIN_VAL_SELECT
    result = train(cfg, structures, model_cfg=model_cfg)
    assert len(result.history) == 4 and result.best_epoch == 3
    assert result.val_metrics["force_mae"] == pytest.approx(result.history[-1]["val_force_mae"])


def test_labels_arriving_mid_run_join_it_and_stop_ends_it(ethanol_labels):
    """An asynchronous campaign's trainer: structures handed over while it trains join at the
    next epoch, each on the side ``split`` of the grown list would give it (none seen twice),
    and ``stop()`` ends the run after the epoch it is raised in."""
    from workers.model.training import _take_in, _unit_hash, split

    cfg = TrainConfig(epochs=8, batch_size=4, lr=2e-3, seed=0, val_fraction=0.2)
    model_cfg = ModelConfig(head="scalar", backbone=BackboneConfig(features=8, layers=1))
    first, arriving = ethanol_labels[:10], ethanol_labels[10:30]
    handed = {1: arriving[:10] + first[:3], 3: arriving[10:]}  # at epochs 1 and 3; 3 already known
    calls = []

    def more():
        calls.append(len(calls))
        return handed.get(len(calls) - 1, [])

    result = train(cfg, first, model_cfg=model_cfg, more=more, stop=lambda: len(calls) >= 5)
    assert [h["n_structures"] for h in result.history] == [10, 20, 20, 30, 30]  # stopped after epoch 4
    # sides: what joins the training side is validated on by a later split of the grown list
    # only as far as that split's validation set outgrows this run's (as for ``split`` alone)
    train_a, val_a = split(first, 0.2, seed=0)
    known = {_unit_hash(a, 0) for a in first}
    cut = max(_unit_hash(a, 0) for a in val_a)
    assert _take_in(arriving + first[:3], known, 0, cut, train_a, val_a) is True
    assert len(train_a) + len(val_a) == 30
    train_b, val_b = split(first + arriving, 0.2, seed=0)
    leaked = {a.positions.tobytes() for a in train_a} & {a.positions.tobytes() for a in val_b}
    assert len(leaked) <= max(len(val_b) - len(val_a), 0)
    assert _take_in(first[:5], known, 0, cut, train_a, val_a) is False and len(train_a) + len(val_a) == 30
    without = train(cfg, first + arriving, model_cfg=model_cfg, stop=lambda: True)
    assert len(without.history) == 1  # stop() raised at once: one epoch, then the weights come back


def test_snapshot_sees_each_epoch_and_the_last_is_what_comes_back(ethanol_labels):
    """``snapshot(model, row)`` after every epoch (an asynchronous campaign's MD runs on it):
    the model it sees is the one ``train`` would return as of that epoch."""
    import torch

    cfg = TrainConfig(epochs=3, batch_size=4, lr=2e-3, seed=0, val_fraction=0.3)
    model_cfg = ModelConfig(head="scalar", backbone=BackboneConfig(features=8, layers=1))
    seen = []
    result = train(
        cfg,
        ethanol_labels[:10],
        model_cfg=model_cfg,
        snapshot=lambda m, row: seen.append((row["epoch"], {k: v.clone() for k, v in m.state_dict().items()})),
    )
    assert [e for e, _ in seen] == [0, 1, 2]
    # few validation structures: the last epoch comes back (its last-layer posterior fitted after)
    final = {k: v for k, v in result.model.state_dict().items() if not k.startswith(("llpr_", "latent_"))}
    assert all(torch.equal(seen[-1][1][k], final[k]) for k in final)
    assert not all(torch.equal(seen[0][1][k], final[k]) for k in final)  # the weights moved
