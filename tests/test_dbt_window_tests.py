"""The key tests of the incremental marts read the rows a run wrote (dbt/macros/window.sql's `where` placeholders):
a duplicate outside the run's window is not theirs to see, one inside fails them, and a run without a window (the
full check) sees every row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import duckdb

from dagster_twins.settings import DBT_PROJECT_DIR, OFFLINE_ENV

KEY_TESTS = ["fct_events,test_name:unique", "fct_user_daily_dimension_counts,test_name:unique_combination_of_columns"]


def _key_tests(settings, window: dict[str, str], target: Path) -> dict[str, str]:
    """Run the two key tests with this window; each test's status by its model."""
    dbt = Path(sys.executable).parent / "dbt"
    command = [str(dbt), "test", "--select", *KEY_TESTS, "--vars", json.dumps(window), "--profiles-dir", ".",
               "--target-path", str(target), "--log-path", str(target)]
    done = subprocess.run(command, cwd=DBT_PROJECT_DIR, capture_output=True, text=True,
                          env={**os.environ, **OFFLINE_ENV, **settings.dbt_environ()})
    results = [r for r in json.loads((target / "run_results.json").read_text())["results"]
               if r["unique_id"].startswith("test.")]  # not the on-run-start hook
    assert len(results) == 2, done.stdout[-2000:]
    return {("fct_events" if "fct_events" in r["unique_id"] else "dimension_counts"): r["status"] for r in results}


def test_key_tests_read_the_rows_the_run_wrote(built_copy, tmp_path):
    settings, demo = built_copy
    last = demo.end_date
    day = {"min_date": last.isoformat(), "max_date": (last + timedelta(days=1)).isoformat()}
    con = duckdb.connect(str(settings.warehouse_path))
    # A duplicate of an early landing day's event and of an early day's dimension count: outside the last day's window.
    con.execute("insert into marts.fct_events select * from marts.fct_events where landing_date = ? limit 1",
                [demo.start_date])
    con.execute("insert into marts.fct_user_daily_dimension_counts select * from marts.fct_user_daily_dimension_counts "
                "where activity_date = ? limit 1", [demo.start_date])
    con.close()
    assert _key_tests(settings, day, tmp_path / "day") == {"fct_events": "pass", "dimension_counts": "pass"}
    assert _key_tests(settings, {}, tmp_path / "all") == {"fct_events": "fail", "dimension_counts": "fail"}

    # The same duplicates within the window: the day's tests see them.
    con = duckdb.connect(str(settings.warehouse_path))
    con.execute("insert into marts.fct_events select * from marts.fct_events where landing_date = ? limit 1", [last])
    con.execute("insert into marts.fct_user_daily_dimension_counts select * from marts.fct_user_daily_dimension_counts "
                "where activity_date = ? limit 1", [last])
    con.close()
    assert _key_tests(settings, day, tmp_path / "day_again") == {"fct_events": "fail", "dimension_counts": "fail"}
