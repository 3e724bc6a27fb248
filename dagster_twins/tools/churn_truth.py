"""The churn layer's held-out backtests against the best achievable on the demo: the planted truth's own
probabilities for the same users, on the same cutoff days, beside naive rankers. For reports only.

The fit is redone here exactly as the asset does it (the same reader, sample and seed), because the asset keeps
metrics and deciles, not every held-out row.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from dagster_twins.churn.backtest import ForecastConfig
from dagster_twins.churn.forecast import CHURN
from dagster_twins.churn.history import last_landing_day
from dagster_twins.churn.landmarks import EPOCH, day_number
from dagster_twins.churn.metrics import auc, calibration_by_decile
from dagster_twins.churn.pipeline import FitResult, as_of_moment, fit_as_of
from dagster_twins.demo.oracle import true_churn_probability
from dagster_twins.warehouse.buckets import DuckDBReader

# The directions the demo plants, by model column: -1 lowers the hazard, +1 raises it.
PLANTED_DIRECTIONS = {
    "log_lifetime_rate": ("engagement lowers the hazard (b_eng < 0)", -1),
    "log_active_day_rate": ("engagement lowers the hazard (b_eng < 0)", -1),
    "log_activity_rate": ("engagement lowers the hazard (b_eng < 0)", -1),
    "events_per_day": ("engagement lowers the hazard (b_eng < 0)", -1),
    "log_days_since_ticket": ("a ticket in the last 14 days raises it (b_trouble > 0): the longer ago, the lower",
                              -1),
    "tickets_last_week": ("a ticket in the last 14 days raises it (b_trouble > 0)", 1),
    "campaign_treated": ("the retention campaign lowers it (planted hazard ratio {campaign_hazard_ratio})", -1),
}


def _last_ticket_days(con, cutoff_day: int, users: pd.Series) -> np.ndarray:
    cutoff = (EPOCH + pd.Timedelta(days=cutoff_day)).date()
    tickets = con.execute("select user_id, max(opened_at) as opened from staging.stg_support_tickets "
                          "where opened_at < ? and landing_date < ? group by user_id", [cutoff, cutoff]).df()
    days = pd.Series(np.floor(day_number(tickets["opened"])), index=tickets["user_id"])
    return days.reindex(users.to_numpy()).to_numpy(float)


def churn_against_truth(con, truth: pd.DataFrame, planted: dict, config: ForecastConfig | None = None,
                        landmark_every_days: int = 7) -> tuple[pd.DataFrame, pd.DataFrame, FitResult]:
    """Per horizon: the model's held-out AUC, calibration error and mean beside the truth's on the same users, and
    the naive rankers' AUC; and the decile tables of model and truth. Also the fit itself."""
    reader = DuckDBReader(con)
    last: date = last_landing_day(reader)
    fit = fit_as_of(reader, as_of_moment(last), config or ForecastConfig(), landmark_every_days)
    truth = truth.set_index("user_id")
    rows, deciles = [], []
    held = fit.run.held_out
    for (horizon, cutoff), part in held[held["question"] == CHURN].groupby(["horizon_days", "cutoff_day"]):
        people = truth.loc[part["user_id"]].reset_index()
        p_true = true_churn_probability(people, planted, _last_ticket_days(con, int(cutoff), part["user_id"]),
                                        int(cutoff), [int(horizon)])[:, 0]
        y = part["y"].to_numpy()
        model_table, model_ece = calibration_by_decile(part["p"].to_numpy(), y)
        truth_table, truth_ece = calibration_by_decile(p_true, y)
        rows.append({
            "horizon_days": int(horizon), "cutoff": str((EPOCH + pd.Timedelta(days=int(cutoff))).date()),
            "users": len(part), "churned": int(y.sum()), "observed": float(y.mean()),
            "mean_predicted": float(part["p"].mean()), "mean_true": float(p_true.mean()),
            "auc_model": auc(part["p"].to_numpy(), y), "auc_truth": auc(p_true, y),
            "auc_recency": auc(part["score_recency"].to_numpy(), y),
            "auc_events_per_day": auc(part["score_events_per_day"].to_numpy(), y),
            "auc_activity_rate": auc(part["score_activity_rate"].to_numpy(), y),
            "calibration_error_model": model_ece, "calibration_error_truth": truth_ece,
        })
        deciles.append(model_table.assign(horizon_days=int(horizon), source="model"))
        deciles.append(truth_table.assign(horizon_days=int(horizon), source="truth"))
    return pd.DataFrame(rows), pd.concat(deciles, ignore_index=True) if deciles else pd.DataFrame(), fit


def planted_directions(fit: FitResult, planted: dict) -> pd.DataFrame:
    """The final churn model's hazard ratio per SD for each column the demo plants a direction for."""
    model = fit.forecast.models[CHURN].model
    rows = []
    for column, (text, sign) in PLANTED_DIRECTIONS.items():
        if model is None or column not in model.columns:
            rows.append({"covariate": column, "planted": text.format(**planted), "hazard_ratio_per_sd": np.nan,
                         "direction_agrees": "not in the model"})
            continue
        coef = model.coefficients_frame().set_index("covariate").loc[column]
        rows.append({"covariate": column, "planted": text.format(**planted),
                     "hazard_ratio_per_sd": float(coef["hazard_ratio"]),
                     "ci_excludes_one": bool(abs(coef["coef"]) > 1.645 * coef["se"]),
                     "direction_agrees": "yes" if np.sign(coef["coef"]) == sign else "no"})
    return pd.DataFrame(rows)
