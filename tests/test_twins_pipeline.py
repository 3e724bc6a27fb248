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


def beliefs(path) -> pd.DataFrame:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("select user_id, belief, category, mean, lower_90, upper_90, confidence "
                           "from twins.user_beliefs order by all").df()
    finally:
        con.close()


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
    copy = local.warehouse_path
    day_before = demo.end_date - timedelta(days=1)
    first = run_twins(local, {"dagster/asset_partition_range_start": demo.start_date.isoformat(),
                              "dagster/asset_partition_range_end": day_before.isoformat()})
    assert first.success
    last = run_twins(local, {"dagster/partition": demo.end_date.isoformat()})
    assert last.success
    mode = last.get_asset_materialization_events()[0].materialization.metadata["mode"].value
    assert mode.startswith("incremental from the state of")
    incremental, full = beliefs(copy), beliefs(settings.warehouse_path)
    assert len(incremental) == len(full)
    for column in ("mean", "lower_90", "upper_90", "confidence"):
        np.testing.assert_allclose(incremental[column], full[column], rtol=1e-9, atol=1e-12)


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
