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

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import special

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
        # The inverse regularized incomplete functions directly: scipy.stats' ppf wrappers cost several times
        # more in argument checking than the computation itself over millions of rows.
        # The two bounds run on two threads: these ufuncs release the GIL, and they dominate a daily update.
        p1, p2 = np.asarray(self.p1, dtype=float), np.asarray(self.p2, dtype=float)
        if self.family == "gamma":
            def bound(q: float) -> np.ndarray:
                return special.gammaincinv(p1, q) / p2
        else:
            def bound(q: float) -> np.ndarray:
                return special.betaincinv(p1, p2, q)
        if p1.size < 100_000:
            lo, hi = (bound(q) for q in INTERVAL)
        else:
            with ThreadPoolExecutor(max_workers=2) as pool:
                lo, hi = pool.map(bound, INTERVAL)
        return np.asarray(lo), np.asarray(hi)

    def unique_interval(self) -> tuple[np.ndarray, np.ndarray]:
        """``interval()`` computed once per distinct parameter pair (priors repeat across all users)."""
        if np.size(self.p1) <= 64:  # one user's few rows (the online refold): hashing costs more than it saves
            return self.interval()
        # Hashing the pair as one complex number is linear; np.unique(axis=0) sorts, which costs more at scale.
        codes, pairs = pd.factorize(np.asarray(self.p1, dtype=float) + 1j * np.asarray(self.p2, dtype=float))
        lo, hi = Posterior(self.family, pairs.real, pairs.imag).interval()
        return lo[codes], hi[codes]


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


def confidence(post: Posterior, prior: Posterior,
               post_interval: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """How much the evidence has narrowed the belief: 1 - posterior / prior 90% interval width, in [0, 1].

    0 at the prior (no evidence), approaching 1 as evidence accumulates. Relative to the prior, so it
    reads the same for a propensity, a rate or a share. Pass ``post_interval`` when it is already known.
    """
    lo, hi = post_interval if post_interval is not None else post.interval()
    plo, phi = prior.unique_interval()
    width, prior_width = hi - lo, np.maximum(phi - plo, 1e-12)
    return np.clip(1.0 - width / prior_width, 0.0, 1.0)
