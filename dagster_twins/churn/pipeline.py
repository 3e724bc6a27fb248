"""The churn layer's run as plain functions over a bucket reader: fit as of a day on a sample of users'
landmark frames, then score every user a bucket at a time. The asset around them reads, calls, writes, reports.

The fit is bounded: it reads one user-hash bucket, sized so that its users times the landmarks stay under
``max_fit_rows`` (metadata says how many users it sampled). Scoring reads each bucket once, builds its users'
covariates on the as-of landmark alone, and is O(users x horizons).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from dagster_twins.churn.backtest import ForecastConfig, ForecastRun, run_forecast
from dagster_twins.churn.forecast import CHURN, RETURN, QuestionModel, derive, top_drivers
from dagster_twins.churn.history import known_users, observation_start, read_history
from dagster_twins.churn.landmarks import ACTIVE, History, day_number, landmark_features, landmark_grid
from dagster_twins.churn.models import SurvivalModel
from dagster_twins.warehouse.buckets import BucketReader

TIERS = ((0.05, "low"), (0.15, "medium"), (0.35, "high"), (np.inf, "very high"))  # by P(churn) at the tier horizon
TIER_HORIZON = 30


@dataclass(frozen=True)
class Forecast:
    """What scoring needs: both questions' models, the horizons, the covariates' definition and the day the
    warehouse's view begins (rates are per day observed since then)."""

    models: dict[str, QuestionModel]
    config: ForecastConfig
    data_start: float

    @property
    def horizons(self) -> tuple[int, ...]:
        return self.config.horizons

    @property
    def churn_model(self) -> SurvivalModel | None:
        """The churn question's fitted model (None when too few users churned to fit one)."""
        return self.models[CHURN].model

    def coefficients(self) -> pd.DataFrame:
        """Each fitted question's coefficients, named by their scale: the model is fitted on standardized
        covariates, so ``coef_per_sd`` and ``hazard_ratio_per_sd`` are per standard deviation (``sd``, in the
        covariate's own units) and ``hazard_ratio_per_unit`` per one unit of the covariate."""
        frames = []
        for q, qm in self.models.items():
            if qm.model is None:
                continue
            frame = qm.model.coefficients_frame().assign(question=q, sd=[qm.design.sds[c] for c in qm.model.columns])
            frame = frame.rename(columns={"coef": "coef_per_sd", "se": "se_per_sd",
                                          "hazard_ratio": "hazard_ratio_per_sd"})
            frame["hazard_ratio_per_unit"] = np.exp(np.log(frame["hazard_ratio_per_sd"]) / frame["sd"].where(
                frame["sd"] > 0))
            frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def churn_matrix(self, raw: pd.DataFrame) -> np.ndarray:
        """The churn model's columns for raw landmark covariates (``scored_user_covariates`` rows, or shifted
        copies of them in a scenario)."""
        return self.models[CHURN].matrix(derive(raw, self.config.spec))


@dataclass(frozen=True)
class FitResult:
    forecast: Forecast
    run: ForecastRun
    sampled_users: int
    population: int
    sample_buckets: int


def as_of_moment(last_landing_day: date) -> date:
    """Predictions "as of" a landing day use what was known at its end: the start of the next day."""
    return date.fromordinal(last_landing_day.toordinal() + 1)


@dataclass(frozen=True)
class FitSample:
    """The users the fit learns from (one user-hash bucket of ``buckets``), their history and landmark rows."""

    history: History
    features: pd.DataFrame
    data_start: float
    population: int
    buckets: int


def fit_sample(reader: BucketReader, known_at: date, config: ForecastConfig, landmark_every_days: int = 7
               ) -> FitSample:
    """One bucket of users, sized so its users times the landmarks stay under ``max_fit_rows``, and their
    landmark rows on the calendar grid before ``known_at``."""
    population = known_users(reader, known_at)
    data_start = observation_start(reader, known_at)
    if not population or data_start is None:
        raise ValueError(f"no product events known before {known_at}: nothing to learn churn from")
    as_of = int(day_number([known_at])[0])
    grid = landmark_grid(data_start, as_of, landmark_every_days)
    buckets = max(1, math.ceil(population * max(len(grid), 1) / config.max_fit_rows))
    history = read_history(reader, known_at, (0, buckets))
    features = landmark_features(history, [d for d in grid if d < as_of], data_start, config.spec)
    return FitSample(history, features, data_start, population, buckets)


def fit_as_of(reader: BucketReader, known_at: date, config: ForecastConfig, landmark_every_days: int = 7
              ) -> FitResult:
    """Backtest and fit both questions on a sample of users' landmark frames, as known at ``known_at``."""
    sample = fit_sample(reader, known_at, config, landmark_every_days)
    run = run_forecast(sample.features, sample.history, int(day_number([known_at])[0]), config)
    return FitResult(Forecast(run.models, config, sample.data_start), run, len(sample.history.user_ids()),
                     sample.population, sample.buckets)


def tier(p: np.ndarray) -> np.ndarray:
    bounds = np.array([b for b, _ in TIERS])
    names = np.array([n for _, n in TIERS])
    return names[np.searchsorted(bounds, p, side="left")]


def tier_horizon(horizons: tuple[int, ...]) -> int:
    return TIER_HORIZON if TIER_HORIZON in horizons else max(horizons)


def probability_columns(horizons: tuple[int, ...]) -> list[str]:
    return [f"p_{q}_{h}d{end}" for q in (CHURN, RETURN) for h in horizons for end in ("", "_lower_90", "_upper_90")]


def score_history(forecast: Forecast, history: History, known_at: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every user with any history known at ``known_at``: (predictions, raw covariates on that day). Active users
    answer "will they churn within h days", lapsed users "will they come back within h days"."""
    as_of = int(day_number([known_at])[0])
    raw = landmark_features(history, [as_of], forecast.data_start, forecast.config.spec)
    derived = derive(raw, forecast.config.spec)
    horizons = forecast.horizons
    out = pd.DataFrame({
        "user_id": raw["user_id"].to_numpy(), "state": raw["state"].to_numpy(),
        "question": np.where(raw["state"] == ACTIVE, CHURN, RETURN),
        "tenure_days": raw["tenure_days"].to_numpy(float),
        "days_since_last_active": raw["days_since_last_active"].to_numpy(float),
    })
    for column in probability_columns(horizons):
        out[column] = np.nan
    out["log_hazard_ratio"] = np.nan
    out["top_drivers"] = ""
    out["model"] = ""
    for question, qm in forecast.models.items():
        rows = (out["question"] == question).to_numpy()
        if not rows.any():
            continue
        part = derived.loc[rows]
        p, lo, hi = qm.predict(part, horizons)
        for j, h in enumerate(horizons):
            out.loc[rows, f"p_{question}_{h}d"] = p[:, j]
            out.loc[rows, f"p_{question}_{h}d_lower_90"] = lo[:, j]
            out.loc[rows, f"p_{question}_{h}d_upper_90"] = hi[:, j]
        x = qm.matrix(part)
        out.loc[rows, "log_hazard_ratio"] = qm.model.linear_predictor(x) if qm.model is not None else 0.0
        out.loc[rows, "top_drivers"] = top_drivers(qm, x)
        out.loc[rows, "model"] = qm.kind
    at = tier_horizon(horizons)
    churn_rows = (out["question"] == CHURN).to_numpy()
    out["risk_tier"] = np.where(churn_rows, tier(out[f"p_{CHURN}_{at}d"].fillna(0).to_numpy()), "lapsed")
    return out, raw
