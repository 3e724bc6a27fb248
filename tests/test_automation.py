"""The daily schedule and the new-files sensor, evaluated as Dagster evaluates them."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from dagster_twins.automation import daily_schedule, new_landing_files
from dagster_twins.ingestion.resources import LandingResource
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
