"""The recalibration of the error bars (workers/model/calibration.py, ``recalibrate``)."""

import numpy as np
import pytest
import torch
from ase.calculators.singlepoint import SinglePointCalculator

from tests.unit.helpers import rattled_ethanols
from workers.model.backbone import BackboneConfig
from workers.model.calibration import (
    Calibration,
    conformal_quantile,
    coverage,
    fit_calibration,
    gaussian_nll,
    miscalibration_area,
)
from workers.model.potential import ModelConfig


def test_conformal_quantile_is_the_finite_sample_rank():
    r = np.arange(1, 11, dtype=float)  # 1..10
    assert conformal_quantile(r, 0.5) == 6.0  # ceil(11 * 0.5) = 6th smallest
    assert conformal_quantile(r, 0.95) == 10.0  # past n: the largest
    with pytest.raises(ValueError):
        conformal_quantile(np.array([np.nan]), 0.5)


def test_recalibration_covers_68_and_95_percent_of_unseen_errors():
    rng = np.random.default_rng(0)
    n = 4000
    raw = rng.uniform(0.2, 2.0, n)  # a raw std that ranks well but is 3x too small, heavy tails
    err = raw * 3.0 * rng.standard_t(df=5, size=n)
    f_raw = rng.uniform(0.05, 0.5, n)
    f_err = f_raw[:, None] * 0.5 * rng.standard_t(df=5, size=(n, 3))
    cal = fit_calibration(err[: n // 2], raw[: n // 2], f_err[: n // 2], f_raw[: n // 2])
    e_std, f_std = cal.energy_scale * raw[n // 2 :], cal.forces_scale * f_raw[n // 2 :, None]
    assert coverage(err[n // 2 :], e_std) == pytest.approx(0.6827, abs=0.03)
    assert coverage(err[n // 2 :], e_std, cal.energy_k95) == pytest.approx(0.95, abs=0.02)
    assert coverage(f_err[n // 2 :], f_std) == pytest.approx(0.6827, abs=0.03)
    assert coverage(f_err[n // 2 :], f_std, cal.forces_k95) == pytest.approx(0.95, abs=0.02)
    assert cal.energy_k95 > 1.96  # the t tails need wider 95% intervals than a Gaussian's
    # uncalibrated, the same errors are badly covered; calibrated, miscalibration and NLL drop
    assert coverage(err[n // 2 :], raw[n // 2 :]) < 0.4
    assert miscalibration_area(err[n // 2 :], e_std) < miscalibration_area(err[n // 2 :], raw[n // 2 :]) - 0.1
    assert gaussian_nll(err[n // 2 :], e_std) < gaussian_nll(err[n // 2 :], raw[n // 2 :])


def test_the_95_interval_covers_the_small_and_the_large_error_bars_alike():
    from workers.model.calibration import mondrian_quantile

    rng = np.random.default_rng(3)
    n = 6000
    raw = rng.uniform(0.2, 2.0, n)
    small = raw < 1.1  # the familiar frames: heavy tails; the unfamiliar ones: Gaussian
    err = raw * np.where(small, rng.standard_t(df=2, size=n), 1.3 * rng.standard_normal(n))  # same 68% point
    cal = fit_calibration(err[: n // 2], raw[: n // 2], np.repeat(err[: n // 2, None], 3, 1), raw[: n // 2],
                          power_law_fit=False)  # fmt: skip
    test, std = err[n // 2 :], cal.energy(raw[n // 2 :])
    lo, hi = small[n // 2 :], ~small[n // 2 :]
    assert coverage(test[lo], std[lo], cal.energy_k95) == pytest.approx(0.95, abs=0.02)
    assert coverage(test[hi], std[hi], cal.energy_k95) > 0.95
    # one pooled quantile would leave the heavy-tailed half short of 95%
    pooled = conformal_quantile(np.abs(err[: n // 2]) / cal.energy(raw[: n // 2]), 0.95)
    assert coverage(test[lo], std[lo], pooled) < 0.935
    # ratios 0..9, stds the reverse: halves {5..9} and {0..4}, medians (3rd of 5) 7 and 2; pooled 5
    assert mondrian_quantile(np.arange(10.0), np.arange(10.0)[::-1], 0.5, groups=2) == 7.0
    assert mondrian_quantile(np.arange(10.0), np.arange(10.0)[::-1], 0.5, groups=1) == 5.0
    # a group with no finite ratio is left out; none at all is the one clear error
    assert mondrian_quantile(np.r_[np.full(5, np.nan), np.arange(5.0)], np.arange(10.0), 0.5) == 2.0
    with pytest.raises(ValueError, match="at least one finite"):
        mondrian_quantile(np.full(4, np.nan), np.arange(4.0), 0.5)


def test_calibration_needs_two_structures():
    with pytest.raises(ValueError, match="at least 2"):
        fit_calibration(np.array([0.1]), np.array([0.1]), np.zeros((3, 3)), np.ones(3))


def test_recalibration_finds_how_fast_errors_grow_and_keeps_a_plain_scale_otherwise():
    from workers.model.calibration import power_law

    rng = np.random.default_rng(1)
    n = 3000
    raw = np.exp(rng.uniform(np.log(0.01), np.log(1.0), n))  # raw stds over two decades
    steep = 0.5 * raw**2 * rng.standard_normal(n)  # errors grow as raw^2
    assert power_law(steep, raw, n) == pytest.approx(2.0, abs=0.1)
    proportional = 3.0 * raw * rng.standard_normal(n)
    assert power_law(proportional, raw, n) == 1.0
    # a narrow range of raw stds cannot tell a power from 1: the likelihood-ratio test keeps 1
    narrow = rng.uniform(0.9, 1.1, 12)
    assert power_law(narrow**2 * rng.standard_normal(12), narrow, 12) == 1.0
    cal = fit_calibration(steep[: n // 2], raw[: n // 2], np.repeat(steep[: n // 2, None], 3, 1), raw[: n // 2])
    assert cal.energy_power == pytest.approx(2.0, abs=0.1) and cal.forces_power == cal.energy_power
    plain_cal = fit_calibration(steep[: n // 2], raw[: n // 2], np.repeat(steep[: n // 2, None], 3, 1), raw[: n // 2],
                                power_law_fit=False)  # fmt: skip
    assert (plain_cal.energy_power, plain_cal.forces_power) == (1.0, 1.0)
    held_out = cal.energy(raw[n // 2 :])
    assert coverage(steep[n // 2 :], held_out) == pytest.approx(0.6827, abs=0.03)
    assert coverage(steep[n // 2 :], held_out, cal.energy_k95) == pytest.approx(0.95, abs=0.02)
    # the same errors under a plain scale: the small stds over-cover, the large ones under-cover
    plain = conformal_quantile(np.abs(steep[: n // 2]) / raw[: n // 2], 0.6827) * raw[n // 2 :]
    small, large = raw[n // 2 :] < 0.05, raw[n // 2 :] > 0.5
    assert coverage(steep[n // 2 :][small], plain[small]) > 0.95 > 0.5 > coverage(steep[n // 2 :][large], plain[large])
    assert abs(coverage(steep[n // 2 :][large], held_out[large]) - 0.68) < 0.1


def test_recalibration_takes_the_latent_distance_in_only_where_errors_follow_it():
    from workers.model.calibration import power_law

    rng = np.random.default_rng(2)
    n = 4000
    raw = np.exp(rng.uniform(np.log(0.01), np.log(1.0), n))  # posterior stds over two decades
    dist = np.exp(rng.uniform(np.log(0.5), np.log(20.0), n))  # latent distances, independent of them
    sigma = 0.3 * raw**1.5 * dist**0.5
    b, c = power_law(sigma * rng.standard_normal(n), raw, n, dist)
    assert b == pytest.approx(1.5, abs=0.1) and c == pytest.approx(0.5, abs=0.1)
    b, c = power_law(0.3 * raw**1.5 * rng.standard_normal(n), raw, n, dist)  # errors ignore the distance
    assert b == pytest.approx(1.5, abs=0.1) and c == 0.0
    f_err = sigma[:, None] * rng.standard_normal((n, 3))  # per atom, three components
    half = n // 2
    e = rng.standard_normal(half)
    cal = fit_calibration(e, np.ones(half), f_err[:half], raw[:half], latent_distance=dist[:half])
    assert cal.forces_distance_power == pytest.approx(0.5, abs=0.1)
    held_out = cal.forces(raw[half:], dist[half:])[:, None]
    assert coverage(f_err[half:], held_out) == pytest.approx(0.6827, abs=0.03)
    assert coverage(f_err[half:], held_out, cal.forces_k95) == pytest.approx(0.95, abs=0.02)
    # far from the training atoms: the posterior alone under-covers, with the distance it does not
    far = dist[half:] > 10.0
    alone = fit_calibration(e, np.ones(half), f_err[:half], raw[:half])
    assert alone.forces_distance_power == 0.0
    assert coverage(f_err[half:][far], alone.forces(raw[half:][far])[:, None]) < 0.6
    assert abs(coverage(f_err[half:][far], held_out[far]) - 0.68) < 0.06
    with pytest.raises(ValueError, match="latent distance"):
        cal.forces(raw)


def test_recalibration_reads_the_latent_distance_unless_the_config_says_not_to():
    from workers.model import TrainConfig, train
    from workers.model.calculator import predict, recalibrate

    structures = rattled_ethanols(16)
    for k, a in enumerate(structures):
        a.calc = SinglePointCalculator(a, energy=-4139.0 + 0.05 * k, forces=0.2 * np.sin(a.positions + k))
    torch.manual_seed(0)
    cfg = ModelConfig(num_bins=32, backbone=BackboneConfig(features=16, layers=2))
    model = train(TrainConfig(epochs=5, batch_size=4), structures[:8], model_cfg=cfg).model
    holdout = structures[8:]
    raw = predict(model, holdout)  # the model comes out of training uncalibrated
    e_err = np.array([p["energy"] - a.get_potential_energy() for p, a in zip(raw, holdout, strict=True)])
    f_err = np.concatenate([p["forces"] - a.get_forces() for p, a in zip(raw, holdout, strict=True)])
    e_std = np.array([p["energy_std"] for p in raw])
    f_std, dist = (np.concatenate([p[k] for p in raw]) for k in ("forces_std", "latent_distance"))
    assert recalibrate(model, holdout) == fit_calibration(e_err, e_std, f_err, f_std, latent_distance=dist)
    model.calibration = Calibration()
    model.cfg = model.cfg.model_copy(update={"error_bar_distance": False})
    alone = recalibrate(model, holdout)
    assert alone == fit_calibration(e_err, e_std, f_err, f_std) and alone.forces_distance_power == 0.0
