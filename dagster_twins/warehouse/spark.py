"""Spark, dbt's second engine (``TWINS_DBT_TARGET=spark``): the one Spark configuration dbt and Python share.

dbt-spark's ``session`` method (dbt/adapters/spark/session.py) builds its session on every statement as
``SparkSession.builder.enableHiveSupport()``, then ``.config(key, value)`` for each of the profile's
``server_side_parameters`` (plus ``spark.sql.ansi.enabled=false``, which dbt-spark always adds), then
``getOrCreate()``. ``spark_conf`` reads those parameters from the ``spark`` output of ``dbt/profiles.yml`` and
renders them for the given Spark folder, so ``spark_session`` is configured exactly like dbt's: same warehouse
folder, same Derby metastore (under ``settings.spark_dir``), same time zone. Python sees the tables dbt built::

    from dagster_twins.settings import Settings
    from dagster_twins.warehouse.spark import spark_session, stop_spark_session

    spark = spark_session(Settings.from_env().spark_dir)
    table = spark.sql("select * from marts.fct_user_daily_features").toArrow()
    stop_spark_session()  # releases the metastore: dbt's own session cannot start while this one runs

The Derby metastore admits one JVM at a time, so a Python session and a dbt run on the Spark target must not
overlap: stop the session (which ends its JVM) before dbt runs again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from dagster_twins.settings import DBT_PROJECT_DIR
from dagster_twins.warehouse.spark_metastore import provision_metastore

PROFILE_NAME = "dagster_twins"
SPARK_TARGET = "spark"
# dbt-spark adds this to every session's parameters (SparkCredentials.__post_init__), whatever the profile says.
DBT_SPARK_FORCED = {"spark.sql.ansi.enabled": "false"}


def _profile_outputs(profiles_dir: Path = DBT_PROJECT_DIR) -> dict[str, Any]:
    return yaml.safe_load((profiles_dir / "profiles.yml").read_text())[PROFILE_NAME]["outputs"]


def is_spark_target(target: str, profiles_dir: Path = DBT_PROJECT_DIR) -> bool:
    """Whether dbt's ``target`` is a Spark output of the profile."""
    return (_profile_outputs(profiles_dir).get(target) or {}).get("type") == "spark"


def spark_environ(spark_dir: Path, environ: Mapping[str, str] | None = None,
                  overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment dbt's profile is rendered in: ``environ`` (default os.environ), then ``overrides`` (the
    settings' TWINS_SPARK_* variables, ``Settings.spark_environ``), with TWINS_SPARK_DIR set to ``spark_dir``."""
    env = {**(os.environ if environ is None else environ), **(overrides or {})}
    env["TWINS_SPARK_DIR"] = str(spark_dir.resolve())
    return env


def _render(value: Any, env: Mapping[str, str]) -> str:
    """Renders a profile value the way dbt does for the only function the Spark output uses: env_var."""
    import jinja2

    def env_var(name: str, default: str | None = None) -> str:
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise KeyError(f"Env var required but not provided: {name!r}")

    return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(str(value)).render(env_var=env_var)


def spark_conf(spark_dir: Path, environ: Mapping[str, str] | None = None,
               profiles_dir: Path = DBT_PROJECT_DIR, target: str = SPARK_TARGET,
               overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every Spark parameter dbt's ``target`` session gets (the profile's server_side_parameters, rendered for
    the Spark folder ``spark_dir``, plus what dbt-spark forces), as strings."""
    profile = _profile_outputs(profiles_dir)[target]
    if profile.get("method") != "session":
        raise ValueError(f"dbt target {target!r} is not a local Spark session (method: {profile.get('method')})")
    env = spark_environ(spark_dir, environ, overrides)
    conf = {str(k): _render(v, env) for k, v in (profile.get("server_side_parameters") or {}).items()}
    conf.update(DBT_SPARK_FORCED)
    return conf


# Settings fixed when the JVM starts: a session of this process started with others is for another warehouse
# (or another cluster).
STATIC_KEYS = ("spark.sql.warehouse.dir", "spark.hadoop.javax.jdo.option.ConnectionURL", "spark.master")


def same_static_value(running: str | None, wanted: str | None) -> bool:
    """Whether a running session's static setting is the one wanted. Once the catalog is used, Spark rewrites
    ``spark.sql.warehouse.dir`` as a ``file:`` URI; compared raw, every later call restarted the JVM (a new
    application per asset on a cluster)."""
    def plain(value: str | None) -> str | None:
        if value is None:
            return None
        value = value.removeprefix("file://").removeprefix("file:")
        return value.rstrip("/") or "/"

    return plain(running) == plain(wanted)


def spark_session(spark_dir: Path, environ: Mapping[str, str] | None = None,
                  overrides: Mapping[str, str] | None = None, provision: bool = True):
    """A SparkSession configured exactly like dbt's on the Spark target (``overrides``: the settings' TWINS_SPARK_*
    variables, as dbt gets them). A session this process already runs is reused when it has the same warehouse,
    metastore and master, else stopped (with its JVM) and replaced. A new Spark folder first gets a copy of the
    machine's template metastore (``spark_metastore.provision_metastore``; ``provision=False``: Hive creates it)."""
    try:
        from pyspark import SparkContext
        from pyspark.sql import SparkSession
    except ImportError as exc:  # the optional dependency group
        raise ImportError("pyspark is not installed: pip install -r requirements-spark.lock "
                          "(or pip install '.[spark]')") from exc

    conf = spark_conf(spark_dir, environ, overrides=overrides)
    running = SparkContext._active_spark_context
    if running is not None and any(not same_static_value(running.getConf().get(k), conf.get(k))
                                   for k in STATIC_KEYS):
        stop_spark_session()
    for folder in ("warehouse", "metastore"):
        (spark_dir / folder).mkdir(parents=True, exist_ok=True)
    if provision:
        provision_metastore(spark_dir)
    builder = SparkSession.builder.enableHiveSupport()
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    # Python work in Spark tasks (warehouse/spark_tasks.py) runs in this interpreter's environment: PySpark gives
    # each Python function the context's interpreter, else PYSPARK_PYTHON or whatever `python3` is on the PATH.
    session.sparkContext.pythonExec = sys.executable
    return session


def stop_spark_session() -> None:
    """Stops this process's SparkSession and its JVM, which releases the Derby metastore for the next dbt run
    (stopping the session alone keeps Derby booted inside the JVM)."""
    try:
        from pyspark import SparkContext
        from pyspark.sql import SparkSession
    except ImportError:
        return
    session = SparkSession.getActiveSession() or SparkSession._instantiatedSession
    if session is not None:
        session.stop()  # stops its SparkContext too
    elif SparkContext._active_spark_context is not None:
        SparkContext._active_spark_context.stop()
    gateway = SparkContext._gateway
    if gateway is None:
        return
    gateway.shutdown()
    proc = getattr(gateway, "proc", None)  # the spark-submit process PySpark started, if it started one
    if proc is not None:
        if proc.stdin is not None:
            proc.stdin.close()  # PySpark's JVM exits when its standard input closes
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    SparkContext._gateway = None
    SparkContext._jvm = None
