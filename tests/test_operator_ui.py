"""At home in the Dagster UI: a run launched by the command line is a run of the code location (on the timeline),
a plot renders as an image, raw partitions start with the data, each partition's metadata is its own, the lineage
stays lean; and a held warehouse gives a one-line message and a non-zero exit.

The browser part drives the system Chromium through Playwright (``executable_path``; no browser is downloaded)
against a ``dagster-webserver`` this module starts on a free port over a private instance. Screenshots go to
``$TWINS_SCREENSHOTS`` when set (``make ui-screenshots`` sets it to docs/img), else to the test's folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from dagster_twins.settings import OFFLINE_ENV, PROJECT_ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environment(settings, home: Path) -> dict[str, str]:
    return {**os.environ, **OFFLINE_ENV, "DAGSTER_HOME": str(home), "TWINS_WAREHOUSE": str(settings.warehouse_path),
            "TWINS_LANDING_DIR": str(settings.landing_dir), "TWINS_SOURCES_CONFIG": str(settings.sources_config),
            "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def launched(built, tmp_path_factory):
    """A copy of the built warehouse, and the command line's run of its ingestion and churn layers launched into a
    private instance (the partition start left to the data, as `make demo` does): (env, settings, stdout)."""
    from dataclasses import replace

    settings, _, demo = built
    root = tmp_path_factory.mktemp("operator_ui")
    shutil.copy(settings.warehouse_path, root / "warehouse.duckdb")
    copy = replace(settings, warehouse_path=root / "warehouse.duckdb", partition_start=None)
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = _environment(copy, home)
    done = subprocess.run([sys.executable, "-m", "dagster_twins.cli", "run", "--only", "ingestion", "churn"],
                          env=env, cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return env, copy, demo, done.stdout


def test_the_command_line_run_belongs_to_the_code_location(launched):
    env, _, _, stdout = launched
    assert "Asset checks:" in stdout and "Run " in stdout  # the summary is still printed
    with _instance(env) as instance:
        (run,) = instance.get_runs()
        assert run.remote_job_origin is not None
        assert run.remote_job_origin.location_name == "dagster_twins" and run.job_name == "twins_pipeline"
        assert run.status == dg.DagsterRunStatus.SUCCESS


def test_each_partition_carries_its_own_counts(launched):
    env, settings, demo, _ = launched
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    loaded = dict(con.execute("select _landing_date, count(*) from raw.events group by 1").fetchall())
    con.close()
    with _instance(env) as instance:
        events = instance.fetch_materializations(dg.AssetKey(["raw", "events"]), limit=1000).records
        by_day = {date.fromisoformat(r.partition_key): r.asset_materialization.metadata for r in events}
    assert min(by_day) == demo.start_date  # partitions start with the data, not at a fixed early date
    days_with_rows = [d for d in by_day if loaded.get(d)]
    assert len(days_with_rows) > 30
    for day in days_with_rows:
        assert by_day[day]["rows_loaded"].value == loaded[day]
    assert by_day[days_with_rows[0]]["run_rows_loaded"].value == sum(loaded.values())  # the run's totals beside


class _instance:
    """The private instance of the launched run, opened for a test."""

    def __init__(self, env: dict[str, str]):
        self.home = env["DAGSTER_HOME"]

    def __enter__(self) -> dg.DagsterInstance:
        from dagster._core.instance.ref import InstanceRef

        self.instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(self.home))
        return self.instance

    def __exit__(self, *exc) -> None:
        self.instance.dispose()


@pytest.fixture(scope="module")
def webserver(launched):
    """`dagster-webserver` over the launched run's instance and the project's workspace, on a free port."""
    env, *_ = launched
    port = _free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml",
                               "-h", "127.0.0.1", "-p", str(port)], env=env, cwd=PROJECT_ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:  # until it answers, or it has died
            assert server.poll() is None, "dagster-webserver exited while starting"
            try:
                urllib.request.urlopen(f"{url}/server_info").read()
                break
            except OSError:
                time.sleep(1)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def browser():
    """The system Chromium through Playwright (one Playwright per thread: every test here shares it)."""
    assert CHROMIUM, "Chromium is needed for this test: `make browser` installs it (apt-get install chromium)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(browser, webserver):
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(120_000)  # a busy machine loads the definitions slowly; nothing is timed
    page.goto(webserver)
    page.wait_for_load_state("networkidle")
    page.get_by_role("button", name="Skip").click()  # the newsletter dialog of a fresh instance
    yield page
    page.close()


def _shot(page, name: str, tmp_path_factory) -> None:
    """A screenshot into $TWINS_SCREENSHOTS (docs/img with `make ui-screenshots`), else the test's own folder."""
    if not (os.environ.get("TWINS_SCREENSHOTS") or tmp_path_factory):
        return
    folder = Path(os.environ.get("TWINS_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"))


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle")


def test_the_run_is_on_the_timeline(page, webserver, tmp_path_factory):
    _open(page, f"{webserver}/overview/activity/timeline")
    page.get_by_role("button", name="1hr").click()
    row = page.locator("a", has_text="twins_pipeline").first
    row.wait_for()
    assert page.locator("text=dagster_twins").count()  # the code location's row, with the job under it
    _shot(page, "ui_timeline", tmp_path_factory)


def test_the_calibration_plot_renders_as_an_image(page, webserver, tmp_path_factory):
    _open(page, f"{webserver}/assets/churn/churn_model_metrics")
    page.locator("tr", has_text="calibration_plot").get_by_text("Show Markdown").click()
    image = page.locator("img[src^='data:image/png']").first
    image.wait_for()
    width, height = image.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert width > 100 and height > 100  # decoded: a picture, not a broken link or a path
    _shot(page, "ui_calibration_plot", tmp_path_factory)
    page.get_by_role("button", name="Close").click()


def test_raw_partitions_start_with_the_data(page, webserver, launched, tmp_path_factory):
    *_, demo, _ = launched
    _open(page, f"{webserver}/assets/raw/events?view=partitions")
    page.get_by_text("Materialized (").first.wait_for()
    text = page.inner_text("body")
    missing = int(text.split("Missing (", 1)[1].split(")", 1)[0])
    materialized = int(text.split("Materialized (", 1)[1].split(")", 1)[0])
    assert materialized == (demo.end_date - demo.start_date).days + 1
    assert missing <= (date.today() - demo.end_date).days + 1  # only days after the data (today's, early files)
    _shot(page, "ui_raw_partitions", tmp_path_factory)


def test_the_expanded_lineage_reads_left_to_right(page, webserver, tmp_path_factory):
    _open(page, f"{webserver}/asset-groups")
    page.get_by_text("ingestion").first.wait_for()
    page.mouse.click(1000, 250)
    page.keyboard.press("Alt+e")  # the graph's shortcut: expand all groups
    page.wait_for_url("**expanded=**")
    page.wait_for_load_state("networkidle")
    groups = ("ingestion", "staging", "intermediate", "marts", "reference", "twins", "churn", "simulation", "quality",
              "serving")
    assert all(f"global%3A{group}" in page.url for group in groups)  # every group open at once
    _shot(page, "ui_lineage_expanded", tmp_path_factory)


def test_the_report_and_serving_copy_take_few_edges():
    from dagster_twins.location import build_definitions
    from dagster_twins.settings import Settings

    graph = build_definitions(Settings.from_env()).resolve_asset_graph()
    report, serving = dg.AssetKey(["quality", "dq_report"]), dg.AssetKey(["serving", "published_warehouse"])
    assert graph.get(serving).parent_keys == {report}
    ends = graph.get(report).parent_keys
    assert 0 < len(ends) <= 10 and len(graph.get_all_asset_keys()) > 40
    # every other asset is still upstream of the report: it runs after all of them, and is skipped with any
    upstream, todo = set(), list(ends)
    while todo:
        key = todo.pop()
        if key not in upstream:
            upstream.add(key)
            todo.extend(graph.get(key).parent_keys)
    materializable = {k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable}
    assert materializable - upstream == {report, serving}


def test_a_held_warehouse_stops_the_run_in_one_line(built_copy, tmp_path, monkeypatch, capsys):
    from dagster_twins.cli import main as cli

    settings, _ = built_copy
    reader = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; "
                               f"con = duckdb.connect({str(settings.warehouse_path)!r}, read_only=True); "
                               "print('open', flush=True); time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "open"
        monkeypatch.setenv("TWINS_WAREHOUSE", str(settings.warehouse_path))
        monkeypatch.setenv("TWINS_LANDING_DIR", str(settings.landing_dir))
        monkeypatch.setenv("TWINS_SOURCES_CONFIG", str(settings.sources_config))
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
        code = cli(["run"])
    finally:
        reader.kill()
        reader.wait()
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1
    assert f"process {reader.pid}" in err[0] and str(settings.warehouse_path) in err[0]
    assert str(settings.serving_file) in err[0]  # readers are pointed to the serving copy


def test_the_lock_holder_is_read_from_duckdbs_message():
    from dagster_twins.warehouse.tables import lock_holder

    error = duckdb.IOException('IO Error: Could not set lock on file "/w.duckdb": Conflicting lock is held in '
                               "/usr/bin/python3.11 (PID 4242). However, you would be able to open ...")
    assert lock_holder(error) == "process 4242 (/usr/bin/python3.11)"
    assert lock_holder(duckdb.IOException("IO Error: Cannot open file")) is None


def test_a_day_is_held_against_a_typical_day_not_the_backfill():
    from dagster_twins.quality.checks import typical_day
    from dagster_twins.quality.gx import load_suite_file, row_count_verdict

    suite = load_suite_file(PROJECT_ROOT / "expectations" / "raw_users.json")  # per landing day, 0.2x .. 5x
    con = duckdb.connect()
    con.execute("create schema raw")
    # a backfill: 2,000 users on the first day, then about 10 a day (9 on some)
    con.execute("create table raw.users as select date '2026-01-01' as _landing_date from range(2000) union all "
                "select date '2026-01-01' + cast(1 + i // 10 as integer) from range(590) t(i) where i % 70 <> 0")
    window = (date(2026, 3, 1), date(2026, 3, 2))
    baseline = typical_day(con, suite, window)
    assert baseline == (10.0, 1)  # the median day of the 28 before, not the backfill's 2,600 / 60
    assert row_count_verdict(suite, 8, 1, baseline)["success"]  # a day of 8 after days of 10
    assert not row_count_verdict(suite, 1, 1, baseline)["success"]
    assert typical_day(con, suite, (date(2026, 1, 1), date(2026, 3, 1))) is None  # the backfill itself: nothing before


def test_data_docs_render_offline(browser, tmp_path):
    """GX Data Docs with the network cut: every file they load is local, the styles apply, the tables fill."""
    import pandas as pd

    from dagster_twins.quality.data_docs import remote_resources
    from dagster_twins.quality.gx import load_suite_file, validate

    suite = load_suite_file(PROJECT_ROOT / "expectations" / "twins_user_twins.json")
    row = {"user_id": "u1", "last_updated": pd.Timestamp("2026-01-01"), "rec_click_propensity": 0.2,
           "campaign_response_propensity": 0.3, "interactions_per_week": 4.0, "purchases_per_week": 0.1,
           "tickets_per_30_days": 0.0, "overall_confidence": 0.5}
    validate(suite, pd.DataFrame([row, {**row, "user_id": "u2"}]), tmp_path)
    site = tmp_path / "data_docs"
    pages = [site / "index.html", next(site.glob("validations/**/*.html")), next(site.glob("expectations/*.html"))]
    assert all(remote_resources(p.read_text()) == [] for p in site.rglob("*.html"))
    context = browser.new_context(offline=True)
    asked, failed = [], []
    context.route("**/*", lambda route: (asked.append(route.request.url), route.continue_()))
    page = context.new_page()
    page.on("requestfailed", lambda request: failed.append(request.url))
    for number, path in enumerate(pages):
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        assert page.evaluate("typeof window.jQuery") == "function"  # the scripts ran
        assert "-apple-system" in page.evaluate("getComputedStyle(document.body).fontFamily")  # bootstrap's CSS
        page.locator("table tbody tr").first.wait_for()  # bootstrap-table filled the table
        if number == 0:
            _shot(page, "gx_data_docs_offline", None)
    context.close()
    assert failed == [] and all(url.startswith("file://") for url in asked)


def test_the_code_location_loads_the_command_lines_settings(tmp_path):
    """The settings written for the launched run's code server load back as the same settings."""
    from dagster_twins.launch import write_settings_file
    from dagster_twins.settings import Settings

    given = Settings.load(environ={}, overrides={"warehouse_path": str(tmp_path / "w.duckdb"),
                                                 "partition_start": "2026-02-03", "half_life_days": "45",
                                                 "horizons": ["30", "7"], "purchase_event_types": ["Order"],
                                                 "text_taxonomy": "false"})
    loaded = Settings.load(write_settings_file(given, tmp_path / "cli-settings"), environ={})
    fields = ("warehouse_path", "landing_dir", "sources_config", "partition_start", "dbt_target", "scenarios_dir",
              "expectations_dir", "serving_file", "user_buckets", "spark_dir", "duckdb_memory_limit", "spark_master",
              "inactivity_days", "purchase_event_types", "feature_window_days", "half_life_days", "horizons",
              "text_taxonomy")
    assert {f: getattr(loaded, f) for f in fields} == {f: getattr(given, f) for f in fields}
    assert loaded.half_life_days == 45 and loaded.horizons == (7, 30) and not loaded.text_taxonomy


def test_an_error_is_told_by_its_innermost_cause():
    from dagster._utils.error import SerializableErrorInfo

    from dagster_twins.launch import innermost_message

    cause = SerializableErrorInfo("ValueError: expectations/x.json: meta.dagster_twins.asset: no asset raw/nope\n",
                                  [], "ValueError")
    outer = SerializableErrorInfo("dagster._core.errors.DagsterUserCodeLoadError: Error occurred during the loading "
                                  "of Dagster definitions\n", [], "DagsterUserCodeLoadError", cause=cause)
    assert innermost_message(outer) == "ValueError: expectations/x.json: meta.dagster_twins.asset: no asset raw/nope"
    assert innermost_message(None) == ""
