"""Twin assets on the demo warehouse: incremental = full rebuild, explanations, recovery of planted truth."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import duckdb
import numpy as np
import pandas as pd

from dagster_twins.location import build_definitions
from dagster_twins.tools.twins_recovery import recovery_metrics

TWIN_KEYS = [dg.AssetKey(["twins", "user_beliefs"]), dg.AssetKey(["twins", "user_twins"])]


def run_twins(settings, tags: dict[str, str], **config) -> dg.ExecuteInProcessResult:
    job = build_definitions(settings).resolve_job_def("twins_pipeline")
    run_config = {"ops": {"twins_beliefs": {"config": config}}} if config else None
    return job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), asset_selection=TWIN_KEYS, tags=tags,
                                  run_config=run_config)


def read(path, sql: str) -> pd.DataFrame:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).df()
    finally:
        con.close()


def beliefs(path) -> pd.DataFrame:
    return read(path, "select user_id, belief, category, mean, lower_90, upper_90, confidence, param_1, param_2, "
                      "evidence_weighted, exposure_weighted, summarized_on from twins.user_beliefs order by all")


def run_until_day_before_then_last_day(local, demo) -> dg.ExecuteInProcessResult:
    """The twins over every landing day but the last, then the last day as an increment on the saved state."""
    day_before = demo.end_date - timedelta(days=1)
    first = run_twins(local, {"dagster/asset_partition_range_start": demo.start_date.isoformat(),
                              "dagster/asset_partition_range_end": day_before.isoformat()})
    assert first.success
    last = run_twins(local, {"dagster/partition": demo.end_date.isoformat()})
    assert last.success
    return last


def test_twin_checks_pass_and_every_user_has_a_twin(built):
    settings, result, _ = built
    evaluations = [e for e in result.get_asset_check_evaluations() if e.asset_key in TWIN_KEYS]
    # The twins' six asset checks and the two Great Expectations suites on their tables.
    assert len(evaluations) == 8 and all(e.passed for e in evaluations)
    assert sum(e.check_name.startswith("gx_") for e in evaluations) == 2
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        users = con.execute("select count(*) from marts.dim_users").fetchone()[0]
        assert con.execute("select count(*) from twins.user_twins").fetchone()[0] == users
        why = con.execute("select why from twins.belief_explanations where belief = 'rec_click' limit 1").fetchone()[0]
        assert "trials" in why and "prior" in why
    finally:
        con.close()


def test_daily_increment_equals_full_rebuild(built, built_copy):
    settings = built[0]
    local, demo = built_copy
    last = run_until_day_before_then_last_day(local, demo)
    metadata = last.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["mode"].value.startswith("incremental from the state of")
    assert metadata["summarized"].value == "users with new evidence"
    incremental, full = beliefs(local.warehouse_path), beliefs(settings.warehouse_path)
    assert len(incremental) == len(full)
    assert (incremental[["user_id", "belief", "category"]] == full[["user_id", "belief", "category"]]).all().all()
    # Every row reads as the rebuild's in what follows from the statistics in closed form (decay, priors, mean).
    for column in ("mean", "param_1", "param_2", "evidence_weighted", "exposure_weighted"):
        np.testing.assert_allclose(incremental[column], full[column], rtol=1e-9, atol=1e-12, err_msg=column)
    # The rows summarized by the increment (users with evidence that day) equal the rebuild's in everything.
    today = incremental["summarized_on"] == pd.Timestamp(demo.end_date)
    assert 0 < today.sum() < len(today)
    for column in ("lower_90", "upper_90", "confidence"):
        np.testing.assert_allclose(incremental.loc[today, column], full.loc[today, column], rtol=1e-9, atol=1e-12)


def test_an_untouched_users_rows_are_not_rewritten_yet_read_as_a_rebuild(built, built_copy):
    settings = built[0]
    local, demo = built_copy
    day_before = demo.end_date - timedelta(days=1)
    run_twins(local, {"dagster/asset_partition_range_start": demo.start_date.isoformat(),
                      "dagster/asset_partition_range_end": day_before.isoformat()})
    stored = "select * from twins.belief_summaries order by user_id, belief, category"
    before = read(local.warehouse_path, stored)
    twins_before = read(local.warehouse_path, "select * from twins.user_twins order by user_id")
    assert run_twins(local, {"dagster/partition": demo.end_date.isoformat()}).success
    after = read(local.warehouse_path, stored)
    touched = set(read(local.warehouse_path, "select user_id from twins.belief_summaries "
                                             f"where as_of = date '{demo.end_date}'")["user_id"])
    untouched = sorted(set(before["user_id"]) - touched)
    assert touched and untouched
    # Their stored rows are byte for byte those of the day before: the increment did not rewrite them ...
    pd.testing.assert_frame_equal(before[before["user_id"].isin(untouched)].reset_index(drop=True),
                                  after[after["user_id"].isin(untouched)].reset_index(drop=True))
    twins_after = read(local.warehouse_path, "select * from twins.user_twins order by user_id")
    kept = twins_before[twins_before["user_id"].isin(untouched)].reset_index(drop=True)
    assert (pd.to_datetime(kept["last_updated"]) == pd.Timestamp(day_before)).all()
    pd.testing.assert_frame_equal(kept, twins_after[twins_after["user_id"].isin(untouched)].reset_index(drop=True))
    # ... yet through the view they read as of the last day, as the rebuild over every day reads them.
    view, full = (beliefs(path) for path in (local.warehouse_path, settings.warehouse_path))
    view, full = (f[f["user_id"].isin(untouched)].reset_index(drop=True) for f in (view, full))
    assert len(view) == len(full) > 0
    for column in ("mean", "param_1", "param_2", "evidence_weighted", "exposure_weighted"):
        np.testing.assert_allclose(view[column], full[column], rtol=1e-9, atol=1e-12, err_msg=column)
    assert (pd.to_datetime(view["summarized_on"]) == pd.Timestamp(day_before)).all()


def test_twins_recover_planted_truth(built):
    settings, _, demo = built
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        metrics = recovery_metrics(con, pd.read_parquet(demo.truth_dir / "users.parquet"))
    finally:
        con.close()
    # 300 users over 45 days: loose floors that still fail for a twin that learned nothing.
    assert metrics["activity_rate_correlation"] > 0.5
    assert metrics["rec_click_correlation"] > 0.2
    assert metrics["top_topic_match"] > 0.3  # chance is 1/12
    assert 0.6 < metrics["rec_click_interval_coverage"] <= 1.0


def test_evidence_dated_after_its_landing_day_is_folded_not_fatal(built_copy):
    """A row whose time is after the day it landed (a source clock ahead of the export) counts from the last
    landed day instead of failing the run."""
    local, demo = built_copy
    con = duckdb.connect(str(local.warehouse_path))
    try:
        con.execute(
            "insert into marts.fct_events by name select * replace ("
            "'from_the_future' as interaction_id, cast(? as timestamp) as occurred_at, "
            "cast(? as date) as activity_date, ? as landing_date) "
            "from marts.fct_events where interaction_type = 'rec_clicked' limit 1",
            [demo.end_date + timedelta(days=2), demo.end_date + timedelta(days=2), demo.end_date])
    finally:
        con.close()
    result = run_twins(local, {"dagster/partition": demo.end_date.isoformat()}, full_rebuild=True)
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
