"""HL-Gauss: a scalar target as a Gaussian-smoothed histogram over fixed bins.

A scalar ``y`` becomes the probability mass that ``N(y, sigma^2)`` puts into each bin
``[edges[k], edges[k+1])`` of the support ``[v_min, v_max]``, renormalised over the
support (Imani & White 2018; Farebrother et al. 2024, "Stop Regressing"). The model is
trained with cross-entropy against it; the prediction is the histogram's expected value,
and its entropy (nats) is an uncertainty signal.

Everything here is pure torch and works in any float dtype.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class Support:
    """Bins over ``[v_min, v_max]`` (in normalised target units) and the smoothing width."""

    v_min: float
    v_max: float
    num_bins: int = 128
    sigma_ratio: float = 0.75  # sigma = sigma_ratio * bin_width ("Stop Regressing" default)

    def __post_init__(self) -> None:
        if not self.v_max > self.v_min:
            raise ValueError(f"support needs v_max > v_min, got [{self.v_min}, {self.v_max}]")
        if self.num_bins < 2:
            raise ValueError(f"num_bins must be >= 2, got {self.num_bins}")
        if self.sigma_ratio <= 0:
            raise ValueError(f"sigma_ratio must be > 0, got {self.sigma_ratio}")

    @property
    def bin_width(self) -> float:
        return (self.v_max - self.v_min) / self.num_bins

    @property
    def sigma(self) -> float:
        return self.sigma_ratio * self.bin_width

    def edges(self, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
        """Bin edges ``[num_bins + 1]``."""
        return torch.linspace(self.v_min, self.v_max, self.num_bins + 1, dtype=dtype, device=device)

    def centers(self, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
        """Bin centres ``[num_bins]``: ``(edges[:-1] + edges[1:]) / 2``."""
        e = self.edges(dtype, device)
        return 0.5 * (e[:-1] + e[1:])

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Support:
        return cls(**d)


def fit_support(
    targets: torch.Tensor,
    num_bins: int = 128,
    sigma_ratio: float = 0.75,
    pad_sigmas: float = 3.0,
    pad_fraction: float = 0.25,
) -> Support:
    """Support covering ``targets`` (normalised units) padded on each side.

    The padding is ``pad_fraction`` of the targets' range (room for the higher-energy
    structures active learning will find) plus ``pad_sigmas`` sigma, so the Gaussian of a
    target at the range's edge is not cut by the support. Since sigma depends on the bin
    width, which depends on the padded range, the width is solved for in closed form:
    ``w * (num_bins - 2 * pad_sigmas * sigma_ratio) = range * (1 + 2 * pad_fraction)``.
    """
    if targets.numel() == 0:
        raise ValueError("cannot fit an HL-Gauss support to zero targets")
    lo, hi = float(targets.min()), float(targets.max())
    span = max(hi - lo, 1e-3)  # one distinct target still gets a finite support
    usable_bins = num_bins - 2.0 * pad_sigmas * sigma_ratio
    if usable_bins <= 0:
        raise ValueError(f"num_bins={num_bins} too small for pad_sigmas={pad_sigmas} at sigma_ratio={sigma_ratio}")
    padded_span = span * (1.0 + 2.0 * pad_fraction)
    width = padded_span / usable_bins
    margin = pad_fraction * span + pad_sigmas * sigma_ratio * width
    return Support(lo - margin, hi + margin, num_bins, sigma_ratio)


def to_histogram(y: torch.Tensor, support: Support) -> tuple[torch.Tensor, int]:
    """Target histograms ``[n, num_bins]`` for scalars ``y [n]``, and how many were clamped.

    Targets outside ``[v_min, v_max]`` are clamped into it first; the count lets callers
    log and act on support drift.
    """
    y = y.reshape(-1)
    outside = (y < support.v_min) | (y > support.v_max)
    n_clamped = int(outside.sum())
    y = y.clamp(support.v_min, support.v_max)
    edges = support.edges(y.dtype, y.device)
    z = (edges[None, :] - y[:, None]) / (support.sigma * math.sqrt(2.0))
    cdf = 0.5 * (1.0 + torch.erf(z))  # [n, num_bins + 1]
    mass = cdf[:, 1:] - cdf[:, :-1]
    total = cdf[:, -1] - cdf[:, 0]  # mass inside the support, for renormalisation
    return mass / total[:, None], n_clamped


def expected_value(logits: torch.Tensor, support: Support) -> torch.Tensor:
    """Mean of the predicted histogram ``[...]`` for logits ``[..., num_bins]``."""
    probs = torch.softmax(logits, dim=-1)
    return probs @ support.centers(logits.dtype, logits.device)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of the predicted histogram, in ``[0, log(num_bins)]``."""
    logp = torch.log_softmax(logits, dim=-1)
    p = logp.exp()
    # 0 * log 0 = 0 (a -inf logit must not turn the entropy into nan)
    return -torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(dim=-1)


def std(logits: torch.Tensor, support: Support) -> torch.Tensor:
    """Standard deviation of the predicted histogram (normalised target units)."""
    probs = torch.softmax(logits, dim=-1)
    c = support.centers(logits.dtype, logits.device)
    mean = probs @ c
    var = probs @ (c * c) - mean * mean
    return var.clamp_min(0.0).sqrt()


def target_entropy(y: torch.Tensor, support: Support) -> torch.Tensor:
    """Entropy of the HL-Gauss target histogram centred at ``y``: the floor sigma sets.

    ``entropy(logits) - target_entropy(expected_value(logits))`` is the *excess entropy*:
    the part of the prediction's spread beyond what the label smoothing itself imposes.
    """
    hist, _ = to_histogram(y, support)
    return -(hist * torch.log(hist.clamp_min(1e-30))).sum(dim=-1)


def cross_entropy(logits: torch.Tensor, target_hist: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy between target histograms and predicted logits ``[n, num_bins]``."""
    return -(target_hist * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
