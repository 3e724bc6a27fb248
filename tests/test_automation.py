"""The daily schedule and the new-files sensor, evaluated as Dagster evaluates them."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from dagster_twins.automation import build_source_freshness, daily_schedule, freshness_status, new_landing_files
from dagster_twins.ingestion.resources import LandingResource
from dagster_twins.jobs import RAW_SOURCE_KEYS, SOURCE_FRESHNESS_CHECK
from dagster_twins.location import build_definitions
from dagster_twins.partitions import RANGE_END_TAG, RANGE_START_TAG
from tests.conftest import make_settings


def test_the_daily_schedule_runs_yesterdays_landing_day_through_the_whole_graph(tmp_path):
    defs = build_definitions(make_settings(tmp_path))  # partitions from 2025-01-01

    schedule = defs.resolve_schedule_def(daily_schedule.name)
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 5, 2, 2, 0, tzinfo=UTC),
                                        repository_def=defs.get_repository_def())
    request = next(iter(schedule.evaluate_tick(context).run_requests))
    assert request.partition_key == "2026-05-01"
    assert schedule.job_name == "twins_pipeline"
    job = defs.resolve_job_def("twins_pipeline")
    layers = {key.path[0] for key in job.asset_layer.executable_asset_keys}
    assert {"raw", "marts", "twins", "churn", "simulation", "quality", "serving"} <= layers


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_sensor_starts_a_run_for_new_or_changed_files_only(tmp_path: Path):
    landing = LandingResource(landing_dir=str(tmp_path), sources_config="")
    _write(tmp_path / "events" / "2026-05-01.csv", "user_id,occurred_at,event_type\nu1,2026-05-01T10:00:00Z,view\n")
    _write(tmp_path / "events" / "2026-05-03.csv", "user_id,occurred_at,event_type\nu1,2026-05-03T10:00:00Z,view\n")

    def tick(cursor: str | None):
        context = dg.build_sensor_context(cursor=cursor, resources={"landing": landing})
        result = new_landing_files(context)
        return result, context.cursor

    first, cursor = tick(None)
    assert isinstance(first, dg.RunRequest)
    assert (first.tags[RANGE_START_TAG], first.tags[RANGE_END_TAG]) == ("2026-05-01", "2026-05-03")
    again, cursor = tick(cursor)
    assert isinstance(again, dg.SkipReason)
    late = tmp_path / "events" / "2026-05-02.csv"
    _write(late, "user_id,occurred_at,event_type\nu2,2026-05-02T09:00:00Z,view\n")
    changed, cursor = tick(cursor)
    assert (changed.tags[RANGE_START_TAG], changed.tags[RANGE_END_TAG]) == ("2026-05-02", "2026-05-02")
    stat = late.stat()
    os.utime(late, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # rewritten in place
    rewritten, _ = tick(cursor)
    assert isinstance(rewritten, dg.RunRequest) and rewritten.run_key != changed.run_key


def test_freshness_status_follows_dbts_warn_and_error_rules():
    warn, error = timedelta(days=2), timedelta(days=7)
    assert [freshness_status(timedelta(days=d), warn, error) for d in (0, 2, 2.5, 7, 7.5)] == [
        "fresh", "fresh", "warn", "warn", "error"]
    assert freshness_status(None, warn, error) == "error"  # never loaded


def test_raw_source_freshness_checks_exist_and_evaluate_through_their_sensor(tmp_path):
    settings = replace(make_settings(tmp_path), source_freshness_warn_days=2, source_freshness_error_days=5)
    defs = build_definitions(settings)
    repo = defs.get_repository_def()
    expected = {dg.AssetCheckKey(key, SOURCE_FRESHNESS_CHECK) for key in RAW_SOURCE_KEYS}
    assert expected <= set(repo.asset_graph.asset_check_keys)
    assert "source_freshness" in {s.name for s in repo.sensor_defs}
    assert not expected & set(defs.resolve_job_def("twins_pipeline").asset_layer.asset_graph.asset_check_keys)

    now = [datetime.now(UTC)]
    check, sensor = build_source_freshness(settings, clock=lambda: now[0])
    instance = dg.DagsterInstance.ephemeral()
    loaded = RAW_SOURCE_KEYS[:-1]  # the last raw table is never loaded
    for key in loaded:
        instance.report_runless_asset_event(dg.AssetMaterialization(key))

    def evaluate() -> dict[str, tuple[bool, str, str]]:
        result = dg.materialize([*specs, check], instance=instance,
                                selection=dg.AssetSelection.checks(check))
        return {e.asset_key.path[-1]: (e.passed, e.severity.value, e.metadata["status"].value)
                for e in result.get_asset_check_evaluations()}

    specs = [dg.AssetSpec(key) for key in RAW_SOURCE_KEYS]
    repo_def = dg.Definitions(assets=specs, asset_checks=[check], sensors=[sensor]).get_repository_def()

    def tick(cursor: str | None):
        return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor,
                                                            repository_def=repo_def))

    first = tick(None)
    assert {k for r in first.run_requests for k in r.asset_check_keys} == expected
    never = RAW_SOURCE_KEYS[-1].path[-1]
    fresh = evaluate()
    assert {k for k, (passed, _, _) in fresh.items() if passed} == {k.path[-1] for k in loaded}
    assert fresh[never] == (False, "ERROR", "error")
    assert tick(first.cursor).skip_message.startswith("no raw table changed freshness")
    now[0] += timedelta(days=3)  # past warn_after: a warning, not an error; the sensor sees the change
    assert tick(first.cursor).run_requests
    assert {v for k, v in evaluate().items() if k != never} == {(False, "WARN", "warn")}
    now[0] += timedelta(days=3)  # past error_after
    assert {v for k, v in evaluate().items() if k != never} == {(False, "ERROR", "error")}
