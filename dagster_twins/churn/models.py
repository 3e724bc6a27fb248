"""Fitted survival models reduced to what scoring needs: coefficients and a baseline, as plain arrays.

Scoring uses these directly, vectorized over users, instead of lifelines' survival-function matrices
(users x event times), which run out of memory at scale (lifelines issue #786).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

ModelKind = Literal["cox", "weibull"]


@dataclass(frozen=True)
class SurvivalModel:
    kind: ModelKind
    columns: list[str]
    coef: np.ndarray  # Cox: log-hazard coefficients; Weibull: log-scale (lambda) coefficients
    center: np.ndarray  # Cox: covariate means the baseline refers to; Weibull: zeros
    baseline_times: np.ndarray  # Cox: event times of the baseline cumulative hazard
    baseline_cumhaz: np.ndarray  # Cox: H0 at those times
    intercept: float = 0.0  # Weibull: log lambda at x = 0
    rho: float = 1.0  # Weibull shape
    coef_se: np.ndarray | None = None
    # Sampling covariance of the parameters the simulation draws: Cox, the coefficients; Weibull, the
    # coefficients, then the intercept, then log rho. None for fits stored before it was kept.
    param_cov: np.ndarray | None = None
    events: int = 0  # churn events the fit saw (the Cox baseline's precision)

    def linear_predictor(self, x: np.ndarray) -> np.ndarray:
        """Log hazard ratio against the reference covariates (Cox: their means; Weibull: x = 0)."""
        z = x - self.center
        if self.kind == "cox":
            return z @ self.coef
        return -self.rho * (z @ self.coef)  # a longer scale means a lower hazard

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Per-covariate terms of the linear predictor (they sum to it exactly)."""
        z = x - self.center
        return z * self.coef if self.kind == "cox" else -self.rho * z * self.coef

    def cumulative_hazard(self, t: np.ndarray, x: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        if self.kind == "cox":
            return self.baseline_at(t) * np.exp(self.linear_predictor(x))
        scale = np.exp(self.intercept + (x - self.center) @ self.coef)
        return (np.maximum(t, 0) / scale) ** self.rho

    def baseline_at(self, t: np.ndarray) -> np.ndarray:
        """The Cox baseline cumulative hazard as a right-continuous step function (0 before the first
        event time, held at its last value after the last)."""
        idx = np.searchsorted(self.baseline_times, t, side="right") - 1
        return np.where(idx >= 0, self.baseline_cumhaz[np.clip(idx, 0, None)], 0.0)

    def coefficients_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame({"model": self.kind, "covariate": self.columns, "coef": self.coef,
                              "se": self.coef_se if self.coef_se is not None else np.nan})
        # For Cox, exp(coef) is the hazard ratio per standard deviation; for the Weibull AFT, the hazard ratio
        # per standard deviation is exp(-rho * coef).
        frame["hazard_ratio"] = np.exp(frame["coef"] if self.kind == "cox" else -self.rho * frame["coef"])
        return frame


def fit_cox(design: pd.DataFrame, duration: pd.Series, event: pd.Series, penalizer: float = 0.05,
            cluster: np.ndarray | None = None) -> SurvivalModel:
    """``cluster``: an id per row when rows repeat a unit (a user at several landmarks): the coefficients'
    covariance is then the robust sandwich over clusters, not the model-based one, which would be too narrow."""
    from lifelines import CoxPHFitter  # imported when fitting: a day that scores with a stored fit never needs it

    data = design.assign(_duration=duration.to_numpy(), _event=event.to_numpy())
    cph = CoxPHFitter(penalizer=penalizer).fit(data, duration_col="_duration", event_col="_event")
    base = cph.baseline_cumulative_hazard_
    coef = cph.params_[design.columns].to_numpy()
    cov = cph.variance_matrix_.loc[design.columns, design.columns].to_numpy(dtype=float)
    if cluster is not None:
        # lifelines' own robust estimator loops over rows in Python (26 s for 36,000 rows); this is the same
        # sandwich, vectorized.
        cov = cluster_robust_cov(design.to_numpy(dtype=float), duration.to_numpy(float), event.to_numpy(),
                                 coef, cov, np.asarray(cluster))
    return SurvivalModel(
        kind="cox", columns=list(design.columns), coef=coef,
        center=np.asarray(cph._norm_mean[design.columns], dtype=float),
        baseline_times=base.index.to_numpy(dtype=float), baseline_cumhaz=base.iloc[:, 0].to_numpy(dtype=float),
        coef_se=np.sqrt(np.diag(cov)), param_cov=cov, events=int(event.sum()),
    )


def cox_score_residuals(x: np.ndarray, duration: np.ndarray, event: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Each row's score residual under the Breslow partial likelihood (rows x covariates; they sum to the score,
    zero at the unpenalized estimate): its event term minus its exposure to every earlier-or-equal event time,
    r_i = d_i (x_i - xbar(t_i)) - w_i sum_{t_j <= t_i} (d_j / S0_j) (x_i - xbar_j)."""
    x = x - x.mean(axis=0)  # a shift cancels in the residuals and keeps exp() tame
    w = np.exp(x @ coef)
    times, inverse = np.unique(duration, return_inverse=True)
    k = len(times)
    at_time_w = np.bincount(inverse, weights=w, minlength=k)
    at_time_wx = np.stack([np.bincount(inverse, weights=w * x[:, c], minlength=k) for c in range(x.shape[1])],
                          axis=1) if x.shape[1] else np.zeros((k, 0))
    s0 = np.cumsum(at_time_w[::-1])[::-1]  # risk set: duration >= t
    s1 = np.cumsum(at_time_wx[::-1], axis=0)[::-1]
    deaths = np.bincount(inverse, weights=event.astype(float), minlength=k)
    xbar = s1 / s0[:, None]
    a = np.cumsum(deaths / s0)
    b = np.cumsum((deaths / s0)[:, None] * xbar, axis=0)
    return event[:, None] * (x - xbar[inverse]) - w[:, None] * (x * a[inverse][:, None] - b[inverse])


def cluster_robust_cov(x: np.ndarray, duration: np.ndarray, event: np.ndarray, coef: np.ndarray,
                       model_cov: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    """The sandwich V M V with M the outer product of the score residuals summed within clusters (Lin and Wei):
    rows of one user at several landmarks are not independent evidence."""
    residuals = cox_score_residuals(x, duration, event, coef)
    codes = pd.factorize(cluster)[0]
    summed = np.stack([np.bincount(codes, weights=residuals[:, c]) for c in range(residuals.shape[1])], axis=1)
    return model_cov @ (summed.T @ summed) @ model_cov
