"""Every random stream of a campaign, from its seeds (the formulas old campaigns resume on).

A campaign ``seed`` (and ``system.seed``) moves each stream by a multiple of the prime
``SEED_STRIDE``, so campaigns that differ only in seed share nothing but what they are told to
(their initial labels, when ``system.seed`` is the same). The selection's own stream is
``orchestrator.selection.selection_rng``.
"""

from __future__ import annotations

from orchestrator.config import CampaignConfig
from workers.model.committee import MEMBER_SEED_STRIDE

SEED_STRIDE = 7919
HOLDOUT_OFFSET = 10_000_019  # the hold-out's draws (normal modes or rattles)
FILLER_OFFSET = 20_000_003  # an asynchronous campaign's pre-model fillers
RETRY_OFFSET = 30_000_001  # a training tried again (``retry_seed``)


def training_seed(cfg: CampaignConfig, member: int = 0) -> int:
    """Committee ``member``'s training seed (initialisation, shuffling, validation split):
    ``training.seed`` moved by the campaign ``seed``, so campaigns that differ only in seed
    share their initial labels but not their models (training seeds alone move a model's
    accuracy as much as selection does: docs/results.md section 2)."""
    return cfg.training.seed + SEED_STRIDE * cfg.seed + MEMBER_SEED_STRIDE * member


def retry_seed(seed: int, attempt: int) -> int:
    """The training seed of ``attempt`` (0: ``seed`` itself) when a training is tried again:
    away from every campaign's and member's training seed."""
    return seed + RETRY_OFFSET * attempt


def round_md_seed(cfg: CampaignConfig, rnd: int) -> int:
    """Round ``rnd``'s MD (thermalisation and Langevin noise)."""
    return cfg.seed * 1000 + rnd


def async_md_seed(cfg: CampaignConfig, generation: int, run: int) -> int:
    """An asynchronous campaign's ``run``-th MD run of this session, on ``generation``."""
    return cfg.seed * 1000 + SEED_STRIDE * generation + run


def initial_seed(cfg: CampaignConfig) -> int:
    """The initial set's draws (normal modes; rattled copies add their index)."""
    return cfg.system.seed * SEED_STRIDE


def holdout_seed(cfg: CampaignConfig) -> int:
    return HOLDOUT_OFFSET + cfg.system.seed * SEED_STRIDE


def filler_seed(cfg: CampaignConfig) -> int:
    return FILLER_OFFSET + cfg.system.seed * SEED_STRIDE
