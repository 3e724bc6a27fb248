"""Parity: dbt on Spark builds the same tables as dbt on DuckDB.

Spark here is a real standalone cluster (the ``spark_cluster`` session fixture: a master and two one-core workers
on 127.0.0.1, started from the pinned pyspark's launchers and stopped after the session): the dbt runs and the
Python layers' reads are applications on it, their tasks in the workers' executors. Run alone with
``pytest -m spark``; ``--spark-master 'local[2]'`` runs the Spark side in a local session instead.

A small demo (200 users, 45 days) is ingested and transformed in two steps, each through the Dagster job and the
real dbt CLI (`dbt build`: every model, seed and test) on both engines: the first 30 landing days, then the last
15 as an incremental run with the landing-day window the Dagster partitions pass (late rows of the first window
land in the second, so the incremental models re-aggregate old days). Then every mart, the intermediate tables
and the interaction stream are compared row by row: same rows, numbers within float tolerance, same timestamps.
Spark's results are read through ``spark_engine.spark_session``, the session Python code uses. The Python layers
run on both engines' marts, and the twins' fold and summary run as Spark tasks, a bucket each, against DuckDB's.

Spark is an optional dependency group, but CI installs it (make test depends on make setup-spark): without
pyspark or Java these tests fail, they do not skip.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from datetime import UTC, date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml

from dagster_twins.ingestion.raw_schema import ensure_raw_schema
from dagster_twins.pipeline import run_pipeline
from dagster_twins.settings import DBT_PROJECT_DIR, Settings
from tests.conftest import make_settings

pytestmark = pytest.mark.spark

END = date(2026, 3, 31)
# Small: Spark's cost here is per query and per partition written, not per row (a day more is a partition more in
# every incremental model, both windows); 45 days is the session demo's span, on which the churn model fits.
USERS = 200
DAYS = 45
FIRST_WINDOW_DAYS = 30
# The simulation's parity does not need 1,000 draws per scenario: the same seed draws the same on both engines.
SCENARIO_DRAWS = 40

# Everything dbt materializes as a table, plus the interaction stream (a view over every staging model).
COMPARED = (
    "marts.fct_events", "marts.dim_users", "marts.fct_user_daily_features", "marts.fct_user_daily_dimension_counts",
    "marts.fct_user_churn_survival", "marts.fct_campaign_experiment_assignments", "intermediate.int_user_churn_status",
    "intermediate.int_interactions", "reference.topic_taxonomy", "reference.goal_intents",
)


def require_spark() -> None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        pytest.fail("pyspark is not installed. The Spark parity tests need the optional dependency group: "
                    "`make setup-spark` (pip install -r requirements-spark.lock).", pytrace=False)
    if shutil.which("java") is None:
        pytest.fail("No `java` on PATH: local Spark needs a Java runtime (17).", pytrace=False)


def normalized(table: pa.Table) -> pd.DataFrame:
    """One set of types for both engines: timestamps as naive UTC microseconds (Spark's come with a UTC zone),
    dates as timestamps, every number that is not an integer as float64 (DuckDB's FLOAT and HUGEINT, Spark's
    DECIMAL), integers as int64."""
    columns = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        t = col.type
        if pa.types.is_timestamp(t):
            col = col.cast(pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us")) if t.tz else col.cast(
                pa.timestamp("us"))
        elif pa.types.is_date(t):
            col = col.cast(pa.timestamp("us"))
        elif pa.types.is_floating(t) or pa.types.is_decimal(t):
            col = col.cast(pa.float64())
        elif pa.types.is_integer(t):
            col = col.cast(pa.int64())
        elif pa.types.is_large_string(t):
            col = col.cast(pa.string())
        columns[name] = col
    return pa.table(columns).to_pandas()


def differences(name: str, duck: pd.DataFrame, spark: pd.DataFrame, rtol: float = 1e-9) -> list[str]:
    """Why two versions of a table differ (empty: they hold the same rows). Rows are matched by sorting on every
    column that is not a float (in these tables they include the key); floats must agree within ``rtol``."""
    if set(duck.columns) != set(spark.columns):
        return [f"{name}: columns differ: {sorted(set(duck.columns) ^ set(spark.columns))}"]
    spark = spark[list(duck.columns)]
    if len(duck) != len(spark):
        return [f"{name}: {len(duck)} rows on DuckDB, {len(spark)} on Spark"]
    floats = [c for c in duck.columns if "f" in (duck[c].dtype.kind, spark[c].dtype.kind)]
    keys = [c for c in duck.columns if c not in floats]
    duck = duck.sort_values(keys, na_position="first", kind="stable").reset_index(drop=True)
    spark = spark.sort_values(keys, na_position="first", kind="stable").reset_index(drop=True)
    out = []
    for c in keys:
        same = (duck[c] == spark[c]) | (duck[c].isna() & spark[c].isna())
        if not same.all():
            i = int(np.argmin(same.to_numpy()))
            out.append(f"{name}.{c}: {int((~same).sum())} rows differ, e.g. {duck[c][i]!r} (DuckDB) != "
                       f"{spark[c][i]!r} (Spark) in row {duck.loc[i, keys[:4]].to_dict()}")
    for c in floats:
        a, b = duck[c].astype(float).to_numpy(), spark[c].astype(float).to_numpy()
        close = np.isclose(a, b, rtol=rtol, atol=rtol, equal_nan=True)
        if not close.all():
            i = int(np.argmin(close))
            out.append(f"{name}.{c}: {int((~close).sum())} values differ, e.g. {a[i]!r} (DuckDB) != {b[i]!r} "
                       f"(Spark) in row {duck.loc[i, keys[:4]].to_dict()}")
    return out


@pytest.fixture(scope="module")
def spark_master(request) -> str:
    """The master the Spark side runs on: the session's standalone cluster, or ``--spark-master`` (local[2])."""
    master = request.config.getoption("--spark-master")
    return request.getfixturevalue("spark_cluster").master_url if master == "cluster" else master


@pytest.fixture(scope="module")
def parity(tmp_path_factory, spark_master):
    """Both engines built over the same raw tables in two steps: (DuckDB settings, Spark settings, run results)."""
    require_spark()
    from dagster_twins.demo import generate_demo
    from dagster_twins.warehouse.spark import stop_spark_session

    root = tmp_path_factory.mktemp("parity")
    demo = generate_demo(root / "demo", n_users=USERS, n_days=DAYS, end_date=END, seed=23)
    shutil.copytree(demo.landing_dir, root / "landing")
    duck = make_settings(root)  # one DuckDB warehouse: ingestion's raw tables and DuckDB's marts
    # Spark's tables under root/spark, built by the cluster's executors: the folder is a local path every process
    # on this machine sees (on a real cluster, shared storage).
    spark = replace(duck, dbt_target="spark", spark_master=spark_master)
    split = demo.start_date + timedelta(days=FIRST_WINDOW_DAYS)
    results = []
    environ = dict(os.environ)  # the dbt asset hands dbt its variables through it: restored for later tests
    try:
        for start, end in ((demo.start_date, split - timedelta(days=1)), (split, demo.end_date)):
            results.append(run_pipeline(duck, start, end, layer="ingestion", instance=dg.DagsterInstance.ephemeral()))
            for settings in (duck, spark):
                results.append(run_pipeline(settings, start, end, layer="transform",
                                            instance=dg.DagsterInstance.ephemeral()))
        yield duck, spark, results
    finally:
        stop_spark_session()
        os.environ.clear()
        os.environ.update(environ)


def test_spark_is_installed():
    require_spark()


def test_both_engines_build_every_model_and_pass_every_test(parity):
    _, _, results = parity
    assert all(r.success for r in results)
    for result in results[1:3] + results[4:6]:  # the dbt runs: DuckDB and Spark, both steps
        evaluations = result.get_asset_check_evaluations()
        assert len(evaluations) > 140  # every dbt test, as a Dagster asset check
        assert [e.check_name for e in evaluations if not e.passed] == []


def test_dbt_ran_on_the_cluster(parity, request):  # noqa: ARG001 (parity: after both builds)
    """Each dbt run on Spark was an application of the cluster with an executor on each worker."""
    if request.config.getoption("--spark-master") != "cluster":
        pytest.skip("--spark-master: not on the standalone cluster")
    spark_cluster = request.getfixturevalue("spark_cluster")
    apps = spark_cluster.workers_by_app()
    assert len(apps) >= 2, apps  # the two dbt builds (and the Python readers' sessions, when they ran first)
    assert all(workers == {"worker-1", "worker-2"} for workers in apps.values()), apps
    assert all(len(executors) >= 2 for executors in spark_cluster.executors().values())


def test_every_table_is_the_same_on_spark(parity):
    from dagster_twins.warehouse.spark import spark_session, stop_spark_session

    duck_settings, spark_settings, _ = parity
    con = duckdb.connect(str(duck_settings.warehouse_path), read_only=True)
    spark = spark_session(spark_settings.spark_dir, overrides=spark_settings.spark_environ())
    try:
        problems = []
        for relation in COMPARED:
            duck = normalized(con.sql(f"select * from {relation}").to_arrow_table())
            assert len(duck) > 0, relation
            problems += differences(relation, duck, normalized(spark.sql(f"select * from {relation}").toArrow()))
        # The session Python reads with is dbt's: its tables, in UTC.
        assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
        assert spark.sparkContext.master == spark_settings.spark_master
        assert spark.conf.get("spark.sql.warehouse.dir").endswith(str(spark_settings.spark_dir / "warehouse"))
        # The folder's metastore, a copy of the machine's template, locates `default` in the folder's warehouse.
        location = dict(spark.sql("describe database default").collect())["Location"]
        assert location.removeprefix("file:") == str(spark_settings.spark_dir / "warehouse"), location
    finally:
        con.close()
        stop_spark_session()
    assert problems == []


def test_incremental_models_took_the_second_window_incrementally(parity):
    """The second step was incremental on both engines (not a rebuild), and it folded late rows into old days."""
    duck_settings, _, _ = parity
    con = duckdb.connect(str(duck_settings.warehouse_path), read_only=True)
    try:
        split = END - timedelta(days=DAYS - FIRST_WINDOW_DAYS - 1)
        late = con.execute("select count(*) from marts.fct_events where landing_date >= ? and activity_date < ?",
                           [split, split]).fetchone()[0]
    finally:
        con.close()
    assert late > 0
    spark_tables = duck_settings.spark_dir / "warehouse" / "marts.db"
    for table, column in (("fct_events", "landing_date"), ("fct_user_daily_features", "activity_date")):
        days = {p.name for p in (spark_tables / table).iterdir() if p.name.startswith(f"{column}=")}
        assert len(days) >= DAYS - 1, table  # one partition per day, both windows


def test_raw_sources_declare_the_columns_ingestion_writes():
    """The raw sources' YAML (from which Spark declares the raw tables over the lake) matches the raw tables."""
    spark_types = {"VARCHAR": "string", "TIMESTAMP": "timestamp", "DOUBLE": "double", "BIGINT": "bigint",
                   "DATE": "date", "DECIMAL(18,2)": "decimal(18,2)"}
    con = duckdb.connect()
    ensure_raw_schema(con)
    declared = yaml.safe_load((DBT_PROJECT_DIR / "models" / "staging" / "_sources.yml").read_text())
    (raw,) = [s for s in declared["sources"] if s["name"] == "raw"]
    for table in raw["tables"]:
        actual = [(name, spark_types[dtype]) for name, dtype in con.execute(
            "select column_name, data_type from information_schema.columns where table_schema = 'raw' "
            "and table_name = ? order by ordinal_position", [table["name"]]).fetchall()]
        assert [(c["name"], c["data_type"]) for c in table["columns"]] == actual, table["name"]


def test_lake_export_rewrites_the_window_and_what_is_missing(tmp_path):
    from dagster_twins.transform.lake import export_raw_lake, lake_dir

    con = duckdb.connect()
    ensure_raw_schema(con)
    for day in (1, 2, 3):
        con.execute("insert into raw.users (user_id, signed_up_at, _row_id, _source_file, _landing_date, _loaded_at) "
                    "values (?, timestamp '2026-01-01 10:00:00', ?, 'f', ?, now()::timestamp)",
                    [f"u{day}", f"u{day}", date(2026, 1, day)])
    first = export_raw_lake(con, tmp_path)
    assert first.days_written["users"] == 3 and first.rows_written["users"] == 3
    files = sorted(p.name for p in (lake_dir(tmp_path) / "users").iterdir())
    assert files == ["2026-01-01_0.parquet", "2026-01-02_0.parquet", "2026-01-03_0.parquet"]
    # Day 2 re-landed with two rows, day 3 emptied: a run over days 2..3 rewrites 2 and drops 3; day 1 stays.
    con.execute("delete from raw.users where _landing_date >= date '2026-01-02'")
    con.execute("insert into raw.users (user_id, signed_up_at, _row_id, _source_file, _landing_date, _loaded_at) "
                "select 'u' || i, timestamp '2026-01-01 10:00:00', 'u' || i, 'f', date '2026-01-02', now()::timestamp "
                "from range(5, 7) as t(i)")
    second = export_raw_lake(con, tmp_path, (date(2026, 1, 2), date(2026, 1, 4)))
    assert second.days_written["users"] == 1 and second.days_removed["users"] == 1
    lake = duckdb.sql(f"select user_id, signed_up_at from read_parquet('{lake_dir(tmp_path)}/users/*.parquet') "
                      "order by user_id").fetchall()
    assert [u for u, _ in lake] == ["u1", "u5", "u6"]
    # Timestamps are UTC instants in the files (TIMESTAMPTZ), the same wall-clock time in UTC.
    assert str(lake[0][1].astimezone(UTC)) == "2026-01-01 10:00:00+00:00"


# The Python layers' per-user outputs, with their keys, compared between the two engines.
PYTHON_OUTPUTS = {
    "twins.user_beliefs": ["user_id", "belief", "category"], "twins.user_twins": ["user_id"],
    "churn.churn_predictions": ["user_id"], "simulation.scenario_user_effects": ["scenario", "user_id"],
    "simulation.scenario_results": ["scenario"],
}


def few_draws(scenarios: Path, folder: Path) -> Path:
    """The scenarios of ``scenarios``, each with at most SCENARIO_DRAWS draws, in ``folder``."""
    folder.mkdir()
    for spec in sorted(scenarios.glob("*.yaml")):
        raw = yaml.safe_load(spec.read_text())
        (folder / spec.name).write_text(yaml.safe_dump({**raw, "draws": min(raw.get("draws", 1000), SCENARIO_DRAWS)}))
    return folder


def test_python_layers_read_spark_through_the_bucket_reader(parity, tmp_path):
    """Twins, churn and simulation run once on DuckDB's marts and once on Spark's, read a bucket at a time through
    dagster_twins.warehouse.buckets: the same outputs. Spark's copy of the warehouse has no marts schema at all, so
    nothing can fall back to DuckDB's."""
    duck_settings, spark_settings, _ = parity
    scenarios = few_draws(duck_settings.scenarios_dir, tmp_path / "scenarios")
    duck_settings, spark_settings = (replace(s, scenarios_dir=scenarios) for s in (duck_settings, spark_settings))
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(duck_settings.warehouse_path, copy)
    con = duckdb.connect(str(copy))
    con.execute("drop schema marts cascade")
    con.close()
    on_spark = replace(spark_settings, warehouse_path=copy, spark_dir_override=spark_settings.spark_dir,
                       user_buckets=3)
    start, end = END - timedelta(days=DAYS - 1), END
    twins_metadata = {}
    for settings in (duck_settings, on_spark):
        for layer in ("twins", "churn", "simulation"):
            # Parity, not model quality: on 200 users the churn backtest's gates judge noise, so they are opened.
            config = {"ops": {"churn_model": {"config": {"baseline_margin": 1.0, "calibration_ceiling": 1.0}}}}
            result = run_pipeline(settings, start, end, layer=layer, instance=dg.DagsterInstance.ephemeral(),
                                  run_config=config if layer == "churn" else None)
            assert result.success, (settings.dbt_target, layer)
            if layer == "twins":
                # The beliefs' materialization is the one that names its engine (the purchase asset runs first).
                twins_metadata[settings.dbt_target] = next(
                    e.materialization.metadata for e in result.get_asset_materialization_events()
                    if "engine" in e.materialization.metadata)
    assert twins_metadata["spark"]["engine"].value == "spark" and twins_metadata["spark"]["user_buckets"].value == 3
    assert twins_metadata["duckdb"]["engine"].value == "duckdb"
    problems = []
    for table, key in PYTHON_OUTPUTS.items():
        frames = []
        for path in (duck_settings.warehouse_path, copy):
            con = duckdb.connect(str(path), read_only=True)
            frames.append(con.sql(f"select * from {table}").df().sort_values(key).reset_index(drop=True))
            con.close()
        duck, spark = frames
        assert len(duck) == len(spark) > 0, table
        for column in duck.columns:
            if pd.api.types.is_float_dtype(duck[column]):
                if not np.allclose(duck[column], spark[column], rtol=1e-6, atol=1e-9, equal_nan=True):
                    problems.append(f"{table}.{column}")
            elif not duck[column].astype(str).equals(spark[column].astype(str)):
                problems.append(f"{table}.{column}")
    assert problems == [], problems


def test_the_twins_fold_and_summary_run_as_spark_tasks_a_bucket_each_with_duckdbs_result(parity, record_property):
    """The twins' fold of every landed interaction, as Spark tasks over 3 user-hash buckets (the executors' Python
    calling state.fold) into a Spark table, equals the fold of the same evidence on DuckDB's marts; the summary
    after it (priors on the driver from the state read a bucket at a time, then posteriors and the roll-up as Spark
    tasks) equals summarize.summarize and roll_up over DuckDB's whole population at once. Each stage's seconds go
    to the JUnit report (``--junitxml``): what docs/benchmarks.md quotes per bucket."""
    import time

    from dagster_twins.twins import spark_fold, store
    from dagster_twins.twins.state import STATE_COLUMNS, empty_state, fold
    from dagster_twins.twins.summarize import roll_up, summarize
    from dagster_twins.warehouse.buckets import DuckDBReader
    from dagster_twins.warehouse.spark import spark_session, stop_spark_session

    duck_settings, spark_settings, _ = parity
    end = END + timedelta(days=1)
    con = duckdb.connect(str(duck_settings.warehouse_path), read_only=True)
    try:
        reader = DuckDBReader(con)
        evidence = store.landed_evidence(reader, None, end)
        users, categories = store.known_users(reader, END), store.belief_categories(reader)
    finally:
        con.close()
    expected = fold(empty_state(), None, evidence, END, 60.0)[STATE_COLUMNS]
    beliefs, priors = summarize(expected, users, categories, END, 60.0)
    twins = roll_up(beliefs, END)
    spark = spark_session(spark_settings.spark_dir, overrides=spark_settings.spark_environ())
    try:
        started = time.perf_counter()
        rows = spark_fold.fold_on_spark(spark, end, 60.0, buckets=3)
        record_property("fold_seconds", round(time.perf_counter() - started, 1))
        folded = normalized(spark.table(spark_fold.STATE_TABLE).toArrow())
        started = time.perf_counter()
        summary = spark_fold.summarize_on_spark(spark, end, 60.0, buckets=3)
        record_property("summary_seconds", round(time.perf_counter() - started, 1))
        on_spark = {t: normalized(spark.table(t).toArrow()) for t in (spark_fold.BELIEFS_TABLE, spark_fold.TWINS_TABLE)}
    finally:
        stop_spark_session()
    assert rows == len(expected) > 100
    assert differences(spark_fold.STATE_TABLE, normalized(pa.Table.from_pandas(expected, preserve_index=False)),
                       folded) == []
    assert (summary.users, summary.belief_rows, summary.twin_rows) == (len(users), len(beliefs), len(twins))
    assert len(twins) == len(users) > 100 and len(beliefs) > 5 * len(users)
    assert differences("priors", normalized(pa.Table.from_pandas(priors, preserve_index=False)),
                       normalized(pa.Table.from_pandas(summary.priors.frame, preserve_index=False))) == []
    for table, frame in ((spark_fold.BELIEFS_TABLE, beliefs), (spark_fold.TWINS_TABLE, twins)):
        assert differences(table, normalized(pa.Table.from_pandas(frame, preserve_index=False)), on_spark[table]) == []


def test_spark_conf_is_dbts_with_absolute_paths_under_the_spark_dir(tmp_path, monkeypatch):
    """spark_conf renders dbt's own profile entries: the warehouse and metastore are absolute paths under the
    settings' Spark folder whatever the working directory, the session runs in UTC, dbt-spark's forced setting
    is there; the target's type decides whether the dbt asset prepares Spark."""
    from dagster_twins.warehouse.spark import is_spark_target, spark_conf

    monkeypatch.chdir(tmp_path)
    settings = replace(make_settings(tmp_path / "data"), spark_dir_override=None)
    conf = spark_conf(settings.spark_dir, environ={})
    spark_dir = tmp_path / "data" / "spark"
    assert settings.spark_dir == spark_dir
    assert conf["spark.sql.warehouse.dir"] == f"{spark_dir}/warehouse"
    assert conf["spark.hadoop.javax.jdo.option.ConnectionURL"] == (
        f"jdbc:derby:;databaseName={spark_dir}/metastore/metastore_db;create=true")
    assert f"-Dderby.system.home={spark_dir}/metastore" in conf["spark.driver.extraJavaOptions"]
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert "-Duser.timezone=UTC" in conf["spark.driver.extraJavaOptions"]
    assert conf["spark.executor.extraJavaOptions"] == "-Duser.timezone=UTC"  # a cluster's executors too
    assert conf["spark.master"] == "local[2]" and conf["spark.ui.enabled"] == "false"
    assert conf["spark.sql.ansi.enabled"] == "false"
    assert spark_conf(settings.spark_dir, environ={"TWINS_SPARK_MASTER": "local[4]"})["spark.master"] == "local[4]"
    # The settings' master and shuffle width reach the session as they reach dbt (over the environment's).
    cluster = replace(settings, spark_master="spark://127.0.0.1:7077", spark_shuffle_partitions=8)
    conf = spark_conf(settings.spark_dir, environ={"TWINS_SPARK_MASTER": "local[4]"},
                      overrides=cluster.spark_environ())
    assert conf["spark.master"] == "spark://127.0.0.1:7077" and conf["spark.sql.shuffle.partitions"] == "8"
    assert Settings.load(environ={"TWINS_SPARK_MASTER": "spark://h:7077"}).spark_master == "spark://h:7077"
    assert is_spark_target("spark") and not is_spark_target("duckdb")
