"""End to end: demo landing files -> Dagster ingestion -> dbt marts, in a temporary warehouse."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb

from dagster_twins.contract import SOURCES
from dagster_twins.layers import layer_of
from dagster_twins.location import build_definitions
from dagster_twins.pipeline import run_pipeline
from tests.conftest import make_settings

MARTS = ("fct_events", "dim_users", "fct_user_daily_features", "fct_user_daily_dimension_counts",
         "fct_user_churn_survival")
# The marts' names before fct_/dim_, views over the renamed marts until their deprecation date (marts/legacy/).
LEGACY_NAMES = {"user_daily_features": "fct_user_daily_features",
                "user_daily_dimension_counts": "fct_user_daily_dimension_counts",
                "churn_survival_frame": "fct_user_churn_survival",
                "campaign_experiment_frame": "fct_campaign_experiment_assignments"}


def count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return int(con.execute(f"select count(*) from {table}").fetchone()[0])


def test_run_succeeds_with_all_checks_passing(built):
    _, result, _ = built
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) > 20
    # The churn backtest gates (concordance floor, calibration ceiling) judge model quality; on 300 users with a
    # handful of churns in the backtest month they measure noise, so they are tested at scale, not here.
    model_gates = {"backtest_concordance_above_floor", "backtest_calibration_within_ceiling"}
    failed = [(e.asset_key.to_user_string(), e.check_name) for e in evaluations
              if not e.passed and e.check_name not in model_gates]
    # Per-user campaign effects need enough churn events in each arm (tested at scale in test_uplift.py): on 300
    # users the targeting scenario is skipped, its warning naming the reason.
    targeting = ("simulation/scenario_retention_campaign_budget_targeting", "simulated")
    assert failed in ([], [targeting])
    if failed:
        warning = next(e for e in evaluations if (e.asset_key.to_user_string(), e.check_name) == targeting)
        assert "no per-user effects" in warning.metadata["reason"].value


def test_ingestion_reconciles_with_what_the_generator_wrote(built):
    settings, result, demo = built
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        for source in SOURCES:
            read, loaded, dup, quarantined = con.execute(
                "select sum(rows_read), sum(rows_loaded), sum(rows_duplicate), sum(rows_quarantined) "
                "from raw.load_log where source = ?", [source]
            ).fetchone()
            assert read == demo.rows_written[source], source
            assert read == loaded + dup + quarantined, source
            assert count(con, f"raw.{source}") == loaded
            injected = demo.injected.get(source, {})
            assert dup == injected.get("duplicate", 0), source
            assert quarantined == sum(n for kind, n in injected.items() if kind != "duplicate"), source
    finally:
        con.close()


def test_marts_are_filled_and_consistent(built):
    settings, _, _ = built
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        for mart in MARTS:
            assert count(con, f"marts.{mart}") > 0, mart
        # Every loaded event is in fct_events exactly once.
        assert count(con, "marts.fct_events where source = 'events'") == count(con, "raw.events")
        # Daily features add up to the event stream.
        feature_events = con.execute("select sum(events) from marts.fct_user_daily_features").fetchone()[0]
        assert feature_events == count(con, "raw.events")
        # One survival row per user; churn is observed for some and censored for others.
        users, churned = con.execute("select count(*), sum(churned) from marts.fct_user_churn_survival").fetchone()
        assert users == count(con, "marts.dim_users")
        assert 0 < churned < users
    finally:
        con.close()


def test_old_mart_names_are_views_over_the_renamed_marts(built):
    settings, _, _ = built
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        for old, new in LEGACY_NAMES.items():
            kind = con.execute("select table_type from information_schema.tables where table_schema = 'marts' "
                               "and table_name = ?", [old]).fetchone()
            assert kind == ("VIEW",), old
            assert count(con, f"(select * from marts.{old} except all select * from marts.{new})") == 0, old
            assert count(con, f"marts.{old}") == count(con, f"marts.{new}") > 0, old
    finally:
        con.close()


def test_rerunning_a_day_does_not_double_count(built_copy):
    rerun_settings, demo = built_copy
    copy = rerun_settings.warehouse_path

    def snapshot() -> dict[str, int]:
        con = duckdb.connect(str(copy), read_only=True)
        try:
            return {m: count(con, f"marts.{m}") for m in MARTS} | {
                "spend": con.execute("select round(sum(spend), 6) from marts.fct_user_daily_features").fetchone()[0]
            }
        finally:
            con.close()

    before = snapshot()
    last = demo.end_date
    # Ingestion and dbt, which write the counted marts (whole-pipeline re-runs over a built warehouse succeeding is
    # test_serving's and test_twin_online's: the layers above the marts only read them).
    job = build_definitions(rerun_settings).resolve_job_def("twins_pipeline")
    mart_writers = sorted(k for k in job.asset_layer.executable_asset_keys
                          if layer_of(k.path) in ("ingestion", "transform"))
    for day in (last, last - timedelta(days=3)):
        result = run_pipeline(rerun_settings, day, day, instance=dg.DagsterInstance.ephemeral(),
                              selection=mart_writers)
        assert result.success
    after = snapshot()
    for mart in ("fct_events", "fct_user_daily_features", "fct_user_daily_dimension_counts", "dim_users"):
        assert after[mart] == before[mart], mart
    assert after["spend"] == before["spend"]


def test_own_minimal_events_file_runs_through(tmp_path: Path):
    """A user's own transaction log with only user_id, occurred_at, event_type, in one undated file."""
    landing = tmp_path / "landing" / "events"
    landing.mkdir(parents=True)
    start = date(2026, 1, 1)
    lines = ["user_id,occurred_at,event_type"]
    for user in range(40):
        active_days = 5 + 2 * user  # users stay for longer and longer: some go quiet, some stay active
        for day in range(0, min(active_days, 80), 2):
            kind = "purchase" if day % 6 else "view"
            lines.append(f"user_{user},{start + timedelta(days=day)}T12:{user:02d}:00Z,{kind}")
    (landing / "transactions.csv").write_text("\n".join(lines) + "\n")
    settings = make_settings(tmp_path)
    last_day = start + timedelta(days=78)  # the file has no date in its name: it lands on its latest event's day
    result = run_pipeline(settings, last_day, last_day, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        assert count(con, "raw.events") == len(lines) - 1
        assert count(con, "marts.dim_users") == 40
        definitions = dict(con.execute(
            "select churn_definition, count(*) from marts.fct_user_churn_survival group by 1").fetchall())
        assert definitions == {"inactivity": 40}
        assert 0 < con.execute("select sum(churned) from marts.fct_user_churn_survival").fetchone()[0] < 40
        # No subscriptions: churn by inactivity still scores every customer, active ones by P(churn within h),
        # lapsed ones by P(return within h).
        questions = dict(con.execute("select question, count(*) from churn.churn_predictions group by 1").fetchall())
        assert sum(questions.values()) == 40 and set(questions) == {"churn", "return"}
        assert con.execute("select count(*) from churn.churn_models").fetchone()[0] == 1
        assert con.execute("select bool_and(p_churn_30d between 0 and 1) and bool_and(p_return_30d between 0 and 1) "
                           "from churn.churn_predictions").fetchone()[0]
        # No campaigns: the scenario that needs a measured campaign effect is skipped, saying why; the others run.
        status = dict(con.execute("select scenario, status || ': ' || status_reason "
                                  "from simulation.scenario_results").fetchall())
        assert status.pop("retention_campaign_top_risk_decile").startswith(
            "skipped: retention_campaign_top_risk_decile.yaml: no randomized campaign 'retention_q' in the data")
        assert status.pop("retention_campaign_budget_targeting").startswith(
            "skipped: retention_campaign_budget_targeting.yaml: no per-user effects of campaign 'retention_q'")
        assert status and all(v.startswith("simulated") for v in status.values())
    finally:
        con.close()
    failed = [c.check_name for c in result.get_asset_check_evaluations()
              if not c.passed and c.asset_key.path[0] == "simulation"]
    assert failed == ["simulated", "simulated"]  # warnings (40 users are too few for the churn backtest's own checks)
