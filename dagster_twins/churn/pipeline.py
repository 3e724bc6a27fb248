"""The churn modelling run as plain functions: backtest both models, choose, refit, score everyone alive."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dagster_twins.churn.covariates import Design, fit_design, stratified_cap
from dagster_twins.churn.metrics import auc, brier, calibration_by_decile, concordance
from dagster_twins.churn.models import SurvivalModel, fit_cox, fit_weibull
from dagster_twins.churn.score import conditional_churn, score_users

NUMERIC = ["events_in_window", "events_previous_window", "engagement_trend", "active_days_in_window",
           "days_since_last_active", "rec_click_rate", "tickets_in_window", "tickets_total", "mean_satisfaction",
           "purchases", "spend", "campaign_treated"]
CATEGORICAL = ["plan", "acquisition_channel"]
FITTERS = {"cox": fit_cox, "weibull": fit_weibull}


@dataclass(frozen=True)
class ChurnRun:
    model: SurvivalModel
    design: Design
    predictions: pd.DataFrame
    metrics: pd.DataFrame  # one row per model kind: backtest metrics
    calibration: pd.DataFrame
    fit_rows: int
    population: int


def with_derived(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["engagement_trend"] = np.log1p(out["events_in_window"]) - np.log1p(out["events_previous_window"])
    out["duration_days"] = np.maximum(out["duration_days"].astype(float), 1e-3)
    return out


def _fit(kind: str, frame: pd.DataFrame, max_rows: int, seed: int) -> tuple[SurvivalModel, Design, int]:
    sample = stratified_cap(frame, "churned", max_rows, seed)
    design = fit_design(sample, [c for c in NUMERIC if c in sample], [c for c in CATEGORICAL if c in sample])
    model = FITTERS[kind](design.transform(sample), sample["duration_days"], sample["churned"])
    return model, design, len(sample)


def backtest(frame: pd.DataFrame, kind: str, max_rows: int, seed: int) -> tuple[dict, pd.DataFrame]:
    """Fit on the frame as of the cutoff, score users alive then, compare with who churned within the horizon."""
    model, design, _ = _fit(kind, frame, max_rows, seed)
    alive = frame[frame["churned"] == 0]
    x = design.transform(alive).to_numpy()
    p30 = conditional_churn(model, x, alive["duration_days"].to_numpy(), horizons=(30,))[:, 0]
    outcome = alive["churned_within_horizon"].to_numpy()
    table, ece = calibration_by_decile(p30, outcome)
    metrics = {
        "model": kind, "users_scored": len(alive), "churned_within_30d": int(outcome.sum()),
        "concordance": concordance(alive["days_observed_after_cutoff"].to_numpy(), model.linear_predictor(x),
                                   alive["churned_by_now"].to_numpy()),
        "auc_30d": auc(p30, outcome), "brier_30d": brier(p30, outcome), "calibration_error": ece,
        "mean_predicted_30d": float(p30.mean()), "observed_rate_30d": float(outcome.mean()),
    }
    return metrics, table.assign(model=kind)


def run_churn(current: pd.DataFrame, at_cutoff: pd.DataFrame, *, model_choice: str = "auto",
              max_fit_rows: int = 50_000, seed: int = 0) -> ChurnRun:
    current, at_cutoff = with_derived(current), with_derived(at_cutoff)
    results = [backtest(at_cutoff, kind, max_fit_rows, seed) for kind in FITTERS]
    metrics = pd.DataFrame([m for m, _ in results])
    kind = model_choice if model_choice != "auto" else str(metrics.sort_values("concordance").iloc[-1]["model"])
    metrics["chosen"] = metrics["model"] == kind
    model, design, fit_rows = _fit(kind, current, max_fit_rows, seed)
    alive = current[current["churned"] == 0]
    predictions = score_users(model, design.transform(alive).to_numpy(), alive["duration_days"].to_numpy(),
                              alive["user_id"].to_numpy())
    calibration = pd.concat([t for _, t in results], ignore_index=True)
    return ChurnRun(model, design, predictions, metrics, calibration, fit_rows, len(current))
