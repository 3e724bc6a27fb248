"""Data quality: the GX suites as asset checks (blocking where they say), the dq_results table, and the HTML
report rendered by a real headless browser."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from dagster_twins.pipeline import run_pipeline
from dagster_twins.quality.gx import load_suite_file, load_suite_files, row_count_verdict, validate
from dagster_twins.settings import PROJECT_ROOT
from dagster_twins.warehouse.tables import connect

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_every_suite_file_loads_and_targets_a_known_asset():
    from dagster_twins.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    suites = load_suite_files(PROJECT_ROOT / "expectations")
    assert {s.table for s in suites} >= {"raw.events", "twins.user_twins", "churn.churn_predictions",
                                         "simulation.scenario_results"}
    assert all("/".join(s.asset) in keys for s in suites)
    assert any(s.blocking for s in suites) and any(not s.blocking for s in suites)


def test_a_suite_finds_bad_rows(tmp_path):
    suite = load_suite_file(PROJECT_ROOT / "expectations" / "twins_user_twins.json")
    good = {"user_id": "u1", "last_updated": pd.Timestamp("2026-01-01"), "rec_click_propensity": 0.2,
            "campaign_response_propensity": 0.3, "interactions_per_week": 4.0, "purchases_per_week": 0.1,
            "tickets_per_30_days": 0.0, "overall_confidence": 0.5}
    frame = pd.DataFrame([good, {**good, "user_id": "u2"}])
    assert validate(suite, frame, tmp_path).success
    bad = pd.DataFrame([good, {**good, "overall_confidence": 1.5}])  # a duplicate user, a confidence above 1
    result = validate(suite, bad, tmp_path)
    assert not result.success
    failed = set(result.results.loc[~result.results["success"], "expectation"])
    assert failed == {"expect_column_values_to_be_unique", "expect_column_values_to_be_between"}
    assert (tmp_path / "data_docs" / "index.html").exists()


def test_row_counts_are_held_against_the_previous_run():
    twins = load_suite_file(PROJECT_ROOT / "expectations" / "twins_user_twins.json")  # min ratio 1: never shrink
    assert row_count_verdict(twins, 100, 1, None) is None  # first run
    assert row_count_verdict(twins, 100, 1, (100, 1))["success"]
    assert not row_count_verdict(twins, 90, 1, (100, 1))["success"]
    events = load_suite_file(PROJECT_ROOT / "expectations" / "raw_events.json")  # per landing day, 0.2x .. 5x
    assert row_count_verdict(events, 1_800, 180, (12, 1))["success"]  # a backfill of 10 a day after a day of 12
    assert not row_count_verdict(events, 1, 1, (1_000, 1))["success"]


def test_an_updated_suite_validates_the_rows_the_run_wrote_and_counts_the_table(tmp_path):
    # The twins' suites validate the users a run summarized (a day's run: those with new evidence); the row count
    # held against the previous run stays the whole table's.
    from datetime import date

    from dagster_twins.quality.checks import _rows_to_validate

    suite = load_suite_file(PROJECT_ROOT / "expectations" / "twins_user_twins.json")
    assert (suite.rows, suite.updated_column) == ("updated", "last_updated")
    con = connect(tmp_path / "w.duckdb")
    try:
        con.execute("create schema twins")
        con.execute("create table twins.user_twins as select 'u' || i as user_id, "
                    "timestamp '2026-03-01' + to_days(i % 3) as last_updated from range(9) t(i)")
        frame, rows, _ = _rows_to_validate(con, suite, (date(2026, 3, 3), date(2026, 3, 4)))
        assert rows == 9 and sorted(frame["user_id"]) == ["u2", "u5", "u8"]
        frame, rows, _ = _rows_to_validate(con, suite, None)  # a run without days: every row
        assert rows == len(frame) == 9
    finally:
        con.close()
    raw = json.loads((PROJECT_ROOT / "expectations" / "twins_user_twins.json").read_text())
    del raw["meta"]["dagster_twins"]["updated_column"]
    (tmp_path / "bad.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="updated_column"):
        load_suite_file(tmp_path / "bad.json")


def test_the_run_reports_every_check_and_the_browser_renders_it(built):
    settings, result, _ = built
    evaluations = result.get_asset_check_evaluations()
    gx = [c for c in evaluations if c.check_name.startswith("gx_")]
    assert len(gx) == len(load_suite_files(PROJECT_ROOT / "expectations")) and all(c.passed for c in gx)
    con = connect(settings.warehouse_path, read_only=True)
    try:
        dq = con.execute("select * from quality.dq_results where run_id = ?", [result.run_id]).df()
    finally:
        con.close()
    assert set(dq["source"]) == {"dbt", "great_expectations", "dagster"}
    # Every check of the run but the serving copy's, which is published after the report.
    reported = {(r.asset, r.check_name) for r in dq.itertuples()}
    expected = {(c.asset_key.to_user_string(), c.check_name) for c in evaluations if c.asset_key.path[0] != "serving"}
    assert reported == expected
    report = settings.warehouse_path.parent / "reports" / "dq_report.html"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is needed for this test: `make test` installs it (apt-get install chromium)"
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={report.parent / 'chromium'}",
                          "--dump-dom", report.as_uri()], capture_output=True, text=True, check=True).stdout
    passed = int(dq["passed"].sum())
    assert 'id="summary"' in dom and f"<strong>{passed}</strong> passed" in dom
    assert "great_expectations" in dom and "Trend over runs" in dom


def test_a_failing_blocking_suite_stops_what_depends_on_it(built_copy, tmp_path):
    settings, demo = built_copy
    folder = tmp_path / "expectations"
    folder.mkdir()
    suite = json.loads((PROJECT_ROOT / "expectations" / "raw_users.json").read_text())
    suite["expectations"].append({"type": "expect_table_row_count_to_be_between", "kwargs": {"max_value": 0}})
    (folder / "raw_users.json").write_text(json.dumps(suite))
    run = run_pipeline(replace(settings, expectations_dir=folder), demo.start_date, demo.end_date,
                       instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    failed = [c for c in run.get_asset_check_evaluations() if not c.passed]
    assert [c.check_name for c in failed] == ["gx_raw_users"]
    materialized = {e.asset_key.path[0] for e in run.get_asset_materialization_events()}
    assert "raw" in materialized and "marts" not in materialized and "twins" not in materialized


@pytest.mark.parametrize("field", ["table", "asset"])
def test_a_suite_without_its_settings_is_a_clear_error(tmp_path, field):
    suite = json.loads((PROJECT_ROOT / "expectations" / "raw_users.json").read_text())
    del suite["meta"]["dagster_twins"][field]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(suite))
    with pytest.raises(ValueError, match=r"broken.json: meta.dagster_twins.table and .asset are required"):
        load_suite_file(path)


def test_report_renders_without_history(tmp_path: Path):
    from dagster_twins.quality.report import render_html

    current = pd.DataFrame([{"run_id": "r", "checked_at": pd.Timestamp("2026-01-01"), "source": "dbt",
                             "layer": "dbt", "asset": "marts/x", "check_name": "unique_x", "passed": False,
                             "severity": "error", "observed": "failures=3"}])
    page = render_html(current, current, "r", pd.Timestamp("2026-01-01"), None, tmp_path / "r.html")
    assert "1 failed" in page and "unique_x" in page


def test_a_suite_on_an_unknown_asset_fails_loading_unless_optional(tmp_path):
    from dagster_twins.quality.checks import gx_checks

    suite = json.loads((PROJECT_ROOT / "expectations" / "raw_users.json").read_text())
    suite["meta"]["dagster_twins"]["asset"] = ["raw", "nope"]
    (tmp_path / "typo.json").write_text(json.dumps(suite))
    with pytest.raises(ValueError, match=r"typo.json: meta.dagster_twins.asset: no asset raw/nope"):
        gx_checks(tmp_path, {dg.AssetKey(["raw", "users"])})
    suite["meta"]["dagster_twins"]["optional"] = True
    (tmp_path / "typo.json").write_text(json.dumps(suite))
    assert gx_checks(tmp_path, {dg.AssetKey(["raw", "users"])}) == []


def test_report_of_a_run_without_checks_renders(tmp_path):
    """The report materialized alone sees no checks of its own run: it says so instead of failing (found by the
    benchmark's quality stage)."""
    from dagster_twins.quality.report import render_html, results_frame

    current = results_frame([], "run-1", pd.Timestamp("2026-06-30"))
    assert current.empty and current["passed"].dtype == bool
    html = render_html(current, current, "run-1", pd.Timestamp("2026-06-30"), tmp_path / "docs.html",
                       tmp_path / "dq_report.html")
    assert "<html" in html.lower()
    assert "no checks in this run" in html and "all checks passed" not in html


SPAWN_AFTER_GX = """
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from dagster_twins.quality.gx import _import_gx
_import_gx()
assert not hasattr(sys.modules["__main__"], "__file__")
with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
    print("child says", pool.submit(abs, -7).result())
"""


def test_a_process_without_a_main_file_imports_gx_and_still_spawns_children():
    """A ``python -c`` process (a Dagster run worker, a pytest-xdist worker): GX imports (pyspark's import-time
    doctest exit avoided) and a spawned child still starts afterwards (it once tried to run a fake main file)."""
    import sys

    done = subprocess.run([sys.executable, "-c", SPAWN_AFTER_GX], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "child says 7" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
