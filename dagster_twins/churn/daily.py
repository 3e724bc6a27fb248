"""One day of the churn layer, with no Dagster: reuse the week's fit or make a new one, then score every user a
bucket at a time and write the predictions. The asset around it reads the configuration, calls and reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import duckdb
import pandas as pd

from dagster_twins.churn import store
from dagster_twins.churn.backtest import ForecastConfig, gate_failures
from dagster_twins.churn.history import bucket_histories
from dagster_twins.churn.pipeline import Forecast, as_of_moment, fit_as_of, score_history
from dagster_twins.warehouse.buckets import BucketReader


@dataclass(frozen=True)
class RefitPolicy:
    """When a stored fit is reused and how a new one is made and judged."""

    forecast: ForecastConfig
    landmark_every_days: int = 7  # training landmarks, on a fixed calendar
    refit_every_days: int = 7  # a fit is reused for scoring this many days
    calibration_ceiling: float = 0.05
    baseline_margin: float = 0.0

    def gate_failures(self, metrics: pd.DataFrame) -> list[str]:
        return gate_failures(metrics, self.calibration_ceiling, self.baseline_margin)


@dataclass(frozen=True)
class DayFit:
    """The fit a day scores with: the forecast, its backtest metrics, the day it was fitted and how it came."""

    forecast: Forecast
    metrics: pd.DataFrame
    fitted_on: date
    mode: str
    new: bool = False  # made in this run (not a stored fit)


def current_fit(con: duckdb.DuckDBPyConnection, reader: BucketReader, as_of: date, policy: RefitPolicy,
                log: Callable[[str], None] = print) -> DayFit:
    """The week's stored fit when it was made with these settings and passed its gates; else a new fit as of
    ``as_of``, saved with its metrics whatever its gates say (so a failed fit can be inspected)."""
    stored = store.recent_fit(con, as_of, policy.refit_every_days)
    if stored is not None:
        fitted_on, forecast = stored
        metrics = store.fit_metrics(con, fitted_on)
        # A fit made with other settings, or one that failed its gates, is not reused: refit instead.
        if forecast.config == policy.forecast and not policy.gate_failures(metrics):
            return DayFit(forecast, metrics, fitted_on, f"scored with the fit of {fitted_on}")
    log(f"churn: fitting as of {as_of} (landmarks every {policy.landmark_every_days} days)")
    fit = fit_as_of(reader, as_of_moment(as_of), policy.forecast, policy.landmark_every_days)
    store.save_fit(con, fit, as_of)
    mode = (f"refit on {fit.run.training_rows:,} landmark rows of {fit.sampled_users:,} sampled users "
            f"(1 of {fit.sample_buckets} user buckets; {fit.population:,} users known), {fit.run.landmarks} landmarks")
    return DayFit(fit.forecast, fit.run.metrics, as_of, mode, new=True)


class ScoreTally:
    """Row count, questions, tiers, preview and the validity check, added up over the scored buckets."""

    def __init__(self, horizons: tuple[int, ...]):
        self.horizons = horizons
        self.rows = self.invalid = self.duplicates = 0
        self.questions: dict[str, int] = {}
        self.tiers: dict[str, int] = {}
        self.preview = pd.DataFrame()

    def add(self, predictions: pd.DataFrame) -> None:
        self.rows += len(predictions)
        self.duplicates += int(predictions["user_id"].duplicated().sum())
        for column, tally in (("question", self.questions), ("risk_tier", self.tiers)):
            for value, n in predictions[column].value_counts().items():
                tally[str(value)] = tally.get(str(value), 0) + int(n)
        if self.preview.empty:
            self.preview = predictions.head(10)
        for question in ("churn", "return"):
            rows = predictions[predictions["question"] == question]
            p = rows[[f"p_{question}_{h}d" for h in self.horizons]].to_numpy()
            lo = rows[[f"p_{question}_{h}d_lower_90" for h in self.horizons]].to_numpy()
            hi = rows[[f"p_{question}_{h}d_upper_90" for h in self.horizons]].to_numpy()
            bad = ~((p >= 0) & (p <= 1) & (lo <= p) & (p <= hi)).all(axis=1)
            bad |= ~(p[:, 1:] >= p[:, :-1]).all(axis=1)
            self.invalid += int(bad.sum())


def publish_predictions(con: duckdb.DuckDBPyConnection, reader: BucketReader, fit: DayFit, as_of: date,
                        buckets: int) -> ScoreTally:
    """Every user known at the end of ``as_of`` scored with ``fit``, a bucket at a time, into the prediction
    tables (``store.PredictionWriter``)."""
    known_at = as_of_moment(as_of)
    writer = store.PredictionWriter(con, as_of, fit.fitted_on)
    tally = ScoreTally(fit.forecast.horizons)
    for history in bucket_histories(reader, known_at, buckets):
        predictions, covariates = score_history(fit.forecast, history, known_at)
        writer.write(predictions, covariates)
        tally.add(predictions)
    writer.finish()
    return tally
