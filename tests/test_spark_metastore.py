"""A new Spark folder's metastore is a copy of the machine's template, its ``default`` database relocated to the
folder's warehouse; a folder that has a metastore keeps it. Here the template is a small Derby database made with
Derby's own tool (no Spark JVM); the parity test runs Spark on a real copied one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dagster_twins.warehouse.spark_metastore import (
    MetastoreError,
    _connect,
    metastore_db,
    provision_metastore,
    run_ij,
    template,
    template_key,
)

pytestmark = pytest.mark.spark


def _locations(db: Path) -> dict[str, str]:
    out = run_ij(_connect(db) + "select NAME || '=' || DB_LOCATION_URI from APP.DBS;\nexit;\n", db.parent)
    return dict(m.split("=", 1) for m in re.findall(r"^(\w+=file:.*?)\s*$", out, flags=re.M))


def _fake_template(cache: Path) -> Path:
    """A template with Hive's table of databases (only that): ``default`` located where it was built."""
    db = cache / template_key() / "metastore_db"
    db.parent.mkdir(parents=True)
    run_ij(f"connect 'jdbc:derby:;databaseName={db};create=true';\n"
           "create table APP.DBS (NAME varchar(128), DB_LOCATION_URI varchar(4000));\n"
           "insert into APP.DBS values ('default', 'file:/built/elsewhere/warehouse');\n"
           f"connect 'jdbc:derby:;databaseName={db};shutdown=true';\nexit;\n", db.parent)
    return db


def test_a_new_folder_gets_the_template_with_default_at_its_own_warehouse(tmp_path):
    cache = tmp_path / "cache"
    built = _fake_template(cache)
    assert template(cache) == built  # present: not rebuilt
    spark_dir = tmp_path / "it's spark"  # a quote in the path survives the SQL
    assert provision_metastore(spark_dir, cache) is True
    assert _locations(metastore_db(spark_dir)) == {"default": f"file:{(spark_dir / 'warehouse').resolve()}"}
    assert _locations(built) == {"default": "file:/built/elsewhere/warehouse"}  # the template is untouched
    assert not (metastore_db(spark_dir).parent / "metastore_db.copying").exists()
    # A folder with a metastore keeps it (its tables are in it).
    assert provision_metastore(spark_dir, cache) is False


def test_a_template_without_a_default_database_is_refused(tmp_path):
    cache = tmp_path / "cache"
    db = _fake_template(cache)
    run_ij(f"connect 'jdbc:derby:;databaseName={db}';\ndelete from APP.DBS;\nexit;\n", db.parent)
    with pytest.raises(MetastoreError, match="no 'default' database"):
        provision_metastore(tmp_path / "spark", cache)
    assert not metastore_db(tmp_path / "spark").exists()


def test_ij_reports_a_failed_statement(tmp_path):
    with pytest.raises(MetastoreError, match="Derby's ij failed"):
        run_ij(f"connect 'jdbc:derby:;databaseName={tmp_path / 'db'};create=true';\nselect * from NO_SUCH;\n"
               "exit;\n", tmp_path)
