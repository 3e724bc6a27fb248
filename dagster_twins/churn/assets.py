"""Churn assets: a weekly as-of fit with per-horizon backtests and gates, daily scoring of every user, checks.

Thin: the modelling is in ``churn.pipeline`` / ``churn.backtest``; this module reads, calls, writes and reports.
The backtest gates are blocking: when one fails, the predictions are not replaced (the last good ones stay in the
warehouse and the serving copy), the step fails naming the check, and nothing downstream runs.
"""

import time
from datetime import date, timedelta

import dagster as dg
import pandas as pd

from dagster_twins.churn import store
from dagster_twins.churn.backtest import MIN_GATED_USERS, ForecastConfig
from dagster_twins.churn.daily import RefitPolicy, ScoreTally, current_fit, publish_predictions
from dagster_twins.churn.forecast import CHURN, NUMERIC
from dagster_twins.churn.history import known_users, last_landing_day
from dagster_twins.churn.landmarks import LandmarkSpec
from dagster_twins.churn.pipeline import as_of_moment
from dagster_twins.churn.plots import calibration_plot
from dagster_twins.metadata import md_image, md_table, table_metadata
from dagster_twins.partitions import run_window
from dagster_twins.run_config import with_defaults
from dagster_twins.settings import Settings
from dagster_twins.warehouse.resources import WarehouseResource

GROUP = "churn"
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

    def refit_policy(self) -> RefitPolicy:
        forecast = ForecastConfig(horizons=tuple(sorted(set(self.horizons))), covariates=tuple(self.covariates),
                                  max_fit_rows=self.max_fit_rows,
                                  spec=LandmarkSpec(self.inactivity_days, self.window_days, self.half_life_days))
        return RefitPolicy(forecast, self.landmark_every_days, self.refit_every_days, self.calibration_ceiling,
                           self.baseline_margin)


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


SPECS = [
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
]
CHECK_SPECS = [
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
]


def build_churn_assets(settings: Settings) -> dg.AssetsDefinition:
    """The churn layer's multi-asset, its config defaulting to the settings (horizons, inactivity rule, window,
    half-life)."""
    config_class = with_defaults(ChurnConfig, horizons=list(settings.horizons),
                                 inactivity_days=settings.inactivity_days, window_days=settings.feature_window_days,
                                 half_life_days=settings.half_life_days)

    @dg.multi_asset(specs=SPECS, check_specs=CHECK_SPECS, name="churn_model")
    def churn_model(context: dg.AssetExecutionContext, config: config_class, warehouse: WarehouseResource):
        yield from run_churn(context, config, warehouse)

    return churn_model


def run_churn(context: dg.AssetExecutionContext, config: ChurnConfig, warehouse: WarehouseResource):
    """One day of the churn layer: reuse or refit, gate, score every user, report."""
    started = time.perf_counter()
    policy = config.refit_policy()
    with warehouse.reading() as (con, reader):
        as_of = _as_of_day(config, context.run.tags, reader)
        fit = current_fit(con, reader, as_of, policy, context.log.info)
        problems = policy.gate_failures(fit.metrics)
        if problems:
            context.log.error(f"churn as of {as_of}: backtest gates failed, predictions not replaced: "
                              + "; ".join(problems))
            tally = ScoreTally(fit.forecast.horizons)
        else:
            users = known_users(reader, as_of_moment(as_of))
            buckets = warehouse.buckets(users)
            context.log.info(f"churn as of {as_of}: {fit.mode}; scoring {users:,} users in {buckets} bucket(s)")
            tally = publish_predictions(con, reader, fit, as_of, buckets)
        calibration = store.fit_calibration(con, fit.fitted_on)
        written = [METRICS_KEY] if problems else [METRICS_KEY, PREDICTIONS_KEY]
        tables = {key: table_metadata(con, key) for key in written}

    metrics = fit.metrics
    judged = int((metrics.get("users_scored", pd.Series(dtype=float)).fillna(0) >= MIN_GATED_USERS).sum())
    ranking = [p for p in problems if "AUC" in p]
    miscalibrated = [p for p in problems if "calibration" in p]
    # The plot shows the fit's backtests: drawn once per fit (0.26 s), reused on the days that score with it.
    plot = warehouse.reports_folder / f"churn_calibration_{fit.fitted_on}.png"
    if fit.new or not plot.exists():
        plot = calibration_plot(calibration[calibration["question"] == CHURN] if len(calibration) else calibration,
                                plot, title=f"Churn, held-out backtests of the fit of {fit.fitted_on}")
    shown = metrics.drop(columns=[c for c in ("note",) if c in metrics]).round(3)
    yield dg.MaterializeResult(asset_key=METRICS_KEY, metadata={
        **tables[METRICS_KEY], "mode": fit.mode, "fitted_on": str(fit.fitted_on), "backtest": md_table(shown),
        "gates": "; ".join(problems) or "passed",
        "coefficients": md_table(fit.forecast.coefficients()) if fit.forecast.churn_model is not None else "no model",
        "calibration_plot": md_image(plot, "calibration: mean predicted against observed churn per decile"),
        "seconds": round(time.perf_counter() - started, 2),
    })
    if not problems:
        yield dg.MaterializeResult(asset_key=PREDICTIONS_KEY, metadata={
            **tables[PREDICTIONS_KEY], "as_of": str(as_of), "fitted_on": str(fit.fitted_on),
            "dagster/row_count": tally.rows, "questions": dg.MetadataValue.json(tally.questions),
            "risk_tiers": dg.MetadataValue.json(tally.tiers), "preview": md_table(tally.preview),
        })
    yield dg.AssetCheckResult(asset_key=METRICS_KEY, check_name=GATES[0], passed=not ranking,
                              metadata={"problems": "; ".join(ranking) or "none", "backtests_judged": judged,
                                        "baseline_margin": config.baseline_margin})
    yield dg.AssetCheckResult(asset_key=METRICS_KEY, check_name=GATES[1], passed=not miscalibrated,
                              metadata={"problems": "; ".join(miscalibrated) or "none", "backtests_judged": judged,
                                        "ceiling": config.calibration_ceiling})
    yield dg.AssetCheckResult(asset_key=PREDICTIONS_KEY, check_name="everyone_scored",
                              passed=not problems and tally.invalid == 0 and tally.duplicates == 0,
                              metadata={"invalid_rows": tally.invalid, "duplicate_users": tally.duplicates,
                                        "rows": tally.rows})


__all__ = ["build_churn_assets", "PREDICTIONS_KEY", "METRICS_KEY"]
