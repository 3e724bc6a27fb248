"""A ready Hive metastore for every new Spark folder, built once per machine.

dbt's Spark session and the Python assets' (``warehouse/spark.py``) keep their catalog in an embedded Derby
database under ``<spark_dir>/metastore/metastore_db``. On a new folder, the first catalog call has Hive create its
schema there (about seventy tables, through DataNucleus) before it answers. ``provision_metastore`` instead copies
a metastore built once per machine and Spark version (``template``: the schema, the ``default`` database, nothing
else) into the new folder and points its ``default`` database at the folder's own warehouse, with Derby's own
``ij`` tool from the pinned pyspark's jars (a small JVM, about a second)::

    from dagster_twins.warehouse.spark_metastore import provision_metastore

    provision_metastore(spark_dir)  # before the first Spark session on spark_dir; a no-op once it has one

Both the dbt asset (before ``dbt build`` on the Spark target) and ``spark_session`` call it, so dbt and Python keep
seeing one catalog. The template is built in a child process (a local Spark session that creates and drops a
database, a partitioned table and a view) under a file lock, so concurrent first users wait for one build.
"""

from __future__ import annotations

import fcntl
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "dagster-twins" / "spark-metastore"
# What the template's catalog work exercises: every kind of object the dbt project makes on Spark.
TEMPLATE_STATEMENTS = (
    "create database if not exists template_probe",
    "create table template_probe.t (n bigint, d date) using parquet partitioned by (d)",
    "insert overwrite template_probe.t partition (d) select 1, date '2026-01-01'",
    "alter table template_probe.t set tblproperties ('probe' = 'yes')",
    "create or replace view template_probe.v as select * from template_probe.t",
    "select count(*) from template_probe.v",
    "drop database template_probe cascade",
)


class MetastoreError(RuntimeError):
    """The template could not be built or copied; the message carries the tool's output."""


def metastore_db(spark_dir: Path) -> Path:
    """The Derby database dbt's profile and ``spark_session`` open for ``spark_dir``."""
    return spark_dir / "metastore" / "metastore_db"


def _jars() -> Path:
    try:
        import pyspark
    except ImportError as exc:
        raise ImportError("pyspark is not installed: pip install -r requirements-spark.lock") from exc
    return Path(pyspark.__file__).parent / "jars"


def template_key() -> str:
    """The template's folder name: the Spark and Derby versions its schema belongs to."""
    import pyspark

    derby = sorted(p.stem.removeprefix("derby-") for p in _jars().glob("derby-*.jar"))
    return f"pyspark-{pyspark.__version__}-derby-{'-'.join(derby)}"


def run_ij(script: str, cwd: Path) -> str:
    """Runs Derby's ``ij`` over ``script`` in a JVM of its own; returns its output, raises if a statement failed
    (ij itself always exits 0). A ``shutdown=true`` connection's expected 'shut down' message is not a failure."""
    classpath = ":".join(str(p) for p in sorted(_jars().glob("derby*.jar")))
    done = subprocess.run(["java", f"-Dderby.system.home={cwd}", "-cp", classpath, "org.apache.derby.tools.ij"],
                          input=script, capture_output=True, text=True, cwd=cwd, check=False)
    output = done.stdout + done.stderr
    # ij prints "ERROR <SQLState>: ..." (after its prompt); 08006 is the expected reply to shutdown=true.
    errors = [line for line in output.splitlines() if re.search(r"\b(ERROR [0-9A-Z]{5}|IJ ERROR)", line)
              and "ERROR 08006" not in line]
    if done.returncode != 0 or errors:
        raise MetastoreError(f"Derby's ij failed (exit {done.returncode}):\n{output[-3000:]}")
    return output


def _connect(db: Path, **attributes: str) -> str:
    """ij's statement connecting to the Derby database in folder ``db`` (``shutdown='true'``: closing it)."""
    url = "jdbc:derby:;databaseName=" + ";".join([str(db), *(f"{k}={v}" for k, v in attributes.items())])
    return "connect '" + url.replace("'", "''") + "';\n"


def _build_template_here(spark_dir: Path) -> None:
    """In this (child) process: a local Spark session on ``spark_dir`` that makes Hive create its whole schema."""
    from dagster_twins.warehouse.spark import spark_session, stop_spark_session

    spark = spark_session(spark_dir, overrides={"TWINS_SPARK_MASTER": "local[1]"}, provision=False)
    try:
        for statement in TEMPLATE_STATEMENTS:
            spark.sql(statement).collect()
    finally:
        stop_spark_session()


def template(cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """The machine's template metastore for the installed Spark (``cache_dir/<key>/metastore_db``), built first if
    missing (about half a minute on a quiet machine)."""
    target = cache_dir / template_key()
    db = target / "metastore_db"
    if db.is_dir():
        return db
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / f"{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it: wait for it
        if db.is_dir():
            return db
        with tempfile.TemporaryDirectory(prefix="template-", dir=cache_dir) as work:
            spark_dir = Path(work) / "spark"
            built = subprocess.run([sys.executable, "-m", __name__, str(spark_dir)], capture_output=True, text=True,
                                   check=False)
            if built.returncode != 0:
                output = (built.stdout + built.stderr)[-3000:]
                raise MetastoreError(f"Building the template metastore failed:\n{output}")
            # A clean shutdown: no recovery log to replay, no lock file, in every copy.
            db_built = metastore_db(spark_dir)
            run_ij(_connect(db_built) + _connect(db_built, shutdown="true") + "exit;\n", Path(work))
            (metastore_db(spark_dir) / "db.lck").unlink(missing_ok=True)
            staged = Path(work) / "done"
            staged.mkdir()
            shutil.move(metastore_db(spark_dir), staged / "metastore_db")
            if target.exists():
                shutil.rmtree(target)
            staged.rename(target)
    return db


def provision_metastore(spark_dir: Path, cache_dir: Path = DEFAULT_CACHE_DIR) -> bool:
    """Gives a Spark folder without a metastore a copy of the template, its ``default`` database located at the
    folder's ``warehouse/``. Returns whether it copied (False: the folder had a metastore, left as it is)."""
    db = metastore_db(spark_dir)
    if db.exists():
        return False
    source = template(cache_dir)
    db.parent.mkdir(parents=True, exist_ok=True)
    staged = db.parent / "metastore_db.copying"
    if staged.exists():
        shutil.rmtree(staged)
    shutil.copytree(source, staged)
    location = f"file:{(spark_dir / 'warehouse').resolve()}".replace("'", "''")
    try:
        output = run_ij(_connect(staged)
                        + f"update APP.DBS set DB_LOCATION_URI = '{location}' where NAME = 'default';\n"
                        + _connect(staged, shutdown="true") + "exit;\n", db.parent)
        if "1 row inserted/updated/deleted" not in output:
            raise MetastoreError(f"The template at {source} has no 'default' database to relocate:\n"
                                 f"{output[-3000:]}")
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    (staged / "db.lck").unlink(missing_ok=True)
    staged.rename(db)
    return True


if __name__ == "__main__":  # the template's build, in a child process: python -m ... <spark_dir>
    _build_template_here(Path(sys.argv[1]))
