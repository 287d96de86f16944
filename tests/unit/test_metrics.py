import numpy as np
import pytest
from scipy.stats import rankdata as scipy_rankdata
from scipy.stats import spearmanr

from orchestrator.outputs.metrics import auroc, calibration, rankdata, spearman, worst_fraction


def test_rankdata_matches_scipy_with_ties():
    x = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0])
    assert np.allclose(rankdata(x), scipy_rankdata(x))


def test_spearman_known_answers():
    x = np.arange(10.0)
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(0.8207826816681233)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert np.isnan(spearman([1.0], [2.0])) and np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_auroc_known_answers():
    pos = np.array([False, False, True, True])
    assert auroc([0.1, 0.2, 0.8, 0.9], pos) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], pos) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], pos) == 0.5  # ties count a half
    # hand count: positives {0.35, 0.8}, negatives {0.1, 0.4}: pairs won 1 + 2 of 4
    assert auroc([0.1, 0.4, 0.35, 0.8], pos) == 0.75
    assert np.isnan(auroc([0.1, 0.2], [True, True]))


def test_worst_fraction_and_calibration():
    err = np.array([0.1, 5.0, 0.2, 3.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    assert worst_fraction(err, 0.1).nonzero()[0].tolist() == [1]
    assert worst_fraction(err, 0.2).nonzero()[0].tolist() == [1, 3]
    c = calibration(err * 2 + 1, err)
    assert c["spearman"] == pytest.approx(1.0) and c["auroc"] == 1.0


def test_calibration_ignores_non_finite_pairs():
    nan = float("nan")
    assert np.isnan(calibration([nan, nan, nan], [0.1, 0.2, 0.3])["spearman"])
    c = calibration([1.0, nan, 2.0, 3.0], [0.1, 5.0, 0.2, 0.3])
    assert c["spearman"] == pytest.approx(1.0)
