"""Which MD frames deserve DFT: trust window, then a draw by uncertainty (pure numpy).

1. Trust window on the uncertainty score ``[lo, hi]``, absolute or as quantiles of the
   round's candidates: below ``lo`` the model is confident (not worth DFT), above ``hi``
   the frame is likely unphysical. Frames a stop rule ended count as failed.
2. Among in-window frames not within ``min_embedding_distance`` of an already labelled
   structure (``orchestrator.draws``): ``draw: proportional`` (default) draws the picks at
   random, each frame's chance proportional to its score to ``draw_power`` (4); ``draw: top`` takes the
   ``top_k_factor * quota`` most uncertain, then greedy farthest-point sampling on embeddings
   (seeded with the most uncertain) so picks are not near-duplicate MD frames. Exact
   duplicates are never both picked.
3. The accurate / candidate / failed fractions are DP-GEN's convergence signal.

``random`` is the baseline selection is judged against: a uniform draw among the frames no
stop rule ended, with no window, no filter on labelled neighbours and no diversity step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from orchestrator.draws import DUPLICATE_TOL, dedupe, proportional_order, top_picks
from orchestrator.systems import pick_quotas
from workers.schema import Section

# frame.info key holding each strategy's score
SCORE_KEYS = {
    "forces_std": "forces_std_max",
    "entropy": "energy_entropy",
    "mutual_information": "energy_mutual_information",
    "energy_std": "energy_std",
    "excess_entropy": "energy_excess_entropy",
    "committee": "committee_force_dev",
    "latent_distance": "latent_distance_max",
}


class SelectionConfig(Section):
    # what ranks candidates: latent_distance (default: the most unfamiliar atom's distance, in
    # training-feature stds, to its k-th nearest training atom of the same element; the best
    # ranking of force errors and the best selection where MD leaves the data, docs/results.md
    # sections 1-2); forces_std (the largest per-atom force std, eV/Å, from the last-layer
    # posterior, calibrated on the hold-out; DP-GEN's max_devi_f from one model, the signal for
    # absolute trust levels in eV/Å), energy_std (eV), the heads' histograms' entropy or its
    # mutual information (the heads' disagreement, nats), the excess entropy beyond the HL-Gauss
    # floor; a committee's force deviation (DP-GEN); or nothing (random: uniform among the
    # physical frames, no window or diversity)
    strategy: Literal[
        "forces_std",
        "entropy",
        "mutual_information",
        "energy_std",
        "excess_entropy",
        "committee",
        "latent_distance",
        "random",
    ] = "latent_distance"
    # committee strategy: independently seeded scalar-head models trained each round
    committee_members: int = Field(4, ge=2, le=16)
    # window bounds read as quantiles of this round's candidates, or as absolute scores
    window_mode: Literal["quantile", "absolute"] = "quantile"
    # lower bound: frames below are "accurate" (quantile 0.5 = the more uncertain half; 0 with
    # a proportional draw, which weighs the frames itself)
    window_lo: float = 0.0
    # upper bound: frames above are "failed" (likely unphysical). As a quantile it fails the
    # round's most unfamiliar share whatever they are; 1.0 leaves failure to the stop rules,
    # which labelled the way into the potential's holes on the sparse_long pool (docs/results.md)
    window_hi: float = 0.98
    # no window_hi for the frames of a replica a stop rule ended: the way into a region the model
    # gets wrong (a hole) is what the next model must learn (the frame that broke the rule: failed)
    uncap_stopped_replicas: bool = False
    # labels per round spent on probes (rounds only): each replica's last frame (unless collapsed)
    # goes along probe_paths through the model (workers.model.scans.probes); where its energy falls
    # on such a path, which only climbs on a physical surface, the structure past the turn is a
    # probe; up to this many are drawn (as picks, no ceiling) after the audits. 0: none
    probes_per_round: int = Field(0, ge=0)
    # "pinch" (two terminal atoms of a centre together), "stretch" (a bond to a terminal atom to
    # 1.6x), "bend" (a terminal H onto its centre's other heavy neighbour; docs/results.md "Bends")
    probe_paths: tuple[Literal["pinch", "stretch", "bend"], ...] = Field(("pinch", "stretch", "bend"), min_length=1)
    # labels per round (also capped by budget.max_labels_per_round)
    picks_per_round: int = Field(10, ge=1)
    # random MD frames labelled each round besides the picks (served first from the round's
    # label cap) and scored with the round's model before any model trains on them: the
    # unbiased error where the model runs MD (audit_force_mae), which biased picks cannot give
    audit_per_round: int = Field(2, ge=0)
    # how picks are drawn from the window: top (the top_k_factor x quota highest scores, then
    # farthest-point sampling) or proportional (a random draw without replacement, each frame's
    # chance proportional to its score: stochastic acquisition, Kirsch et al. 2023; picks lean
    # to the unfamiliar without leaving the pool's typical frames unlabelled; the default,
    # docs/results.md section 2)
    draw: Literal["top", "proportional"] = "proportional"
    # proportional draw: each frame's chance in proportion to its score to this power (1: the
    # score itself, which barely leans where every frame's distance is near the typical one;
    # 4, the default: leans to the unfamiliar frames and still labels typical ones, chosen on
    # the development set, docs/results.md section 2; top-k in the limit of large powers)
    draw_power: float = Field(4.0, gt=0.0, le=64.0)
    # farthest-point sampling runs over the top (factor x quota) candidates (draw: top)
    top_k_factor: float = Field(3.0, ge=1.0)
    # diversity by farthest-point sampling on pooled embeddings
    diversity: bool = True
    # drop candidates this close (embedding space) to a labelled structure; 0 = exact only
    min_embedding_distance: float = Field(0.0, ge=0.0)

    @model_validator(mode="after")
    def _window(self):
        if self.window_lo > self.window_hi:
            raise ValueError(f"window_lo ({self.window_lo}) > window_hi ({self.window_hi})")
        if self.window_mode == "quantile" and not (0.0 <= self.window_lo <= self.window_hi <= 1.0):
            raise ValueError("quantile window bounds must lie in [0, 1]")
        return self


@dataclass
class Selection:
    picked: np.ndarray  # indices into the candidate arrays, in pick order
    window: tuple[float, float]  # absolute bounds used
    frac_accurate: float
    frac_candidate: float
    frac_failed: float
    counts: dict = field(default_factory=dict)


def trust_window(scores: np.ndarray, lo: float, hi: float, mode: str) -> tuple[float, float]:
    """Absolute ``(lo, hi)``; quantile mode reads them off ``scores`` (finite ones)."""
    if mode == "absolute":
        return float(lo), float(hi)
    finite = scores[np.isfinite(scores)]
    if finite.size == 0:
        return math.inf, math.inf
    return float(np.quantile(finite, lo)), float(np.quantile(finite, hi))


def classify(scores: np.ndarray, stopped: np.ndarray, window: tuple[float, float],
             uncapped: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """0 = accurate (below lo), 1 = candidate (in window), 2 = failed (above hi, or stopped);
    ``uncapped`` frames (a bool mask) have no upper bound."""
    lo, hi = window
    cls = np.ones(scores.shape, dtype=np.int8)
    cls[scores < lo] = 0
    above = scores > hi if uncapped is None else (scores > hi) & ~np.asarray(uncapped, dtype=bool)
    cls[above | ~np.isfinite(scores) | stopped] = 2
    return cls


def stopped_replica_frames(frames) -> np.ndarray:
    """``[n_frames]`` bool: the frames of every replica a stop rule ended (``info["replica"]``)."""
    ended = {f.info["replica"] for f in frames if f.info.get("stop_reason")}
    return np.array([f.info.get("replica") in ended for f in frames], dtype=bool)


def select(
    scores: np.ndarray,
    embeddings: np.ndarray,
    stopped: np.ndarray,
    cfg: SelectionConfig,
    quota: int,
    labelled_embeddings: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    uncapped: np.ndarray | None = None,
) -> Selection:
    """Pick at most ``quota`` candidates: window, then top-k and diversity (``draw: top``) or a
    score-proportional draw (``draw: proportional``; ``rng``); ``random``: a uniform draw among
    the frames no stop rule ended, nothing else. ``uncapped`` ([n] bool): frames the window's
    upper bound does not fail (``stopped_replica_frames``, with ``uncap_stopped_replicas``)."""
    scores = np.asarray(scores, dtype=float)
    stopped = np.asarray(stopped, dtype=bool)
    n = scores.shape[0]
    quota = max(int(quota), 0)
    ok = ~stopped & np.isfinite(scores)
    window = (
        (-math.inf, math.inf)  # random: every physical frame is a candidate
        if cfg.strategy == "random"
        else trust_window(scores[ok] if ok.any() else scores, cfg.window_lo, cfg.window_hi, cfg.window_mode)
    )
    cls = classify(scores, stopped, window, uncapped)
    eligible = np.nonzero(cls == 1)[0]
    rng = rng or np.random.default_rng(0)  # the random and proportional draws' stream
    if cfg.strategy == "random":
        picked = rng.choice(eligible, size=min(quota, len(eligible)), replace=False)
    else:
        if labelled_embeddings is not None and len(labelled_embeddings) and len(eligible):
            d = np.linalg.norm(embeddings[eligible, None, :] - labelled_embeddings[None, :, :], axis=-1)
            eligible = eligible[d.min(axis=1) > max(cfg.min_embedding_distance, DUPLICATE_TOL)]
        if cfg.draw == "proportional":
            weights = np.clip(scores[eligible], 0.0, None) ** cfg.draw_power
            picked = dedupe(eligible[proportional_order(weights, rng)], embeddings, quota)
        else:
            picked = top_picks(scores, embeddings, eligible, quota, cfg.top_k_factor, cfg.diversity)
    frac = np.bincount(cls, minlength=3) / max(n, 1)
    return Selection(
        picked=np.asarray(picked, dtype=np.int64),
        window=window,
        frac_accurate=float(frac[0]),
        frac_candidate=float(frac[1]),
        frac_failed=float(frac[2]),
        counts={"frames": n, "eligible": int(len(eligible)), "picked": int(len(picked))},
    )


def selection_rng(*key: int) -> np.random.Generator:
    """The random stream of one selection (``(seed, round)``, or ``(seed, generation, run)``
    in async): independent streams, so that no two (seed, round) pairs share draws (a sum
    ``seed + round`` made seed s round r + 1 repeat seed s + 1 round r)."""
    return np.random.default_rng([int(k) for k in key])


def draw_audits(stopped: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(audit, rest)`` frame indices: ``n`` drawn uniformly among the physical (not stopped)
    frames, whatever their score, and every other frame (where the picks come from)."""
    physical = np.flatnonzero(~np.asarray(stopped, dtype=bool))
    n = min(n, len(physical))
    audit = rng.choice(physical, size=n, replace=False) if n else np.array([], dtype=int)
    return audit, np.setdiff1d(np.arange(len(stopped)), audit)


def frame_scores(frames, strategy: str) -> np.ndarray:
    """Per-frame uncertainty from the frames' ``info`` (see ``workers.sampling``)."""
    if strategy == "random":
        return np.zeros(len(frames))
    return np.array([f.info.get(SCORE_KEYS[strategy], np.nan) for f in frames], dtype=float)


def frame_arrays(frames) -> tuple[np.ndarray, np.ndarray]:
    """``(embeddings [n, F], stopped [n])`` of MD frames."""
    if not frames:
        return np.zeros((0, 1)), np.zeros(0, dtype=bool)
    emb = np.stack([f.info["embedding"] for f in frames])
    stopped = np.array([bool(f.info.get("stop_reason")) for f in frames])
    return emb, stopped


@dataclass
class Ranking:
    """One MD run's (or round's) frames ranked for DFT (``rank_frames``)."""

    audits: np.ndarray  # frame indices drawn at random (audit), first in line
    picks: np.ndarray  # frame indices picked, in pick order
    selection: Selection  # the window and the accurate / candidate / failed fractions among the rest
    scores: np.ndarray  # [n_frames] the strategy's score
    stopped: np.ndarray  # [n_frames] frames a stop rule ended
    n_rest: int  # frames the picks were chosen among (all but the audits)


def rank_frames(frames: list, cfg: SelectionConfig, n_audit: int, room: int | None, labelled_emb, rng,
                weights: dict[str, float] | None = None) -> Ranking:  # fmt: skip
    """Audit frames first (``n_audit`` uniform among the physical ones), then picks from the
    rest (``select``; ``picks_per_round``, or what ``room`` leaves after the audits), against
    ``labelled_emb`` (the labelled set's embeddings by the model that scored the frames).
    With several systems (``weights``: name -> weight; frames tagged ``info["system"]``) each
    ranks its own frames, on its own window, for its share of the picks (``pick_quotas``).
    Rounds and the asynchronous loop rank alike."""
    scores = frame_scores(frames, cfg.strategy)
    emb, stopped = frame_arrays(frames)
    uncapped = stopped_replica_frames(frames) if cfg.uncap_stopped_replicas else np.zeros(len(frames), dtype=bool)
    audit_idx, rest = draw_audits(stopped, n_audit, rng)
    quota = cfg.picks_per_round if room is None else min(cfg.picks_per_round, room - len(audit_idx))
    if weights and len(weights) > 1:
        groups = [np.array([i for i in rest if frames[i].info.get("system") == name], dtype=int) for name in weights]
        sel, picks = select_per_system(scores, emb, stopped, groups, list(weights), list(weights.values()), cfg,
                                       quota, labelled_emb, rng, uncapped)  # fmt: skip
        return Ranking(audit_idx, picks, sel, scores, stopped, len(rest))
    sel = select(scores[rest], emb[rest], stopped[rest], cfg, quota, labelled_emb, rng, uncapped[rest])
    picks = rest[np.asarray(sel.picked, dtype=int)]
    return Ranking(audit_idx, picks, sel, scores, stopped, len(rest))


def select_per_system(scores, emb, stopped, groups: list[np.ndarray], names: list[str], weights: list[float],
                      cfg: SelectionConfig, quota: int, labelled_emb, rng,
                      uncapped: np.ndarray) -> tuple[Selection, np.ndarray]:  # fmt: skip
    """Each system's frames (``groups[k]``: frame indices) ranked alone for its share of
    ``quota``; ``(the systems' selections merged, frame indices picked)``. The merged
    selection's window spans the systems' windows; its fractions are over all their frames;
    ``counts["picked/<name>"]`` says how many each system got; ``uncapped``: as ``select``'s,
    over all the frames."""
    physical = [g[~stopped[g] & np.isfinite(scores[g])] for g in groups]
    need = [float(np.median(scores[g])) if len(g) and cfg.strategy != "random" else float("nan") for g in physical]
    quotas = pick_quotas(quota, weights, need)
    picks, sels = [], []
    for g, q in zip(groups, quotas, strict=True):
        sel = select(scores[g], emb[g], stopped[g], cfg, q, labelled_emb, rng, uncapped[g])
        picks.append(g[np.asarray(sel.picked, dtype=int)])
        sels.append(sel)
    n = np.array([s.counts["frames"] for s in sels], dtype=float)
    share = n / max(n.sum(), 1.0)
    merged = Selection(
        picked=np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64),
        window=(min(s.window[0] for s in sels), max(s.window[1] for s in sels)),
        frac_accurate=float(sum(w * s.frac_accurate for w, s in zip(share, sels, strict=True))),
        frac_candidate=float(sum(w * s.frac_candidate for w, s in zip(share, sels, strict=True))),
        frac_failed=float(sum(w * s.frac_failed for w, s in zip(share, sels, strict=True))),
        counts={"frames": int(n.sum()), "eligible": sum(s.counts["eligible"] for s in sels),
                "picked": int(sum(len(p) for p in picks)),
                **{f"picked/{name}": int(len(p)) for name, p in zip(names, picks, strict=True)}},
    )  # fmt: skip
    return merged, merged.picked
