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

from dagster_twins.pipeline import INSTANCE_YAML
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
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
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
        (run,) = instance.get_runs()
        planned = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
                                               limit=100_000).records
        planned_raw = [r for r in planned
                       if r.event_log_entry.dagster_event.asset_key == dg.AssetKey(["raw", "events"])]
    # The range run planned its days as one event (dagster_twins.launch.PLANNED_EVENTS_AS_RANGE), not one a day.
    assert len(planned_raw) == 1 and planned_raw[0].event_log_entry.dagster_event.partition is None
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


LAYER_ORDER = ("ingestion", "staging", "intermediate", "marts", "churn", "twins", "documents", "quality", "serving")


def test_the_lineage_opens_by_layer_on_one_screen_left_to_right(page, webserver, tmp_path_factory):
    """The global lineage opens with one collapsed group per layer: every group on screen, read left to right.
    Expanded (Alt+E), every group opens."""
    _open(page, f"{webserver}/asset-groups")
    groups = page.locator("[class*='CollapsedGroupNode_collapsedGroupNodeBox']")
    groups.first.wait_for()
    boxes = {groups.nth(i).inner_text().split("\n")[0].strip(): groups.nth(i).bounding_box()
             for i in range(groups.count())}
    assert "expanded=" not in page.url and len(boxes) == 11, boxes
    view = page.viewport_size
    assert all(0 <= b["x"] <= b["x"] + b["width"] <= view["width"]
               and 0 <= b["y"] <= b["y"] + b["height"] <= view["height"] for b in boxes.values())  # one screen
    xs = [boxes[g]["x"] for g in LAYER_ORDER]
    assert xs == sorted(xs) and boxes["simulation"]["x"] < boxes["documents"]["x"], boxes  # upstream to the left
    _shot(page, "ui_lineage_groups", tmp_path_factory)
    _expand_all(page)
    assert all(f"global%3A{group}" in page.url for group in boxes)  # every group open at once
    # Zoomed to the graph's width (Dagster's "zoom-to-fit-width"), so every column is on screen, upstream left.
    shown = _asset_boxes(page)
    view = page.viewport_size
    assert shown and all(b["x"] >= 0 and b["x"] + b["width"] <= view["width"] for b in shown), shown
    _shot(page, "ui_lineage_expanded", tmp_path_factory)


def _expand_all(page) -> None:
    page.mouse.click(1000, 250)
    page.keyboard.press("Alt+e")  # the graph's shortcut: expand all groups
    page.wait_for_url("**expanded=**")
    page.wait_for_load_state("networkidle")


def _asset_boxes(page) -> list[dict]:
    """The boxes of the asset nodes the graph draws (each a 320-unit-wide foreignObject; Dagster draws only the
    nodes in view, so a node off screen has no box)."""
    nodes = page.locator("svg[class*='svgContainer'] foreignObject[width='320']")
    return [box for i in range(nodes.count()) if (box := nodes.nth(i).bounding_box())]


@pytest.mark.xfail(strict=True, reason="Dagster 1.13 lays expanded groups out with dagre clusters; a cluster spans "
                   "its assets' ranks, clusters sharing a rank are stacked, and ours share ranks (stg_users and the "
                   "marts' views sit a rank or two right of their groups' other assets), so the expanded graph is "
                   "taller than wide (5,620 x 8,562 units) and the view zooms to its width: see docs/operator-ui.md")
def test_the_expanded_lineage_fits_one_screen(page, webserver, launched):
    """Every asset's box on one screen once every group is expanded (it does not yet: strict xfail, so the day it
    does this test says so)."""
    env, *_ = launched
    _open(page, f"{webserver}/asset-groups")
    page.locator("[class*='CollapsedGroupNode_collapsedGroupNodeBox']").first.wait_for()
    _expand_all(page)
    from dagster_twins.location import build_definitions
    from dagster_twins.settings import Settings

    assets = len(build_definitions(Settings.from_env()).resolve_asset_graph().get_all_asset_keys())
    view = page.viewport_size
    on_screen = [b for b in _asset_boxes(page) if b["y"] >= 0 and b["y"] + b["height"] <= view["height"]]
    assert len(on_screen) == assets, f"{len(on_screen)} of {assets} assets on screen"


def _columns_shown(table) -> list[tuple[str, str]]:
    """(name, type) of each row of the asset page's *Columns* table (a type cell may add "non-nullable")."""
    return [tuple(row) for row in table.evaluate(
        "t => [...t.querySelectorAll('tbody tr')].map(r => [...r.querySelectorAll('td')].slice(0, 2)"
        ".map(c => c.innerText.trim().split('\\n')[0]))")]


def test_a_python_table_shows_its_warehouse_columns(page, webserver, launched, tmp_path_factory):
    """A Python layer's table (the churn predictions) lists its columns with DuckDB's types in the UI."""
    _, settings, _, _ = launched
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    columns = con.execute("select column_name, data_type from duckdb_columns() where schema_name = 'churn' and "
                          "table_name = 'churn_predictions' order by column_index").fetchall()
    con.close()
    _open(page, f"{webserver}/assets/churn/churn_predictions")
    page.get_by_text("Column name").first.wait_for()
    section = page.locator("table", has_text="Column name").first
    assert [(n, t.upper()) for n, t in _columns_shown(section)] == columns and len(columns) > 5
    section.scroll_into_view_if_needed()
    _shot(page, "ui_columns_churn_predictions", tmp_path_factory)


def test_a_dbt_model_shows_its_types_and_row_count(page, webserver, launched, built, tmp_path_factory):
    """A dbt table's materialization, as the pipeline recorded it (the session's full run: the launched run leaves
    dbt out to stay short), shows the warehouse's column types beside the YAML's descriptions, and its rows."""
    env, *_ = launched
    settings, result, _ = built
    key = dg.AssetKey(["marts", "dim_users"])
    (recorded,) = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()
                   if e.event_specific_data.materialization.asset_key == key]
    with _instance(env) as instance:
        instance.report_runless_asset_event(recorded)
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    rows = con.execute("select count(*) from marts.dim_users").fetchone()[0]
    con.close()
    _open(page, f"{webserver}/assets/marts/dim_users")
    section = page.locator("table", has_text="Column name").first
    section.wait_for()
    shown = dict(_columns_shown(section))
    assert shown["user_id"] == "VARCHAR" and shown["lifetime_spend"] == "DECIMAL(38,2)"  # DuckDB's, not YAML's
    assert "The user." in section.inner_text()  # the YAML's description kept
    page.get_by_text("Row count", exact=True).wait_for()
    assert page.inner_text("body").split("Row count", 1)[1].split()[0] == f"{rows:,}" and rows > 100
    _shot(page, "ui_dbt_columns_and_rows", tmp_path_factory)


def test_the_report_and_serving_copy_take_few_edges():
    from dagster_twins.location import build_definitions
    from dagster_twins.settings import Settings

    defs = build_definitions(Settings.from_env())
    graph = defs.resolve_asset_graph()
    report, serving = dg.AssetKey(["quality", "dq_report"]), dg.AssetKey(["serving", "published_warehouse"])
    documents = dg.AssetKey(["twins", "user_documents"])
    assert graph.get(serving).parent_keys == {report}
    ends = graph.get(report).parent_keys
    assert 0 < len(ends) <= 3 and len(graph.get_all_asset_keys()) > 40
    assert len(graph.get(documents).parent_keys) <= 3  # the ends of twins, churn and simulation, not each asset
    # every other asset's step is still upstream of the report: it runs after all of them, and is skipped with any
    # (an asset no one reads, such as raw/quarantine, comes with its step: the raw sources' step writes both)
    upstream, todo = set(), list(ends)
    while todo:
        key = todo.pop()
        if key not in upstream:
            upstream.add(key)
            todo.extend(graph.get(key).parent_keys)
    by_step = {key: set(a.keys) for a in graph.assets_defs for key in a.keys}
    materializable = {k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable}
    assert {k for k in materializable if not by_step[k] & upstream} == {report, serving}
    assert dg.AssetKey(["raw", "quarantine"]) not in upstream  # no edge across the whole graph for it


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
