"""The DFT budget ledger (pure): reserve before dispatch, settle on result.

Invariant: charged + reserved never exceeds a limit, so charged alone never does. The
ledger's durable state is the label store (every charged label is a row there): after a
restart ``Ledger.from_charges`` rebuilds it, and in-flight reservations of the crashed run
are simply gone (their labels were never stored, so never charged).

DFT hours are a cost in CPU-seconds (wall seconds x threads). A label's cost is unknown
until it is done, so a reservation holds an estimate: the larger of
``label_cost_estimate_s`` and the most expensive label seen so far. The hours limit holds
as long as no label costs more than its reservation's estimate; a label that does is
still charged in full (the DFT time was spent) and no further reservation is granted.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

from pydantic import Field, model_validator

from workers.schema import Section


class BudgetLimits(Section):
    # total DFT labels of the campaign, including the initial set and the hold-out
    max_labels: int = Field(100, ge=1)
    # labels one active-learning round may spend
    max_labels_per_round: int = Field(20, ge=1)
    # CPU-hours of DFT (wall x threads); None = unlimited
    max_dft_hours: float | None = Field(None, gt=0.0)
    # labels set aside once, never trained on (part of max_labels)
    holdout_labels: int = Field(10, ge=0)
    # failed SCFs cost DFT time, so by default they count against the budget
    charge_failures: bool = True
    # CPU-seconds reserved per label before its real cost is known (for max_dft_hours)
    label_cost_estimate_s: float = Field(10.0, gt=0.0)

    @model_validator(mode="after")
    def _consistent(self):
        if self.max_labels_per_round > self.max_labels:
            raise ValueError(
                f"max_labels_per_round ({self.max_labels_per_round}) exceeds max_labels ({self.max_labels})"
            )
        if self.holdout_labels >= self.max_labels:
            raise ValueError(
                f"holdout_labels ({self.holdout_labels}) leaves no training labels "
                f"within max_labels ({self.max_labels})"
            )
        return self


@dataclass
class Reservation:
    round: int
    cost_s: float


@dataclass
class Ledger:
    limits: BudgetLimits
    charged_labels: int = 0
    charged_s: float = 0.0
    charged_per_round: Counter = field(default_factory=Counter)
    max_seen_cost_s: float = 0.0
    reservations: dict[int, Reservation] = field(default_factory=dict)
    _tokens: itertools.count = field(default_factory=itertools.count, repr=False)

    @classmethod
    def from_charges(cls, limits: BudgetLimits, charges: list[tuple[int, float]], other_s: float = 0.0) -> Ledger:
        """Rebuild from the store's charged labels ``[(round, cost_s), ...]`` and the DFT
        CPU-seconds spent on other work (``other_s``: minima and Hessians)."""
        ledger = cls(limits)
        for rnd, cost in charges:
            ledger._charge(rnd, cost)
        ledger.charge_other(other_s)
        return ledger

    def charge_other(self, cost_s: float) -> None:
        """DFT work that is not a label (a relaxation, a Hessian): hours only, no label."""
        self.charged_s += cost_s

    # -- queries -------------------------------------------------------------------
    @property
    def reserved_labels(self) -> int:
        return len(self.reservations)

    @property
    def reserved_s(self) -> float:
        return sum(r.cost_s for r in self.reservations.values())

    def labels_left(self) -> int:
        return self.limits.max_labels - self.charged_labels - self.reserved_labels

    def round_labels_left(self, rnd: int) -> int:
        in_round = sum(1 for r in self.reservations.values() if r.round == rnd)
        return self.limits.max_labels_per_round - self.charged_per_round[rnd] - in_round

    def hours_left(self) -> float | None:
        if self.limits.max_dft_hours is None:
            return None
        return (self.limits.max_dft_hours * 3600.0 - self.charged_s - self.reserved_s) / 3600.0

    def estimate_s(self) -> float:
        return max(self.limits.label_cost_estimate_s, self.max_seen_cost_s)

    # -- transitions -----------------------------------------------------------------
    def reserve(self, rnd: int, per_round_limit: bool = True) -> int | None:
        """A token for one label in round ``rnd``, or None when a limit would be exceeded.

        ``per_round_limit=False`` is for round 0's initial set and hold-out, which are
        bounded by ``max_labels`` alone.
        """
        if self.labels_left() < 1:
            return None
        if per_round_limit and self.round_labels_left(rnd) < 1:
            return None
        cost = self.estimate_s()
        hours = self.limits.max_dft_hours
        if hours is not None and self.charged_s + self.reserved_s + cost > hours * 3600.0 + 1e-9:
            return None
        token = next(self._tokens)
        self.reservations[token] = Reservation(rnd, cost)
        return token

    def would_charge(self, status: str) -> bool:
        """Whether a result of this status is charged (``ok`` always, ``failed`` by config)."""
        if status == "ok":
            return True
        return status == "failed" and self.limits.charge_failures

    def settle(self, token: int, status: str, cost_s: float) -> bool:
        """Close a reservation with its result; returns whether it was charged."""
        res = self.reservations.pop(token)
        charged = self.would_charge(status)
        if charged:
            self._charge(res.round, cost_s)
        return charged

    def release(self, token: int) -> None:
        """Give a reservation back unused (work cancelled, or lost and to be retried)."""
        self.reservations.pop(token)

    def _charge(self, rnd: int, cost_s: float) -> None:
        self.charged_labels += 1
        self.charged_s += cost_s
        self.charged_per_round[rnd] += 1
        self.max_seen_cost_s = max(self.max_seen_cost_s, cost_s)

    def summary(self) -> dict:
        return {
            "labels_charged": self.charged_labels,
            "labels_left": self.limits.max_labels - self.charged_labels,
            "dft_hours_charged": self.charged_s / 3600.0,
        }
