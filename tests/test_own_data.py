"""Own data in one step, as a user runs it: a settings file beside the files, `dagster-twins run --settings`, no
code edits. Two data sets nobody here wrote the pipeline for: a purchases-only log from the 1990s with its own
column names, and a multi-source product log whose vocabulary is not the demo's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml

from dagster_twins.settings import PROJECT_ROOT, Settings, SettingsError

DEMO_TOPICS = set(pd.read_csv(PROJECT_ROOT / "dbt" / "seeds" / "topic_taxonomy.csv")["topic"])
DEMO_CHANNELS = {"web", "ios", "android", "email"}


def cli(*args: str, root: Path) -> subprocess.CompletedProcess:
    """The command line in a clean environment: no TWINS_* variable, a Dagster home of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWINS_")}
    env["DAGSTER_HOME"] = str(root / "dagster_home")
    (root / "dagster_home").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "dagster_twins.cli", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=3600)


def write_settings(root: Path, settings: dict) -> Path:
    path = root / "my-twins.yml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def purchases_log(root: Path) -> Path:
    """A retail export: one undated CSV, customers buying between 1997 and mid-1998, columns named their way."""
    rng = np.random.default_rng(3)
    rows = []
    for customer in range(80):
        day = date(1997, 1, 1) + timedelta(days=int(rng.integers(0, 200)))
        for _ in range(int(rng.integers(1, 8))):
            rows.append((f"C{customer:04d}", f"{day.isoformat()} 1{rng.integers(0, 9)}:00:00", "ORDER",
                         round(float(rng.lognormal(3, 0.5)), 2)))
            day += timedelta(days=int(rng.integers(5, 120)))
    frame = pd.DataFrame(rows, columns=["CustomerID", "OrderTime", "Kind", "Amount"])
    frame = frame[frame["OrderTime"] < "1998-07-01"]
    (root / "exports" / "orders").mkdir(parents=True)
    frame.to_csv(root / "exports" / "orders" / "orders_export.csv", index=False)
    return root / "exports"


@pytest.fixture(scope="module")
def purchases_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("retail")
    landing = purchases_log(root)
    settings = write_settings(root, {
        "warehouse": "out/warehouse.duckdb", "landing_dir": str(landing.relative_to(root)),
        "sources": {"events": {"folder": "orders", "columns": {
            "user_id": "CustomerID", "occurred_at": "OrderTime", "event_type": "Kind", "value": "Amount"}}},
        "purchase_event_types": ["ORDER"], "inactivity_days": 120, "half_life_days": 180, "horizons": [30, 90],
    })
    result = cli("run", "--settings", str(settings), root=root)
    return root, settings, result


def _con(root: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(root / "out" / "warehouse.duckdb"), read_only=True)


def test_a_purchases_only_log_from_the_nineties_runs_from_a_settings_file(purchases_run):
    root, _, result = purchases_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Partition key range" not in result.stdout + result.stderr
    con = _con(root)
    try:
        assert con.execute("select count(distinct user_id) from twins.user_twins").fetchone()[0] == 80
        # purchase_event_types reached dbt: the orders are spend.
        assert con.execute("select sum(spend) from marts.fct_events").fetchone()[0] > 0
        # horizons and the inactivity rule reached the churn layer.
        columns = {r[0] for r in con.execute("describe churn.churn_predictions").fetchall()}
        assert {"p_churn_30d", "p_churn_90d"} <= columns and "p_churn_7d" not in columns
    finally:
        con.close()


def test_no_belief_without_evidence_and_no_demo_vocabulary(purchases_run):
    root, _, result = purchases_run
    assert result.returncode == 0
    con = _con(root)
    try:
        beliefs = con.execute("select belief, category, family, n_evidence, user_id from twins.user_beliefs").df()
        twins = con.execute("select * from twins.user_twins").df()
    finally:
        con.close()
    # Only what a purchases log can say: how active, how often buying. No topics, channels, formats, goals,
    # recommendations, campaigns or tickets: none of those sources exist here.
    assert set(beliefs["belief"]) == {"activity_rate", "purchase_rate"}
    assert twins["top_interest"].isna().all() and twins["preferred_channel"].isna().all()
    assert twins["rec_click_propensity"].isna().all() and twins["tickets_per_30_days"].isna().all()
    assert twins["overall_confidence"].between(0, 1).all()


def test_a_purchases_only_log_gets_purchase_beliefs_and_value(purchases_run):
    root, _, result = purchases_run
    assert result.returncode == 0
    twins, fits, why = (duckdb.sql(sql, connection=_con(root)).df() for sql in (
        "select * from twins.user_twins", "select * from twins.purchase_fits",
        "select why from twins.belief_explanations where belief = 'value_365d'"))
    # Every customer, from orders alone: P(alive), expected purchases and value with intervals, spend per order.
    for column in ("p_alive", "expected_purchases_90d", "expected_purchases_90d_upper_90", "p_purchase_30d",
                   "expected_spend_per_purchase", "value_365d", "value_365d_lower_90", "value_365d_upper_90"):
        assert twins[column].notna().all(), column
    assert twins["p_alive"].between(0, 1).all()
    assert (twins["valued_purchases"] >= 1).all()  # every customer's first order has an amount
    assert len(fits) == 1 and len(why) == len(twins) and why["why"].str.contains("Gamma-Gamma").all()


def test_the_run_records_the_settings_it_used(purchases_run):
    root, settings_file, result = purchases_run
    assert result.returncode == 0
    assert "half_life_days = 180.0" in result.stdout and str(settings_file.name) in result.stdout
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(root / "dagster_home")
    try:
        with dg.DagsterInstance.get() as instance:
            run = instance.get_runs(limit=1)[0]
    finally:
        os.environ.pop("DAGSTER_HOME")
    assert run.tags["twins/half_life_days"].startswith("180.0")
    assert run.tags["twins/inactivity_days"].startswith("120")
    assert run.tags["twins/settings_file"].endswith("my-twins.yml")


def test_the_demos_output_fits_on_a_screen_before_the_summary(tmp_path):
    # 400 users over 90 days to a fixed day: every layer and scenario runs and prints (the gates pass on this
    # data, seed 42; 202 checks passed, none failed). What is printed does not grow with the data, the run's time
    # does (every landing day is a file per source and a partition): a quarter of the default demo's data.
    result = cli("demo", "--users", "400", "--days", "90", "--end-date", "2026-06-30", "--out", str(tmp_path / "demo"),
                 "--set", f"warehouse={tmp_path / 'demo' / 'warehouse.duckdb'}", root=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    before_summary = result.stdout.split("\nWarehouse:")[0]
    # Progress is a line per layer and step (Dagster's debug log: --verbose; dbt's own output: a file).
    assert len(before_summary.splitlines()) <= 50, before_summary
    assert "Scenarios:" in result.stdout and "Asset checks:" in result.stdout
    assert list((tmp_path / "demo" / "reports").glob("dbt_output_*.log"))


# ------------------------------------------------------------------------------------- settings precedence

def test_a_flag_beats_the_environment_which_beats_the_file(tmp_path):
    path = write_settings(tmp_path, {"half_life_days": 120, "warehouse": "w/file.duckdb", "horizons": [30]})
    from_file = Settings.load(path, environ={})
    assert from_file.half_life_days == 120 and from_file.warehouse_path == tmp_path / "w" / "file.duckdb"
    assert from_file.origin["half_life_days"] == "file my-twins.yml"
    env = Settings.load(path, environ={"TWINS_WAREHOUSE": str(tmp_path / "env.duckdb")})
    assert env.warehouse_path == tmp_path / "env.duckdb" and env.half_life_days == 120
    flag = Settings.load(path, environ={"TWINS_WAREHOUSE": str(tmp_path / "env.duckdb")},
                         overrides={"half_life_days": "90", "warehouse_path": str(tmp_path / "flag.duckdb")})
    assert flag.half_life_days == 90 and flag.warehouse_path == tmp_path / "flag.duckdb"
    assert flag.origin["half_life_days"] == "command line" and flag.horizons == (30,)


def test_every_setting_reaches_the_layer_that_reads_it(tmp_path):
    from dagster_twins.location import build_definitions

    path = write_settings(tmp_path, {"half_life_days": 150, "inactivity_days": 45, "feature_window_days": 21,
                                     "purchase_event_types": ["order", "refund"], "horizons": [14, 60],
                                     "partition_start": "1999-03-01", "duckdb_memory_limit": "2GB"})
    settings = Settings.load(path, environ={})
    assert settings.dbt_vars() == {"inactivity_days": 45, "purchase_event_types": ["order", "refund"],
                                   "feature_window_days": 21, "text_taxonomy": True}
    assert settings.dbt_environ()["TWINS_DUCKDB_MEMORY_LIMIT"] == "2GB"
    defs = build_definitions(settings)
    job = defs.resolve_job_def("twins_pipeline")
    ops = job.run_config_schema.config_type.fields["ops"].config_type.fields

    def default(op: str, field: str):
        return ops[op].config_type.fields["config"].config_type.fields[field].default_value

    assert default("twins_beliefs", "half_life_days") == 150
    assert default("churn_model", "horizons") == [14, 60]
    assert default("churn_model", "inactivity_days") == 45 and default("churn_model", "window_days") == 21
    assert default("churn_model", "half_life_days") == 150
    rebuild = defs.resolve_job_def("twins_rebuild_parallel").run_config_schema.config_type.fields["ops"]
    assert rebuild.config_type.fields["extract_buckets"].config_type.fields["config"].config_type.fields[
        "half_life_days"].default_value == 150
    raw = next(a for a in defs.assets if "raw/events" in {k.to_user_string() for k in a.keys})
    assert raw.partitions_def.start.date() == date(1999, 3, 1)
    warehouse = defs.resources["warehouse"]
    assert warehouse.memory_limit == "2GB"


def test_env_example_lists_every_variable_the_settings_read():
    from dagster_twins.settings import _ENV_NAMES

    listed = set(re.findall(r"\bTWINS_[A-Z_]+", (PROJECT_ROOT / ".env.example").read_text()))
    assert set(_ENV_NAMES.values()) <= listed, sorted(set(_ENV_NAMES.values()) - listed)


def test_a_bad_settings_file_names_the_file_and_the_key(tmp_path):
    path = write_settings(tmp_path, {"half_life_dayz": 10})
    with pytest.raises(SettingsError, match=r"my-twins.yml: unknown keys \['half_life_dayz'\]"):
        Settings.load(path, environ={})
    path = write_settings(tmp_path, {"horizons": [0, 30]})
    with pytest.raises(SettingsError, match="my-twins.yml: horizons"):
        Settings.load(path, environ={})
    result = cli("settings", "--settings", str(path), root=tmp_path)
    assert result.returncode == 2 and "horizons" in result.stderr and "Traceback" not in result.stderr


def test_partitions_start_at_the_earliest_landing_day(tmp_path):
    from dagster_twins.location import partition_start

    landing = tmp_path / "landing" / "events"
    landing.mkdir(parents=True)
    (landing / "1998-02-03.csv").write_text("user_id,occurred_at,event_type\nu1,1998-02-03 10:00:00,click\n")
    (landing / "1998-05-01.csv").write_text("user_id,occurred_at,event_type\nu1,1998-05-01 10:00:00,click\n")
    settings = Settings.load(environ={"TWINS_LANDING_DIR": str(tmp_path / "landing"),
                                      "TWINS_SETTINGS": str(write_settings(tmp_path, {}))})
    assert partition_start(settings) == date(1998, 2, 3)


# ----------------------------------------------------------------------------------- a vocabulary of its own

def music_log(root: Path) -> Path:
    """A streaming service's log over 45 days of 2021: events with its own topics, channels and formats, searches
    whose text names none of the demo's keywords, recommendations for some users only, tickets for a few. (45 days,
    not more: every landing day is a partition of each raw source, which the run materializes and records one by
    one; the vocabulary needs a few days, not a quarter.)"""
    rng = np.random.default_rng(11)
    landing = root / "landing"
    topics, channels, formats = ["jazz", "opera", "rock"], ["kiosk", "car"], ["album", "single"]
    users = [f"listener-{i}" for i in range(60)]
    start = date(2021, 3, 1)
    for d in range(45):
        day = start + timedelta(days=d)
        active = [u for u in users if rng.random() < 0.3]
        events = pd.DataFrame({
            "event_id": [f"e{d}-{i}" for i in range(len(active))], "user_id": active,
            "occurred_at": [f"{day} 12:{i % 60:02d}:00" for i in range(len(active))],
            "event_type": rng.choice(["play", "skip", "search"], len(active)),
            "topic": rng.choice(topics, len(active)), "channel": rng.choice(channels, len(active)),
            # Words the demo's taxonomy knows ("workout", "how to"): with text_taxonomy off they mean nothing here.
            "content_format": rng.choice(formats, len(active)), "text": "how to find a workout playlist",
        })
        (landing / "events").mkdir(parents=True, exist_ok=True)
        events.to_csv(landing / "events" / f"{day}.csv", index=False)
        shown = [u for u in active if u < "listener-2"]  # only some users are ever shown a recommendation
        recs = pd.DataFrame({"rec_id": [f"r{d}-{i}" for i in range(len(shown))], "user_id": shown,
                             "shown_at": [f"{day} 13:00:00"] * len(shown),
                             "response": rng.choice(["clicked", "ignored"], len(shown))})
        (landing / "recommendations").mkdir(exist_ok=True)
        recs.to_csv(landing / "recommendations" / f"{day}.csv", index=False)
    return landing


def test_a_twin_speaks_the_datas_vocabulary_and_nothing_else(tmp_path):
    landing = music_log(tmp_path)
    settings = write_settings(tmp_path, {"warehouse": "out/warehouse.duckdb", "landing_dir": str(landing),
                                         "text_taxonomy": False})
    result = cli("run", "--settings", str(settings), root=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    con = _con(tmp_path)
    try:
        categories = con.execute("select belief, list(distinct category) from twins.user_beliefs "
                                 "where category <> '' group by 1").fetchall()
        twins = con.execute("select * from twins.user_twins").df()
        rec_rows = con.execute("select count(distinct user_id), bool_and(n_evidence > 0) from twins.user_beliefs "
                               "where belief = 'rec_click'").fetchone()
        beliefs = {r[0] for r in con.execute("select distinct belief from twins.user_beliefs").fetchall()}
    finally:
        con.close()
    vocabulary = dict(categories)
    assert set(vocabulary["topic_interest"]) == {"jazz", "opera", "rock"}
    assert set(vocabulary["channel_preference"]) == {"kiosk", "car"}
    assert not (set().union(*vocabulary.values()) & (DEMO_TOPICS | DEMO_CHANNELS))
    assert set(twins["top_interest"].dropna()) <= {"jazz", "opera", "rock"}
    # Recommendations were shown to some users only: only they have a click propensity.
    assert 0 < rec_rows[0] < 60 and rec_rows[1]
    assert twins["rec_click_propensity"].isna().sum() == 60 - rec_rows[0]
    # No tickets, no campaigns, and no goals from text (the taxonomy is off): no such beliefs.
    assert not beliefs & {"ticket_rate", "campaign_response", "goal"}
