"""Fitted survival models reduced to what scoring needs: coefficients and a baseline, as plain arrays.

Scoring uses these directly, vectorized over users, instead of lifelines' survival-function matrices
(users x event times), which run out of memory at scale (lifelines issue #786).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter, WeibullAFTFitter

ModelKind = Literal["cox", "weibull"]
LN2 = float(np.log(2.0))


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


def fit_cox(design: pd.DataFrame, duration: pd.Series, event: pd.Series, penalizer: float = 0.05) -> SurvivalModel:
    data = design.assign(_duration=duration.to_numpy(), _event=event.to_numpy())
    cph = CoxPHFitter(penalizer=penalizer).fit(data, duration_col="_duration", event_col="_event")
    base = cph.baseline_cumulative_hazard_
    return SurvivalModel(
        kind="cox", columns=list(design.columns), coef=cph.params_[design.columns].to_numpy(),
        center=np.asarray(cph._norm_mean[design.columns], dtype=float),
        baseline_times=base.index.to_numpy(dtype=float), baseline_cumhaz=base.iloc[:, 0].to_numpy(dtype=float),
        coef_se=cph.standard_errors_[design.columns].to_numpy(),
        param_cov=cph.variance_matrix_.loc[design.columns, design.columns].to_numpy(dtype=float),
        events=int(event.sum()),
    )


def fit_weibull(design: pd.DataFrame, duration: pd.Series, event: pd.Series,
                penalizer: float = 0.01) -> SurvivalModel:
    data = design.assign(_duration=np.maximum(duration.to_numpy(), 1e-3), _event=event.to_numpy())
    aft = WeibullAFTFitter(penalizer=penalizer).fit(data, duration_col="_duration", event_col="_event")
    params = aft.params_
    coef = np.array([params[("lambda_", c)] for c in design.columns])
    se = np.array([aft.standard_errors_[("lambda_", c)] for c in design.columns])
    order = [("lambda_", c) for c in design.columns] + [("lambda_", "Intercept"), ("rho_", "Intercept")]
    return SurvivalModel(
        kind="weibull", columns=list(design.columns), coef=coef, center=np.zeros(len(design.columns)),
        baseline_times=np.array([]), baseline_cumhaz=np.array([]),
        intercept=float(params[("lambda_", "Intercept")]), rho=float(np.exp(params[("rho_", "Intercept")])),
        coef_se=se, param_cov=aft.variance_matrix_.loc[order, order].to_numpy(dtype=float), events=int(event.sum()),
    )
