"""Churn assets: weekly refit with a time-split backtest, daily scoring of every active user, checks."""

import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from dagster_twins.bucket_io import all_buckets
from dagster_twins.churn.pipeline import NUMERIC, run_churn, score_alive, with_derived
from dagster_twins.churn.plots import calibration_plot
from dagster_twins.churn.serialize import dumps, loads
from dagster_twins.ingestion.warehouse import TableRewrite, replace_rows, table_exists
from dagster_twins.partitions import run_window
from dagster_twins.resources import WarehouseResource

GROUP = "churn"
SCHEMA = "churn"
PREDICTIONS_KEY = dg.AssetKey(["churn", "churn_predictions"])
METRICS_KEY = dg.AssetKey(["churn", "churn_model_metrics"])


# Columns of marts.churn_survival_frame kept per scored user in churn.scored_user_covariates.
SEGMENT_COVARIATES = ["user_id", "plan", "acquisition_channel", "days_since_last_active", "events_in_window",
                      "active_days_in_window", "tickets_in_window", "open_tickets", "campaign_treated",
                      "campaign_control"]


class ChurnConfig(dg.Config):
    model: str = "auto"  # "auto" (best held-out concordance), "cox" or "weibull"
    refit_every_days: int = 7  # refit weekly; score daily with the latest fit in between
    max_fit_rows: int = 50_000  # stratified sample above this many users
    concordance_floor: float = 0.65
    calibration_ceiling: float = 0.10
    # Numeric covariates of the model (from dagster_twins.churn.pipeline: NUMERIC is the default, OPTIONAL more).
    covariates: list[str] = list(NUMERIC)


def _save(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, as_of, replace_all: bool = False) -> None:
    """Write a day's rows (replacing that day's), or replace the whole table."""
    as_of = pd.Timestamp(as_of)
    replace_rows(con, SCHEMA, table, frame.assign(as_of=as_of), None if replace_all else {"as_of": as_of})


@dg.multi_asset(
    specs=[
        dg.AssetSpec(METRICS_KEY, group_name=GROUP, kinds={"python", "duckdb"},
                     deps=[dg.AssetKey(["marts", name]) for name in ("churn_survival_frame", "churn_backtest_frame")],
                     description="The churn model: Cox (penalized) and Weibull AFT backtested on a time split, the "
                                 "better (or configured) one refit weekly. Tables churn_model_metrics, "
                                 "churn_calibration, churn_models (coefficients and baseline as JSON), "
                                 "churn_model_coefficients."),
        dg.AssetSpec(PREDICTIONS_KEY, group_name=GROUP, kinds={"python", "duckdb"}, deps=[METRICS_KEY],
                     description="Every active user: P(churn within 7, 14, 30 days | survived to current tenure), "
                                 "median remaining days (capped and flagged), risk tier, top three drivers. Also "
                                 "churn.scored_user_covariates (the frame's segment columns per scored user)."),
    ],
    check_specs=[
        dg.AssetCheckSpec("backtest_concordance_above_floor", asset=METRICS_KEY,
                          description="Held-out concordance of the chosen model is at least the configured floor."),
        dg.AssetCheckSpec("backtest_calibration_within_ceiling", asset=METRICS_KEY,
                          description="Expected calibration error of the 30-day probability is at most the ceiling."),
        dg.AssetCheckSpec("probabilities_valid", asset=PREDICTIONS_KEY,
                          description="Probabilities in [0, 1] and non-decreasing with the horizon."),
    ],
    name="churn_model",
)
def churn_model(context: dg.AssetExecutionContext, config: ChurnConfig, warehouse: WarehouseResource):
    started = time.perf_counter()
    with warehouse.reading() as (con, reader):
        con.execute(f"create schema if not exists {SCHEMA}")
        users, observed_to, window_days = reader.scalars(
            "select count(*), max(as_of), max(days_in_window) from marts.churn_survival_frame")
        if not users:
            raise dg.Failure("marts.churn_survival_frame is empty: run the dbt models first")
        # The frame is observed up to the end of the window (exclusive): the as-of day is the one before.
        as_of = (pd.Timestamp(observed_to) - pd.Timedelta(seconds=1)).date()
        window = run_window(context.run.tags)
        if window is not None:
            as_of = window[1] - timedelta(days=1)
        previous = con.execute(
            f"select as_of, model_json from {SCHEMA}.churn_models where as_of <= ? and as_of > ? "
            "order by as_of desc limit 1", [as_of, as_of - timedelta(days=config.refit_every_days)]
        ).fetchone() if table_exists(con, SCHEMA, "churn_models") else None
        if previous is not None:
            model, design = loads(previous[1])
            metrics = con.execute(f"select * exclude (as_of) from {SCHEMA}.churn_model_metrics where as_of = ?",
                                  [previous[0]]).df()
            fitted_on = pd.Timestamp(previous[0]).date()
            mode = f"scored with the fit of {fitted_on}"
        else:
            # The fit reads every user (a sample of max_fit_rows is fitted); scoring below goes a bucket at a time.
            result = run_churn(reader.frame("select * from marts.churn_survival_frame"),
                               reader.frame("select * from marts.churn_backtest_frame"), model_choice=config.model,
                               max_fit_rows=config.max_fit_rows, covariates=config.covariates, score=False)
            model, design, metrics = result.model, result.design, result.metrics
            fitted_on, mode = as_of, f"refit on {result.fit_rows:,} of {result.population:,} users"
            _save(con, "churn_model_metrics", metrics, as_of)
            _save(con, "churn_calibration", result.calibration, as_of)
            _save(con, "churn_models", pd.DataFrame({"model": [model.kind], "model_json": [dumps(model, design)]}),
                  as_of)
            _save(con, "churn_model_coefficients",
                  model.coefficients_frame().assign(sd=[design.sds[c] for c in model.columns]), as_of)
        buckets = warehouse.buckets(users)
        context.log.info(f"churn as of {as_of} on {reader.engine}: {mode}; scoring {users:,} users in "
                         f"{buckets} bucket(s)")
        scored = TableRewrite(con, SCHEMA, "churn_predictions")
        history = TableRewrite(con, SCHEMA, "churn_predictions_history", {"as_of": pd.Timestamp(as_of)})
        covariates = TableRewrite(con, SCHEMA, "scored_user_covariates")
        tally = ScoreTally()
        for bucket in all_buckets(buckets):
            frame = reader.table_frame("marts.churn_survival_frame", bucket=bucket)
            predictions = score_alive(model, design, with_derived(frame, window_days))
            scored.write(predictions.assign(model=model.kind, fitted_on=pd.Timestamp(fitted_on),
                                            as_of=pd.Timestamp(as_of)))
            history.write(predictions[["user_id", "p_churn_30d", "risk_tier"]].assign(as_of=pd.Timestamp(as_of)))
            # The survival frame's columns segments filter on, beside the scores, so the simulation's segment
            # view reads the warehouse alone, whichever engine built the marts.
            covariates.write(frame.loc[frame["user_id"].isin(predictions["user_id"]), SEGMENT_COVARIATES])
            tally.add(predictions)
        scored.finish()
        history.finish()
        covariates.finish()
        calibration = con.execute(f"select * from {SCHEMA}.churn_calibration where as_of = ? and model = ?",
                                  [pd.Timestamp(fitted_on), model.kind]).df()

    chosen = metrics[metrics["model"] == model.kind].iloc[0]
    plot = calibration_plot(calibration, Path(warehouse.path).parent / "reports" / f"churn_calibration_{as_of}.png",
                            title=f"{model.kind} model, 30-day churn, backtest of {fitted_on}")
    yield dg.MaterializeResult(asset_key=METRICS_KEY, metadata={
        "mode": mode, "model": model.kind, "concordance": float(chosen["concordance"]),
        "auc_30d": float(chosen["auc_30d"]), "brier_30d": float(chosen["brier_30d"]),
        "calibration_error": float(chosen["calibration_error"]),
        "backtest": dg.MetadataValue.md(metrics.to_markdown(index=False, floatfmt=".3f")),
        "hazard_ratios": dg.MetadataValue.md(model.coefficients_frame().to_markdown(index=False, floatfmt=".3f")),
        "calibration_plot": dg.MetadataValue.path(str(plot)),
        "seconds": round(time.perf_counter() - started, 2),
    })
    yield dg.MaterializeResult(asset_key=PREDICTIONS_KEY, metadata={
        "dagster/row_count": tally.rows, "as_of": str(as_of), "fitted_on": str(fitted_on), "user_buckets": buckets,
        "risk_tiers": dg.MetadataValue.json(tally.tiers),
        "preview": dg.MetadataValue.md(tally.preview.to_markdown(index=False, floatfmt=".3f")),
    })
    yield dg.AssetCheckResult(asset_key=METRICS_KEY, check_name="backtest_concordance_above_floor",
                              passed=bool(chosen["concordance"] >= config.concordance_floor),
                              metadata={"concordance": float(chosen["concordance"]), "floor": config.concordance_floor})
    yield dg.AssetCheckResult(asset_key=METRICS_KEY, check_name="backtest_calibration_within_ceiling",
                              passed=bool(chosen["calibration_error"] <= config.calibration_ceiling),
                              metadata={"calibration_error": float(chosen["calibration_error"]),
                                        "ceiling": config.calibration_ceiling})
    yield dg.AssetCheckResult(asset_key=PREDICTIONS_KEY, check_name="probabilities_valid",
                              passed=tally.invalid == 0, metadata={"invalid_rows": tally.invalid})


class ScoreTally:
    """Row count, tiers, preview and the validity check, added up over the scored buckets."""

    def __init__(self):
        self.rows = self.invalid = 0
        self.tiers: dict[str, int] = {}
        self.preview = pd.DataFrame()

    def add(self, predictions: pd.DataFrame) -> None:
        self.rows += len(predictions)
        for tier, n in predictions["risk_tier"].value_counts().items():
            self.tiers[tier] = self.tiers.get(tier, 0) + int(n)
        if self.preview.empty:
            self.preview = predictions.head(10)
        probs = predictions[["p_churn_7d", "p_churn_14d", "p_churn_30d"]].to_numpy()
        self.invalid += int((~((probs >= 0) & (probs <= 1)).all(axis=1)
                             | ~(probs[:, 1:] >= probs[:, :-1]).all(axis=1)).sum())

