"""Churn assets on the demo warehouse: everyone scored as of the run's last day, backtests with baselines, the fit
reused between refits, predictions reproducible as of an earlier day, and gates that gate."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import yaml

from dagster_twins.cli import main as cli
from dagster_twins.pipeline import run_pipeline

CHURN_CHECKS = {"backtest_beats_naive_rankers", "backtest_calibration_within_ceiling", "everyone_scored"}
HORIZONS = (7, 14, 30, 90)


def test_churn_model_scores_every_user_with_history(built):
    settings, result, _ = built
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations() if e.check_name in CHURN_CHECKS}
    assert set(evaluations) == CHURN_CHECKS
    assert all(e.passed for e in evaluations.values()), {k: e.metadata for k, e in evaluations.items()}
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        users = con.execute("select count(distinct user_id) from marts.fct_events").fetchone()[0]
        preds = con.execute("select * from churn.churn_predictions").df()
        metrics = con.execute("select * from churn.churn_model_metrics").df()
        covariates = con.execute("select count(*) from churn.scored_user_covariates").fetchone()[0]
    finally:
        con.close()
    assert len(preds) == users == covariates and preds["user_id"].is_unique
    assert set(preds["question"]) <= {"churn", "return"}
    assert (preds["question"].eq("churn") == preds["state"].eq("active")).all()
    for question in ("churn", "return"):
        rows = preds[preds["question"] == question]
        p = rows[[f"p_{question}_{h}d" for h in HORIZONS]].to_numpy()
        lo = rows[[f"p_{question}_{h}d_lower_90" for h in HORIZONS]].to_numpy()
        hi = rows[[f"p_{question}_{h}d_upper_90" for h in HORIZONS]].to_numpy()
        assert ((p >= 0) & (p <= 1) & (lo <= p) & (p <= hi)).all() and (np.diff(p, axis=1) >= 0).all()
        other = "return" if question == "churn" else "churn"
        assert rows[[f"p_{other}_{h}d" for h in HORIZONS]].isna().all().all()
    assert set(preds["risk_tier"]) <= {"low", "medium", "high", "very high", "lapsed"}
    churn_rows = preds[preds["question"] == "churn"]
    assert churn_rows["top_drivers"].str.contains("risk").all()
    assert not churn_rows["top_drivers"].str.contains("_").any()  # plain words, not column names
    backtested = metrics[metrics["kind"] == "cox"]
    assert set(backtested["horizon_days"]) <= set(HORIZONS) and len(backtested)
    for column in ("auc", "auc_recency", "auc_events_per_day", "calibration_error"):
        assert backtested[column].between(0, 1).all(), column


def test_a_recent_fit_is_reused_for_daily_scoring(built_copy):
    """Refit weekly, score daily: a second run within refit_every_days scores with the stored fit."""
    copy, demo = built_copy
    before = _read(copy.warehouse_path, "select * from churn.churn_predictions order by user_id")
    # The calibration plot is the fit's: drawn when the fit is made, reused by the days that score with it.
    plot = copy.reports_dir / f"churn_calibration_{demo.end_date}.png"
    plot.parent.mkdir(parents=True, exist_ok=True)
    plot.write_bytes(b"drawn by the fit")
    result = run_pipeline(copy, demo.start_date, demo.end_date, instance=dg.DagsterInstance.ephemeral(), layer="churn")
    assert result.success
    modes = [m.metadata["mode"].value for m in
             (e.event_specific_data.materialization for e in result.get_asset_materialization_events())
             if "mode" in m.metadata]
    assert modes and modes[0].startswith("scored with the fit of")
    assert plot.read_bytes() == b"drawn by the fit"
    assert len(_read(copy.warehouse_path, "select * from churn.churn_models")) == 1  # no second fit stored
    after = _read(copy.warehouse_path, "select * from churn.churn_predictions order by user_id")
    pd.testing.assert_frame_equal(before, after)


def test_predictions_as_of_an_earlier_day_match_a_warehouse_that_ended_that_day(built, small_demo, tmp_path):
    """The leakage property through the assets: predictions as of day D from the warehouse holding every landing day
    equal those of a warehouse that only ever saw landing days up to D."""
    import shutil

    from tests.conftest import make_settings

    settings, _, demo = built
    as_of = demo.end_date - timedelta(days=10)
    early_root = tmp_path / "early"
    shutil.copytree(small_demo.landing_dir, early_root / "landing")
    early = make_settings(early_root)
    assert run_pipeline(early, demo.start_date, as_of, instance=dg.DagsterInstance.ephemeral(),
                        selection=_upstream_of_churn()).success
    full = _private_copy(settings, tmp_path / "full")
    config = {"ops": {"churn_model": {"config": {"as_of": as_of.isoformat()}}}}
    assert run_pipeline(full, demo.start_date, demo.end_date, instance=dg.DagsterInstance.ephemeral(),
                        layer="churn", run_config=config).success
    sql = "select * exclude (fitted_on) from churn.churn_predictions order by user_id"
    pd.testing.assert_frame_equal(_read(early.warehouse_path, sql), _read(full.warehouse_path, sql))


def test_a_failed_gate_stops_publication_and_the_cli_names_it(built, tmp_path, monkeypatch, capsys):
    settings, _, demo = built
    copy = _private_copy(settings, tmp_path / "gate")
    assert run_pipeline(copy, demo.start_date, demo.end_date, instance=dg.DagsterInstance.ephemeral(),
                        layer="serving").success
    manifest = _manifest(copy)
    before = _read(copy.warehouse_path, "select * from churn.churn_predictions order by user_id")
    # An impossible ceiling (below zero): every judged backtest fails the calibration gate.
    config_file = tmp_path / "strict.yaml"
    config_file.write_text(yaml.safe_dump({"ops": {"churn_model": {"config": {
        "calibration_ceiling": -1.0, "refit_every_days": 0}}}}))
    monkeypatch.setenv("TWINS_WAREHOUSE", str(copy.warehouse_path))
    monkeypatch.setenv("TWINS_LANDING_DIR", str(copy.landing_dir))
    monkeypatch.setenv("TWINS_SOURCES_CONFIG", str(copy.sources_config))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    code = cli(["run", "--start", demo.end_date.isoformat(), "--end", demo.end_date.isoformat(),
                "--run-config", str(config_file)])
    err = capsys.readouterr().err
    assert code == 1
    assert "backtest_calibration_within_ceiling" in err and "FAILED step churn_model" in err
    assert _manifest(copy)["run_id"] == manifest["run_id"]  # the serving copy was not replaced
    after = _read(copy.warehouse_path, "select * from churn.churn_predictions order by user_id")
    pd.testing.assert_frame_equal(before, after)  # nor were the predictions


def _upstream_of_churn() -> list[dg.AssetKey]:
    from dagster_twins.layers import layer_of
    from dagster_twins.location import build_definitions
    from dagster_twins.settings import Settings

    job = build_definitions(Settings.from_env()).resolve_job_def("twins_pipeline")
    return [k for k in job.asset_layer.executable_asset_keys if layer_of(k.path) in ("ingestion", "transform", "churn")]


def _private_copy(settings, root):
    import shutil
    from dataclasses import replace

    root.mkdir(parents=True)
    shutil.copy(settings.warehouse_path, root / "warehouse.duckdb")
    return replace(settings, warehouse_path=root / "warehouse.duckdb")


def _manifest(settings) -> dict:
    from dagster_twins.serving.publish import verify_serving_copy

    return verify_serving_copy(str(settings.serving_file))


def _read(path, sql: str) -> pd.DataFrame:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).df()
    finally:
        con.close()
