"""Churn assets: a weekly as-of fit with per-horizon backtests and gates, daily scoring of every user, checks.

Thin: the modelling is in ``churn.pipeline`` / ``churn.backtest``; this module reads, calls, writes and reports.
The backtest gates are blocking: when one fails, the predictions are not replaced (the last good ones stay in the
warehouse and the serving copy), the step fails naming the check, and nothing downstream runs.
"""

import time
from datetime import date, timedelta

import dagster as dg
import duckdb
import pandas as pd

from dagster_twins.churn.backtest import MIN_GATED_USERS, ForecastConfig, gate_failures
from dagster_twins.churn.forecast import CHURN, NUMERIC
from dagster_twins.churn.landmarks import LandmarkSpec
from dagster_twins.churn.pipeline import Forecast, as_of_moment, fit_as_of, score_history
from dagster_twins.churn.plots import calibration_plot
from dagster_twins.churn.serialize import dumps, loads
from dagster_twins.churn.store import bucket_histories, known_users, last_landing_day
from dagster_twins.partitions import run_window
from dagster_twins.warehouse.resources import WarehouseResource
from dagster_twins.warehouse.tables import TableRewrite, replace_rows, table_exists

GROUP = "churn"
SCHEMA = "churn"
PREDICTIONS_KEY = dg.AssetKey(["churn", "churn_predictions"])
METRICS_KEY = dg.AssetKey(["churn", "churn_model_metrics"])
INPUTS = [dg.AssetKey(["marts", "fct_events"])] + [
    dg.AssetKey(["staging", name]) for name in ("stg_subscriptions", "stg_support_tickets", "stg_campaigns",
                                                 "stg_users")]
GATES = ("backtest_beats_naive_rankers", "backtest_calibration_within_ceiling")


class ChurnConfig(dg.Config):
    horizons: list[int] = [7, 14, 30, 90]  # days: P(churn within h) for active users, P(return within h) for lapsed
    landmark_every_days: int = 7  # training landmarks, on a fixed calendar
    refit_every_days: int = 7  # refit weekly; score daily with the latest fit in between
    max_fit_rows: int = 200_000  # the fit reads a user-hash sample of about this many (user, landmark) rows
    calibration_ceiling: float = 0.05  # held-out calibration error (mean absolute, by decile) per horizon
    baseline_margin: float = 0.0  # AUC a model may trail a naive ranker by before its gate fails
    inactivity_days: int = 30  # users without subscription rows have lapsed after this many silent days
    window_days: int = 28  # "lately": the window recent behaviour is measured over
    half_life_days: float = 60.0  # the decayed activity rate's half-life (the twins' default)
    covariates: list[str] = list(NUMERIC)  # model columns (dagster_twins.churn.forecast.NUMERIC)
    as_of: str = ""  # YYYY-MM-DD: predict as of this landing day instead of the run's last

    def forecast_config(self) -> ForecastConfig:
        return ForecastConfig(horizons=tuple(sorted(set(self.horizons))), covariates=tuple(self.covariates),
                              max_fit_rows=self.max_fit_rows,
                              spec=LandmarkSpec(self.inactivity_days, self.window_days, self.half_life_days))


def _as_of_day(config: ChurnConfig, tags, reader) -> date:
    """The landing day predictions are as of: the configured one, the run's last, or the warehouse's last."""
    if config.as_of:
        return date.fromisoformat(config.as_of)
    window = run_window(tags)
    if window is not None:
        return window[1] - timedelta(days=1)
    last = last_landing_day(reader)
    if last is None:
        raise dg.Failure("marts.fct_events is empty: run ingestion and the dbt models first")
    return last


def _stored_fit(con: duckdb.DuckDBPyConnection, as_of: date, refit_every_days: int):
    if not table_exists(con, SCHEMA, "churn_models"):
        return None
    row = con.execute(f"select as_of, model_json from {SCHEMA}.churn_models where as_of <= ? and as_of > ? "
                      "and model = 'landmark' order by as_of desc limit 1",
                      [as_of, as_of - timedelta(days=refit_every_days)]).fetchone()
    return None if row is None else (pd.Timestamp(row[0]).date(), row[1])


def _save(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, as_of: date) -> None:
    replace_rows(con, SCHEMA, table, frame.assign(as_of=pd.Timestamp(as_of)), {"as_of": pd.Timestamp(as_of)})


def _coefficients(forecast: Forecast) -> pd.DataFrame:
    frames = [qm.model.coefficients_frame().assign(question=q, sd=[qm.design.sds[c] for c in qm.model.columns])
              for q, qm in forecast.models.items() if qm.model is not None]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _md(frame: pd.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.to_markdown(index=False, floatfmt=".3f"))


@dg.multi_asset(
    specs=[
        dg.AssetSpec(METRICS_KEY, group_name=GROUP, kinds={"python", "duckdb"}, deps=INPUTS,
                     description="The as-of churn and return models: landmark Cox models (lifelines) fitted on what "
                                 "was known at each weekly landmark, backtested out of time per horizon against "
                                 "naive rankers, recalibrated where that helps. Tables churn_model_metrics, "
                                 "churn_calibration, churn_models (JSON), churn_model_coefficients."),
        # Skippable: when a gate fails the predictions are not replaced, and no materialization says they were.
        dg.AssetSpec(PREDICTIONS_KEY, group_name=GROUP, kinds={"python", "duckdb"}, deps=[METRICS_KEY], skippable=True,
                     description="Every user with any history, as of the run's last landing day: active users get "
                                 "P(churn within h days), lapsed users P(return within h days) (column question), "
                                 "each with a 90% interval, a risk tier and the three strongest drivers in plain "
                                 "words. Also churn.scored_user_covariates (each user's covariates that day)."),
    ],
    check_specs=[
        dg.AssetCheckSpec("backtest_beats_naive_rankers", asset=METRICS_KEY, blocking=True,
                          description="At no backtested horizon does the model rank clearly worse than ranking by "
                                      "recency or by product events per day: its held-out AUC below theirs (less "
                                      "baseline_margin) with the 90% bootstrap interval of the gap below zero."),
        dg.AssetCheckSpec("backtest_calibration_within_ceiling", asset=METRICS_KEY, blocking=True,
                          description="At every backtested horizon the held-out calibration error (mean absolute "
                                      "gap by decile, after recalibration) is at most calibration_ceiling plus the "
                                      "error chance alone gives on that many users (calibration_noise)."),
        dg.AssetCheckSpec("everyone_scored", asset=PREDICTIONS_KEY,
                          description="One row per user with any history; probabilities in [0, 1], inside their "
                                      "intervals and non-decreasing with the horizon."),
    ],
    name="churn_model",
)
def churn_model(context: dg.AssetExecutionContext, config: ChurnConfig, warehouse: WarehouseResource):
    started = time.perf_counter()
    with warehouse.reading() as (con, reader):
        con.execute(f"create schema if not exists {SCHEMA}")
        as_of = _as_of_day(config, context.run.tags, reader)
        known_at = as_of_moment(as_of)
        stored = _stored_fit(con, as_of, config.refit_every_days)
        if stored is not None:
            fitted_on, forecast = stored[0], loads(stored[1])
            metrics = con.execute(f"select * exclude (as_of) from {SCHEMA}.churn_model_metrics where as_of = ?",
                                  [pd.Timestamp(fitted_on)]).df()
            # A fit made with other settings, or one that failed its gates, is not reused: refit instead.
            if forecast.config != config.forecast_config() or gate_failures(
                    metrics, config.calibration_ceiling, config.baseline_margin):
                stored = None
        if stored is not None:
            mode = f"scored with the fit of {fitted_on}"
        else:
            context.log.info(f"churn: fitting as of {as_of} (landmarks every {config.landmark_every_days} days)")
            fit = fit_as_of(reader, known_at, config.forecast_config(), config.landmark_every_days)
            forecast, metrics, fitted_on = fit.forecast, fit.run.metrics, as_of
            mode = (f"refit on {fit.run.training_rows:,} landmark rows of {fit.sampled_users:,} sampled users "
                    f"(1 of {fit.sample_buckets} user buckets; {fit.population:,} users known), "
                    f"{fit.run.landmarks} landmarks")
            _save(con, "churn_model_metrics", metrics, as_of)
            _save(con, "churn_calibration", fit.run.calibration, as_of)
            _save(con, "churn_models", pd.DataFrame({"model": ["landmark"], "model_json": [dumps(forecast)]}), as_of)
            _save(con, "churn_model_coefficients", _coefficients(forecast), as_of)
        problems = gate_failures(metrics, config.calibration_ceiling, config.baseline_margin)
        judged = int((metrics.get("users_scored", pd.Series(dtype=float)).fillna(0) >= MIN_GATED_USERS).sum())
        ranking = [p for p in problems if "AUC" in p]
        calibration = [p for p in problems if "calibration" in p]
        publish = not problems
        tally = ScoreTally(forecast.horizons)
        if publish:
            users = known_users(reader, known_at)
            buckets = warehouse.buckets(users)
            context.log.info(f"churn as of {as_of}: {mode}; scoring {users:,} users in {buckets} bucket(s)")
            stamp = {"fitted_on": pd.Timestamp(fitted_on), "as_of": pd.Timestamp(as_of)}
            scored = TableRewrite(con, SCHEMA, "churn_predictions")
            history = TableRewrite(con, SCHEMA, "churn_predictions_history", {"as_of": pd.Timestamp(as_of)})
            covariates = TableRewrite(con, SCHEMA, "scored_user_covariates")
            for history_of_bucket in bucket_histories(reader, known_at, buckets):
                predictions, raw = score_history(forecast, history_of_bucket, known_at)
                scored.write(predictions.assign(**stamp))
                history.write(predictions.drop(columns=["top_drivers"]).assign(**stamp))
                covariates.write(raw.assign(as_of=pd.Timestamp(as_of)))
                tally.add(predictions)
            scored.finish()
            history.finish()
            covariates.finish()
        else:
            context.log.error(f"churn as of {as_of}: backtest gates failed, predictions not replaced: "
                              + "; ".join(problems))
        table = con.execute(f"select * from {SCHEMA}.churn_calibration where as_of = ?",
                            [pd.Timestamp(fitted_on)]).df() if table_exists(con, SCHEMA, "churn_calibration") \
            else pd.DataFrame()

    plot = calibration_plot(table[table["question"] == CHURN] if len(table) else table,
                            warehouse.reports_folder / f"churn_calibration_{as_of}.png",
                            title=f"Churn, held-out backtests of the fit of {fitted_on}")
    shown = metrics.drop(columns=[c for c in ("note",) if c in metrics]).round(3)
    yield dg.MaterializeResult(asset_key=METRICS_KEY, metadata={
        "mode": mode, "fitted_on": str(fitted_on), "backtest": _md(shown),
        "gates": "passed" if publish else "; ".join(problems),
        "coefficients": _md(_coefficients(forecast)) if forecast.models[CHURN].model is not None else "no model",
        "calibration_plot": dg.MetadataValue.path(str(plot)),
        "seconds": round(time.perf_counter() - started, 2),
    })
    if publish:
        yield dg.MaterializeResult(asset_key=PREDICTIONS_KEY, metadata={
            "as_of": str(as_of), "fitted_on": str(fitted_on),
            "dagster/row_count": tally.rows, "questions": dg.MetadataValue.json(tally.questions),
            "risk_tiers": dg.MetadataValue.json(tally.tiers), "preview": _md(tally.preview),
        })
    yield dg.AssetCheckResult(asset_key=METRICS_KEY, check_name=GATES[0], passed=not ranking,
                              metadata={"problems": "; ".join(ranking) or "none", "backtests_judged": judged,
                                        "baseline_margin": config.baseline_margin})
    yield dg.AssetCheckResult(asset_key=METRICS_KEY, check_name=GATES[1], passed=not calibration,
                              metadata={"problems": "; ".join(calibration) or "none", "backtests_judged": judged,
                                        "ceiling": config.calibration_ceiling})
    yield dg.AssetCheckResult(asset_key=PREDICTIONS_KEY, check_name="everyone_scored",
                              passed=publish and tally.invalid == 0 and tally.duplicates == 0,
                              metadata={"invalid_rows": tally.invalid, "duplicate_users": tally.duplicates,
                                        "rows": tally.rows})


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


__all__ = ["churn_model", "PREDICTIONS_KEY", "METRICS_KEY"]
