"""The daily-run benchmark's bookkeeping (a run's steps summed by stage, medians, the table) and the by-hand DuckDB
floor it is set beside (dagster_twins/tools/floor.py), on the small demo's landing files. No timing is asserted."""

from __future__ import annotations

import json
from datetime import date

import dagster as dg
import duckdb
import numpy as np
import pytest
from dagster._core.instance.ref import InstanceRef

from dagster_twins.tools import floor
from dagster_twins.tools.bench_daily import (
    GX,
    STARTUP,
    markdown_table,
    split_run,
    step_seconds_by_layer,
    summarize_daily,
)


def test_a_runs_steps_are_summed_by_the_layer_of_what_they_materialize(tmp_path):
    @dg.asset(key=["raw", "events"])
    def raw_events() -> int:
        return 1

    @dg.asset(key=["twins", "user_beliefs"], deps=[raw_events])
    def user_beliefs() -> int:
        return 2

    @dg.asset(key=["serving", "published_warehouse"], deps=[user_beliefs])
    def published() -> int:
        return 3

    # A Great Expectations suite's step is named <asset>_gx_<table>; it is counted apart from its layer.
    @dg.asset(key=["raw", "events_gx_raw_events"], deps=[raw_events])
    def suite() -> int:
        return 4

    home = tmp_path / "home"
    home.mkdir()
    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    try:
        first = dg.materialize([raw_events, user_beliefs], instance=instance)
        second = dg.materialize([raw_events, user_beliefs, published, suite], instance=instance)
        assert first.success and second.success
        record = instance.get_run_record_by_id(second.run_id)
        run_seconds = record.end_time - record.start_time
    finally:
        instance.dispose()

    latest = step_seconds_by_layer(home)  # the latest run by default
    assert set(latest) == {"ingestion", "twins", "serving", GX}
    assert all(s >= 0 for s in latest.values()) and sum(latest.values()) <= run_seconds
    assert set(step_seconds_by_layer(home, first.run_id)) == {"ingestion", "twins"}

    split = split_run(sum(latest.values()) + 5.0, latest)
    assert list(split) == ["ingestion", "twins", "serving", GX, STARTUP]  # pipeline order, start-up last
    assert split[STARTUP] == pytest.approx(5.0, abs=0.02)


def test_daily_medians_and_the_table_name_every_stage_any_run_had():
    runs = [{"day": f"2026-06-{d}", "seconds": s, "peak_rss_mb": m, "stages": st} for d, s, m, st in (
        (28, 30.0, 900, {"ingestion": 2.0, "transform": 10.0, STARTUP: 18.0}),
        (29, 40.0, 1100, {"ingestion": 4.0, "transform": 12.0, GX: 6.0, STARTUP: 18.0}),
        (30, 35.0, 1000, {"ingestion": 3.0, "transform": 14.0, STARTUP: 18.0}),
    )]
    daily = summarize_daily(runs)
    assert daily["median_seconds"] == 35.0 and daily["median_peak_rss_mb"] == 1000
    # A stage a run did not have counts as 0 s in that run.
    assert daily["stages"] == {"ingestion": 3.0, "transform": 12.0, GX: 0.0, STARTUP: 18.0}
    result = {"users": 1000, "days": 90, "daily_runs": runs, "daily": daily,
              "full_build": {"seconds": 200.0, "peak_rss_mb": 2000}, "floor": {"seconds": 50.0}}
    table = markdown_table([result, {**result, "days": 180, "floor": None}])
    assert "| 1,000 | 90 | 3 | 35.0 | 1,000 | 3.0 | 12.0 | 0.0 | 18.0 |" in table
    assert "| 1,000 | 87 | 200.0 | 2,000 | 50.0 | 4.00 |" in table
    assert "| 1,000 | 177 | 200.0 | 2,000 | not run |  |" in table


def test_the_floor_loads_every_source_once_and_models_every_user(small_demo, tmp_path):
    end = small_demo.end_date
    report = floor.run(small_demo.landing_dir, end, tmp_path)
    assert set(report["seconds"]) == {"load", "transform", "posteriors", "churn"}
    rows = report["rows"]
    # Duplicates and malformed rows are dropped, nothing else: within 5% of what the generator wrote, never above.
    for source, written in small_demo.rows_written.items():
        assert 0.95 * written <= rows[source] <= written, source
    con = duckdb.connect(str(tmp_path / "floor.duckdb"), read_only=True)
    try:
        assert con.sql("select count(*) - count(distinct event_id) from events").fetchone()[0] == 0
        users = con.sql("select count(distinct user_id) from users").fetchone()[0]
        assert rows["survival"] == users
        # Every user has an activity rate and a click-through belief, each with a 90% interval around its mean.
        per_user = con.sql("select belief, count(distinct user_id) from beliefs where belief not like 'topic:%' "
                           "group by 1").fetchall()
        assert dict(per_user) == {"activity_rate": users, "rec_click_rate": users}
        lo, mean, hi = (np.array(c) for c in zip(*con.sql("select lo, mean, hi from beliefs").fetchall(),
                                                  strict=True))
        assert np.all((lo < mean) & (mean < hi))
        # Topic shares are Dirichlet marginals: per user their means sum to at most 1 (unseen topics hold the rest).
        assert con.sql("select max(s) from (select sum(mean) s from beliefs where belief like 'topic:%' "
                       "group by user_id)").fetchone()[0] <= 1 + 1e-9
        p = np.array([r[0] for r in con.sql("select p_churn_30d from churn_30d").fetchall()])
        active = con.sql("select count(*) from survival where not churned").fetchone()[0]
        assert len(p) == rows["scored_users"] == active and np.all((p >= 0) & (p <= 1))
    finally:
        con.close()


def test_the_floor_command_writes_its_report(small_demo, tmp_path):
    out = tmp_path / "floor.json"
    assert floor.main([str(small_demo.landing_dir), "--end", small_demo.start_date.isoformat(),
                       "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["end"] == small_demo.start_date.isoformat() and report["rows"]["users"] > 0


def test_the_floor_reads_the_parts_of_a_chunked_demo(tmp_path):
    """A chunked demo writes a day as a file (chunk 0) and a folder of parts (the other chunks): the floor reads
    both, so it loads what the pipeline loads (it once read the day files only: a quarter of a 100,000-user demo)."""
    from dagster_twins.demo import generate_demo

    demo = generate_demo(tmp_path / "demo", n_users=90, n_days=8, end_date=date(2026, 3, 31), seed=3,
                         chunk_users=30)
    assert any(p.is_dir() for p in (demo.landing_dir / "events").iterdir())  # the parts are there to read
    report = floor.run(demo.landing_dir, demo.end_date, tmp_path)
    for source, written in demo.rows_written.items():
        assert 0.95 * written <= report["rows"][source] <= written, source
