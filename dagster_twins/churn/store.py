"""The churn layer's own tables: stored fits (with their backtest metrics and calibration), the predictions and
their history. Other layers read the churn layer through here (``latest_forecast``) or by table name."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import duckdb
import pandas as pd

from dagster_twins.churn.history import bucket_histories, observation_start
from dagster_twins.churn.landmarks import day_number, landmark_features
from dagster_twins.churn.pipeline import FitResult, Forecast
from dagster_twins.churn.serialize import dumps, loads
from dagster_twins.warehouse.buckets import BucketReader
from dagster_twins.warehouse.tables import TableRewrite, replace_rows, table_exists

SCHEMA = "churn"


def covariates_as_of(reader: BucketReader, day: date, buckets: int) -> Iterator[pd.DataFrame]:
    """Every user's covariates at the start of ``day`` from what was known then (the columns of
    churn.scored_user_covariates, with the same as-of discipline), a bucket of users at a time: what another layer
    reads when it needs users as they were on a past day (the simulation's campaign effects, as of the send)."""
    landmark = int(day_number([day])[0])
    start = observation_start(reader, day)
    for history in bucket_histories(reader, day, buckets):
        yield landmark_features(history, [landmark], start if start is not None else float(landmark))


def _as_of_rows(con: duckdb.DuckDBPyConnection, table: str, as_of: date) -> pd.DataFrame:
    if not table_exists(con, SCHEMA, table):
        return pd.DataFrame()
    return con.execute(f"select * exclude (as_of) from {SCHEMA}.{table} where as_of = ?", [pd.Timestamp(as_of)]).df()


def _save(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, as_of: date) -> None:
    replace_rows(con, SCHEMA, table, frame.assign(as_of=pd.Timestamp(as_of)), {"as_of": pd.Timestamp(as_of)})


def recent_fit(con: duckdb.DuckDBPyConnection, as_of: date, within_days: int) -> tuple[date, Forecast] | None:
    """The latest fit made on or before ``as_of`` and fewer than ``within_days`` days before it."""
    if not table_exists(con, SCHEMA, "churn_models"):
        return None
    row = con.execute(f"select as_of, model_json from {SCHEMA}.churn_models where as_of <= ? and as_of > ? "
                      "and model = 'landmark' order by as_of desc limit 1",
                      [as_of, as_of - timedelta(days=within_days)]).fetchone()
    return None if row is None else (pd.Timestamp(row[0]).date(), loads(row[1]))


def fit_metrics(con: duckdb.DuckDBPyConnection, fitted_on: date) -> pd.DataFrame:
    """The backtest metrics of the fit made on ``fitted_on`` (a row per question and horizon)."""
    return _as_of_rows(con, "churn_model_metrics", fitted_on)


def fit_calibration(con: duckdb.DuckDBPyConnection, fitted_on: date) -> pd.DataFrame:
    """The held-out calibration by decile of the fit made on ``fitted_on``."""
    return _as_of_rows(con, "churn_calibration", fitted_on)


def save_fit(con: duckdb.DuckDBPyConnection, fit: FitResult, as_of: date) -> None:
    """A new fit's metrics, calibration, model (JSON) and coefficients, replacing any of the same day."""
    con.execute(f"create schema if not exists {SCHEMA}")
    _save(con, "churn_model_metrics", fit.run.metrics, as_of)
    _save(con, "churn_calibration", fit.run.calibration, as_of)
    _save(con, "churn_models", pd.DataFrame({"model": ["landmark"], "model_json": [dumps(fit.forecast)]}), as_of)
    _save(con, "churn_model_coefficients", fit.forecast.coefficients(), as_of)


def latest_forecast(con: duckdb.DuckDBPyConnection) -> tuple[Forecast, pd.Timestamp, pd.Timestamp] | None:
    """The fit behind the current predictions, the day it was fitted and the day the predictions are as of
    (None before the churn layer has published any)."""
    if not table_exists(con, SCHEMA, "churn_predictions"):
        return None
    fitted_on, as_of = con.execute(f"select max(fitted_on), max(as_of) from {SCHEMA}.churn_predictions").fetchone()
    row = con.execute(f"select model_json from {SCHEMA}.churn_models where as_of = ? and model = 'landmark' limit 1",
                      [fitted_on]).fetchone()
    return None if row is None else (loads(row[0]), pd.Timestamp(fitted_on), pd.Timestamp(as_of))


class PredictionWriter:
    """The one writer of the predictions, their daily history and the covariates they were scored on, a bucket
    of users at a time; ``finish`` closes all three (``TableRewrite``)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, as_of: date, fitted_on: date):
        con.execute(f"create schema if not exists {SCHEMA}")
        self.stamp = {"fitted_on": pd.Timestamp(fitted_on), "as_of": pd.Timestamp(as_of)}
        self.predictions = TableRewrite(con, SCHEMA, "churn_predictions")
        self.history = TableRewrite(con, SCHEMA, "churn_predictions_history", {"as_of": pd.Timestamp(as_of)})
        self.covariates = TableRewrite(con, SCHEMA, "scored_user_covariates")

    def write(self, predictions: pd.DataFrame, covariates: pd.DataFrame) -> None:
        self.predictions.write(predictions.assign(**self.stamp))
        self.history.write(predictions.drop(columns=["top_drivers"]).assign(**self.stamp))
        self.covariates.write(covariates.assign(as_of=self.stamp["as_of"]))

    def finish(self) -> int:
        self.history.finish()
        self.covariates.finish()
        return self.predictions.finish()
