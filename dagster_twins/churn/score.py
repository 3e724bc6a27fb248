"""Scoring users at their current tenure: conditional churn probabilities, residual life, tiers, drivers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dagster_twins.churn.models import LN2, SurvivalModel

HORIZONS = (7, 14, 30)
TIERS = ((0.05, "low"), (0.15, "medium"), (0.35, "high"), (np.inf, "very high"))  # by 30-day probability


def conditional_churn(model: SurvivalModel, x: np.ndarray, tenure: np.ndarray,
                      horizons: tuple[int, ...] = HORIZONS) -> np.ndarray:
    """P(churn within h days | survived to ``tenure``) = 1 - S(a + h | x) / S(a | x), per user and horizon."""
    a = np.asarray(tenure, dtype=float)
    h_now = model.cumulative_hazard(a, x)
    out = np.empty((len(a), len(horizons)))
    for j, h in enumerate(horizons):
        out[:, j] = -np.expm1(-(model.cumulative_hazard(a + h, x) - h_now))
    return np.clip(np.maximum.accumulate(out, axis=1), 0.0, 1.0)


def median_residual_life(model: SurvivalModel, x: np.ndarray, tenure: np.ndarray,
                         cap_days: float = 365.0) -> tuple[np.ndarray, np.ndarray]:
    """Days until S(a + r | x) / S(a | x) = 1/2, and whether it was capped (the curve never reaches one half
    within the cap, or within the Cox baseline's range)."""
    a = np.asarray(tenure, dtype=float)
    if model.kind == "weibull":
        scale = np.exp(model.intercept + (x - model.center) @ model.coef)
        r = scale * ((a / scale) ** model.rho + LN2) ** (1 / model.rho) - a
    else:
        # Smallest event time where H0 reaches H0(a) + ln2 / exp(lp).
        target = model.baseline_at(a) + LN2 * np.exp(-model.linear_predictor(x))
        idx = np.searchsorted(model.baseline_cumhaz, target, side="left")
        reachable = idx < len(model.baseline_times)
        r = np.where(reachable, model.baseline_times[np.clip(idx, 0, len(model.baseline_times) - 1)] - a, np.inf)
    capped = ~np.isfinite(r) | (r > cap_days)
    return np.where(capped, cap_days, np.maximum(r, 0.0)), capped


def risk_tier(p30: np.ndarray) -> np.ndarray:
    bounds = np.array([b for b, _ in TIERS])
    names = np.array([n for _, n in TIERS])
    return names[np.searchsorted(bounds, p30, side="left")]


def top_drivers(model: SurvivalModel, x: np.ndarray, k: int = 3) -> list[str]:
    """The k covariates that move each user's log-hazard most, with sign, e.g. '+0.42 tickets_in_window'."""
    contrib = model.contributions(x)
    order = np.argsort(-np.abs(contrib), axis=1)[:, :k]
    names = np.array(model.columns)
    rows = []
    for i in range(len(x)):
        rows.append("; ".join(f"{contrib[i, j]:+.2f} {names[j]}" for j in order[i]))
    return rows


def score_users(model: SurvivalModel, x: np.ndarray, tenure: np.ndarray, user_ids: np.ndarray) -> pd.DataFrame:
    probs = conditional_churn(model, x, tenure)
    residual, capped = median_residual_life(model, x, tenure)
    return pd.DataFrame({
        "user_id": user_ids, "tenure_days": tenure,
        **{f"p_churn_{h}d": probs[:, j] for j, h in enumerate(HORIZONS)},
        "median_remaining_days": residual, "remaining_days_capped": capped,
        "risk_tier": risk_tier(probs[:, -1]), "log_hazard_ratio": model.linear_predictor(x),
        "top_drivers": top_drivers(model, x),
    })
