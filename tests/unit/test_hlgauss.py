import math

import pytest
import torch

from workers.model import hlgauss
from workers.model.hlgauss import Support


@pytest.fixture
def support():
    return Support(-3.0, 5.0, num_bins=128, sigma_ratio=0.75)


def test_target_histograms_sum_to_one(support):
    y = torch.linspace(-2.9, 4.9, 101, dtype=torch.float64)
    hist, n_clamped = hlgauss.to_histogram(y, support)
    assert hist.shape == (101, 128)
    assert n_clamped == 0
    assert torch.allclose(hist.sum(-1), torch.ones(101, dtype=torch.float64), atol=1e-12)
    assert (hist >= 0).all()


def test_target_mean_recovers_scalar(support):
    # inside the support by more than a few sigma, the histogram mean is the scalar
    y = torch.linspace(-2.5, 4.5, 57, dtype=torch.float64)
    hist, _ = hlgauss.to_histogram(y, support)
    mean = hist @ support.centers(torch.float64)
    assert (mean - y).abs().max() < 0.01 * support.bin_width


def test_logits_of_target_give_back_mean_and_entropy_bounds(support):
    y = torch.tensor([0.3, 1.7], dtype=torch.float64)
    hist, _ = hlgauss.to_histogram(y, support)
    logits = torch.log(hist.clamp_min(1e-300))
    assert torch.allclose(hlgauss.expected_value(logits, support), y, atol=0.01 * support.bin_width)
    ent = hlgauss.entropy(logits)
    assert (ent >= 0).all() and (ent <= math.log(128) + 1e-9).all()
    # uniform logits: maximum entropy; a one-hot: ~0
    assert hlgauss.entropy(torch.zeros(128)).item() == pytest.approx(math.log(128), abs=1e-6)
    one_hot = torch.full((128,), -1e4)
    one_hot[7] = 0.0
    assert hlgauss.entropy(one_hot).item() == pytest.approx(0.0, abs=1e-6)
    assert hlgauss.std(one_hot, support).item() == pytest.approx(0.0, abs=1e-3)


def test_std_of_target_is_about_sigma(support):
    hist, _ = hlgauss.to_histogram(torch.tensor([1.0], dtype=torch.float64), support)
    s = hlgauss.std(torch.log(hist), support).item()
    # discretisation adds bin_width^2/12 to the variance
    expected = math.sqrt(support.sigma**2 + support.bin_width**2 / 12)
    assert s == pytest.approx(expected, rel=0.02)


def test_out_of_support_targets_are_clamped_and_counted(support):
    y = torch.tensor([-10.0, 0.0, 7.0, 5.0], dtype=torch.float64)
    hist, n_clamped = hlgauss.to_histogram(y, support)
    assert n_clamped == 2
    assert torch.allclose(hist.sum(-1), torch.ones(4, dtype=torch.float64))
    assert torch.allclose(hist[0], hlgauss.to_histogram(torch.tensor([-3.0]).double(), support)[0][0])


def test_fit_support_pads_beyond_range():
    y = torch.tensor([-1.0, 0.0, 2.0])
    s = hlgauss.fit_support(y, num_bins=64, sigma_ratio=0.75, pad_sigmas=3, pad_fraction=0.1)
    assert s.v_min < -1.0 - 3 * s.sigma + 1e-9
    assert s.v_max > 2.0 + 3 * s.sigma - 1e-9
    assert s.num_bins == 64
    # the margin is pad_fraction * range + pad_sigmas * sigma on each side
    assert -1.0 - s.v_min == pytest.approx(0.1 * 3.0 + 3 * s.sigma)
    _, n_clamped = hlgauss.to_histogram(y, s)
    assert n_clamped == 0


def test_bad_supports_raise():
    with pytest.raises(ValueError, match="v_max > v_min"):
        Support(1.0, 1.0)
    with pytest.raises(ValueError, match="too small"):
        hlgauss.fit_support(torch.tensor([0.0, 1.0]), num_bins=4, pad_sigmas=3)
    with pytest.raises(ValueError, match="zero targets"):
        hlgauss.fit_support(torch.tensor([]))


def test_excess_entropy_of_a_perfect_target_is_zero(support):
    y = torch.tensor([0.5], dtype=torch.float64)
    hist, _ = hlgauss.to_histogram(y, support)
    logits = torch.log(hist)
    excess = hlgauss.entropy(logits) - hlgauss.target_entropy(hlgauss.expected_value(logits, support), support)
    assert abs(excess.item()) < 1e-6
