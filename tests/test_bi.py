"""The BI dashboards (Apache Superset, bi/): built over a published serving copy and looked at in headless Chromium
while a "run" holds the warehouse's write lock and publications replace the serving copy under the dashboards.

Superset lives in its own environment, bi/.venv (`make bi-setup`, a prerequisite of `make test`); these tests drive
it through bi/run.sh and bi/superset/look.py, as `make bi` does. Set up once per module: about 3 minutes here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import duckdb
import pytest

from dagster_twins.serving.publish import publish_serving_copy
from dagster_twins.settings import PROJECT_ROOT

BI = PROJECT_ROOT / "bi"
BI_VENV = Path(os.environ.get("TWINS_BI_VENV", BI / ".venv"))
DASHBOARDS = {"twins-overview": 11, "user-twin": 6, "churn-risk": 10, "scenarios": 4, "data-quality": 7}

# Reflect every schema of the serving copy through SQLAlchemy and duckdb_engine at bi/requirements.lock's pins, as a
# BI tool's "add database" dialog does (SQLAlchemy 2.1 failed here on pg_collation; the lock pins what works).
REFLECT = """
import json, sys
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool
engine = create_engine(f"duckdb:///{sys.argv[1]}", connect_args={"read_only": True}, poolclass=NullPool)
found = {}
inspector = inspect(engine)
for schema in inspector.get_schema_names():
    for table in inspector.get_table_names(schema=schema) + inspector.get_view_names(schema=schema):
        found[f"{schema}.{table}"] = len(inspector.get_columns(table, schema=schema))
print(json.dumps(found))
"""


def _bi_env(home: Path) -> dict[str, str]:
    return {**os.environ, "TWINS_BI_HOME": str(home), "TWINS_BI_VENV": str(BI_VENV)}


@pytest.fixture(scope="module")
def bi_copies(built, tmp_path_factory):
    """Two published serving copies of the built warehouse (runs "one" and "two") and a BI home prepared over the
    first: (serving path, staged copy of run two, warehouse, BI home)."""
    if not (BI_VENV / "bin" / "superset").exists():
        pytest.fail(f"Superset is not installed in {BI_VENV}: `make bi-setup` (a prerequisite of `make test`)")
    settings, _, _ = built
    root = tmp_path_factory.mktemp("bi")
    warehouse = root / "warehouse.duckdb"
    shutil.copy(settings.warehouse_path, warehouse)
    serving = root / "serving" / "warehouse.duckdb"
    publish_serving_copy(warehouse, serving, run_id="run-two")
    staged_two = root / "run-two.duckdb"
    shutil.copy(serving, staged_two)
    publish_serving_copy(warehouse, serving, run_id="run-one")
    home = root / "superset"
    subprocess.run(["bash", str(BI / "run.sh"), "prepare", str(serving)], env=_bi_env(home), check=True)
    return serving, staged_two, warehouse, home


def test_the_client_pins_reflect_every_table_and_view_of_the_serving_copy(bi_copies):
    serving, _, _, _ = bi_copies
    out = subprocess.run([str(BI_VENV / "bin" / "python"), "-c", REFLECT, str(serving)], capture_output=True,
                         text=True, check=True).stdout
    reflected = json.loads(out)
    con = duckdb.connect(str(serving), read_only=True)
    try:
        # duckdb_engine names a schema with its catalog: warehouse.twins
        expected = {".".join(row) for row in con.execute(
            "select database_name, schema_name, table_name from duckdb_tables() where not temporary union all "
            "select database_name, schema_name, view_name from duckdb_views() where not internal and not temporary"
        ).fetchall()}
    finally:
        con.close()
    assert expected <= set(reflected), sorted(expected - set(reflected))
    assert all(n > 0 for n in reflected.values())


def test_every_dashboard_renders_with_data_while_a_run_holds_the_warehouse_and_republishes(bi_copies, tmp_path):
    serving, staged_two, warehouse, home = bi_copies
    run_one = serving.parent / ".bi-test-run-one.duckdb"
    shutil.copy(serving, run_one)
    # A run holds the warehouse's write lock: any BI step that opened the warehouse would fail with a lock error.
    writer = duckdb.connect(str(warehouse))
    stop = threading.Event()
    swaps = []

    def republish() -> None:
        # What every publication's last step does (publish.py): a whole file renamed onto the serving path.
        while not stop.is_set():
            for staged in (staged_two, run_one):
                tmp = serving.parent / f".bi-test-swap-{len(swaps)}.duckdb"
                shutil.copy(staged, tmp)
                os.replace(tmp, serving)
                swaps.append(staged.name)
                stop.wait(0.5)

    swapper = threading.Thread(target=republish, daemon=True)
    swapper.start()
    try:
        writer.execute("create table if not exists main.bi_test_run_marker as select 1 as x")  # it really writes
        subprocess.run(["bash", str(BI / "run.sh"), "prepare", str(serving)], env=_bi_env(home), check=True)
        shots = tmp_path / "screenshots"
        look = subprocess.run([str(BI_VENV / "bin" / "python"), str(BI / "superset" / "look.py"),
                               "--serve", str(BI / "run.sh"), "--screenshots", str(shots)],
                              env=_bi_env(home), capture_output=True, text=True)
    finally:
        stop.set()
        swapper.join()
        writer.close()
    assert look.returncode == 0, look.stdout[-4000:] + look.stderr[-4000:]
    report = {r["dashboard"]: r for r in json.loads(look.stdout)}
    assert {slug: r["charts"] for slug, r in report.items()} == DASHBOARDS
    assert all(r["ok"] and not r["failed"] for r in report.values())
    assert report["user-twin"]["one_user"]  # the user page opened on one user's twin
    for slug in DASHBOARDS:
        assert (shots / f"bi-{slug}.png").stat().st_size > 60_000  # a drawn page (blank ones were 30-35 kB)
    assert len(swaps) >= 4  # the serving copy was replaced under the dashboards, more than once
    bundle = (home / "twins_dashboards.zip").read_bytes()
    # The dashboards' one database is the serving copy, never the warehouse (the bundle's YAML is stored uncompressed).
    assert str(serving).encode() in bundle and str(warehouse).encode() not in bundle
