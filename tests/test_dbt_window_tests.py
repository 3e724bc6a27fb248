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


def _key_tests(settings, window: dict[str, str], target: Path, via: str = "vars") -> dict[str, str]:
    """Run the two key tests with this window, given as dbt vars (by hand) or as Dagster passes it (``via``
    "environment": TWINS_DBT_MIN_DATE / _MAX_DATE); each test's status by its model."""
    dbt = Path(sys.executable).parent / "dbt"
    given = {f"TWINS_DBT_{k.upper()}": v for k, v in window.items()} if via == "environment" else {}
    command = [str(dbt), "test", "--select", *KEY_TESTS, "--vars", json.dumps({} if given else window),
               "--profiles-dir", ".", "--target-path", str(target), "--log-path", str(target)]
    done = subprocess.run(command, cwd=DBT_PROJECT_DIR, capture_output=True, text=True,
                          env={**{k: v for k, v in os.environ.items() if not k.startswith("TWINS_DBT_")},
                               **OFFLINE_ENV, **settings.dbt_environ(), **given})
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
    assert _key_tests(settings, day, tmp_path / "day_env", via="environment") == {"fct_events": "pass",
                                                                                   "dimension_counts": "pass"}
    assert _key_tests(settings, {}, tmp_path / "all") == {"fct_events": "fail", "dimension_counts": "fail"}

    # The same duplicates within the window: the day's tests see them.
    con = duckdb.connect(str(settings.warehouse_path))
    con.execute("insert into marts.fct_events select * from marts.fct_events where landing_date = ? limit 1", [last])
    con.execute("insert into marts.fct_user_daily_dimension_counts select * from marts.fct_user_daily_dimension_counts "
                "where activity_date = ? limit 1", [last])
    con.close()
    assert _key_tests(settings, day, tmp_path / "day_again") == {"fct_events": "fail", "dimension_counts": "fail"}
    assert _key_tests(settings, day, tmp_path / "day_env_again", via="environment") == {"fct_events": "fail",
                                                                                         "dimension_counts": "fail"}


def test_a_build_leaves_its_parse_state_to_the_next_and_the_window_outside_dbt_vars(tmp_path):
    # The next build parses only what changed when it starts from this build's state (same vars and profile);
    # the window goes through the environment, so the vars stay the same from day to day.
    from types import SimpleNamespace

    from dagster_twins.transform.assets import dbt_window_env, keep_partial_parse

    build, project = tmp_path / "build", tmp_path / "project"
    build.mkdir()
    project.mkdir()
    keep_partial_parse(SimpleNamespace(target_path=build), project)  # a failed parse leaves nothing: no-op
    assert not (project / "partial_parse.msgpack").exists()
    (build / "partial_parse.msgpack").write_bytes(b"state")
    keep_partial_parse(SimpleNamespace(target_path=build), project)
    assert (project / "partial_parse.msgpack").read_bytes() == b"state" and list(project.iterdir()) == [
        project / "partial_parse.msgpack"]  # no temporary file left
    tags = {"dagster/asset_partition_range_start": "2026-03-01", "dagster/asset_partition_range_end": "2026-03-02"}
    assert dbt_window_env(tags) == {"TWINS_DBT_MIN_DATE": "2026-03-01", "TWINS_DBT_MAX_DATE": "2026-03-03"}
    assert dbt_window_env({}) == {}


def test_a_build_removes_earlier_builds_folders_beyond_the_newest_few(tmp_path):
    # dagster-dbt leaves a target folder per build (about 9 MB each); the newest are kept, and none from the last day
    # (an overlapping run's build may still be writing it), nor anything that is not this asset's build folder.
    import os
    import time
    from types import SimpleNamespace

    from dagster_twins.transform.assets import prune_invocations

    now = time.time()
    current = tmp_path / "dbt_models-aaaaaaa-0000000"
    current.mkdir()
    ages = {f"dbt_models-{i:07d}-old": 2 * 86400 + i * 60 for i in range(22)}
    ages |= {f"dbt_models-{i:07d}-new": 3600 + i for i in range(3)}
    for name, age in ages.items():
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (now - age, now - age))
    (tmp_path / "other_op-1234567-old").mkdir()
    os.utime(tmp_path / "other_op-1234567-old", (now - 9 * 86400, now - 9 * 86400))
    (tmp_path / "partial_parse.msgpack").write_bytes(b"state")

    assert prune_invocations(SimpleNamespace(target_path=current), keep=20) == 6
    left = {p.name for p in tmp_path.iterdir()}
    assert current.name in left and "other_op-1234567-old" in left and "partial_parse.msgpack" in left
    assert {n for n in ages if n.endswith("-new")} <= left  # recent: kept whatever their rank
    # The 16 newest of the old ones are kept (20 with the current build and the three recent ones).
    assert sorted(n for n in left if n.endswith("-old") and n.startswith("dbt_models")) == sorted(
        f"dbt_models-{i:07d}-old" for i in range(16))
