"""Conjugate belief families over sufficient statistics, vectorized over users.

Every family keeps two statistics per belief row, so one long table holds them all:

| family | stat_a | stat_b | posterior |
|---|---|---|---|
| beta (propensity) | successes | trials | Beta(alpha0 + a, beta0 + b - a) |
| gamma (rate per day) | events | exposure days | Gamma(shape0 + a, rate0 + b) |
| dirichlet (share, a row per category) | count in category | total count | marginal Beta(alpha_k, sum - alpha_k) |

Statistics are sums of daily evidence, so forgetting is exact: decaying by ``0.5 ** (days / half_life)``
and adding new evidence equals recomputing the weighted sum from all history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

Family = Literal["beta", "gamma", "dirichlet"]
INTERVAL = (0.05, 0.95)  # a 90% credible interval


def decay_factor(days: np.ndarray | float, half_life_days: float) -> np.ndarray:
    """Weight of evidence that is ``days`` old: halves every ``half_life_days``."""
    return np.power(0.5, np.asarray(days, dtype=float) / half_life_days)


@dataclass(frozen=True)
class Posterior:
    """Parameters per row: (alpha, beta) for Beta and Dirichlet marginals, (shape, rate) for Gamma."""

    family: Family
    p1: np.ndarray
    p2: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        return self.p1 / self.p2 if self.family == "gamma" else self.p1 / (self.p1 + self.p2)

    def interval(self) -> tuple[np.ndarray, np.ndarray]:
        if self.family == "gamma":
            lo, hi = (stats.gamma.ppf(q, self.p1, scale=1.0 / self.p2) for q in INTERVAL)
        else:
            lo, hi = (stats.beta.ppf(q, self.p1, self.p2) for q in INTERVAL)
        return np.asarray(lo), np.asarray(hi)


def posterior(family: Family, stat_a: np.ndarray, stat_b: np.ndarray, prior_1: np.ndarray,
              prior_2: np.ndarray) -> Posterior:
    """Posterior from statistics and prior parameters (broadcast per row).

    For the Dirichlet family, pass each row's category prior alpha_k as ``prior_1`` and the prior's total
    concentration as ``prior_2``; the row's marginal is Beta(alpha_k + a, (total + b) - (alpha_k + a)).
    """
    a, b = np.asarray(stat_a, dtype=float), np.asarray(stat_b, dtype=float)
    if family == "beta":
        return Posterior(family, prior_1 + a, prior_2 + (b - a))
    if family == "gamma":
        return Posterior(family, prior_1 + a, prior_2 + b)
    alpha_k = prior_1 + a
    return Posterior(family, alpha_k, (prior_2 + b) - alpha_k)


def confidence(post: Posterior, prior: Posterior) -> np.ndarray:
    """How much the evidence has narrowed the belief: 1 - posterior / prior 90% interval width, in [0, 1].

    0 at the prior (no evidence), approaching 1 as evidence accumulates. Relative to the prior, so it
    reads the same for a propensity, a rate or a share.
    """
    lo, hi = post.interval()
    plo, phi = prior.interval()
    width, prior_width = hi - lo, np.maximum(phi - plo, 1e-12)
    return np.clip(1.0 - width / prior_width, 0.0, 1.0)
