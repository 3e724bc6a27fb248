"""Churn assets on the demo warehouse: backtest metrics, predictions for every active user, checks."""

from __future__ import annotations

import dagster as dg
import duckdb
import numpy as np
import pandas as pd

from dagster_twins.pipeline import run_pipeline

CHURN_CHECKS = {"backtest_concordance_above_floor", "backtest_calibration_within_ceiling", "probabilities_valid"}


def test_churn_model_scores_every_active_user(built):
    settings, result, _ = built
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations() if e.check_name in CHURN_CHECKS}
    assert set(evaluations) == CHURN_CHECKS
    assert evaluations["probabilities_valid"].passed
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        active = con.execute("select count(*) from marts.churn_survival_frame where churned = 0").fetchone()[0]
        preds = con.execute("select * from churn.churn_predictions").df()
        metrics = con.execute("select * from churn.churn_model_metrics").df()
    finally:
        con.close()
    assert len(preds) == active and preds["user_id"].is_unique
    probs = preds[["p_churn_7d", "p_churn_14d", "p_churn_30d"]].to_numpy()
    assert ((probs >= 0) & (probs <= 1)).all() and (np.diff(probs, axis=1) >= 0).all()
    assert set(preds["risk_tier"]) <= {"low", "medium", "high", "very high"}
    assert preds["top_drivers"].str.count(";").eq(2).all()
    assert set(metrics["model"]) == {"cox", "weibull"} and metrics["chosen"].sum() == 1
    assert metrics["concordance"].between(0, 1).all()


def test_a_recent_fit_is_reused_for_daily_scoring(built_copy):
    """Refit weekly, score daily: a second run within refit_every_days scores with the stored fit."""
    copy, demo = built_copy
    before = _read(copy.warehouse_path, "select * from churn.churn_predictions order by user_id")
    result = run_pipeline(copy, demo.start_date, demo.end_date, instance=dg.DagsterInstance.ephemeral(), layer="churn")
    assert result.success
    modes = [m.metadata["mode"].value for m in
             (e.event_specific_data.materialization for e in result.get_asset_materialization_events())
             if "mode" in m.metadata]
    assert modes and modes[0].startswith("scored with the fit of")
    assert len(_read(copy.warehouse_path, "select * from churn.churn_models")) == 1  # no second fit stored
    after = _read(copy.warehouse_path, "select * from churn.churn_predictions order by user_id")
    pd.testing.assert_frame_equal(before, after)


def _read(path, sql: str) -> pd.DataFrame:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).df()
    finally:
        con.close()
