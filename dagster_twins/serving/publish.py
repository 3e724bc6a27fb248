"""Publish a read-only serving copy of the warehouse, atomically, and check one.

A run writes the warehouse (``data/warehouse.duckdb``); BI tools read the serving copy
(``data/serving/warehouse.duckdb``), so they never hold the pipeline's write lock and the pipeline never waits for
them. At the end of a run the warehouse is checkpointed and closed, then copied into a staging folder beside the
serving copy (same filesystem). The copy gets a manifest, ``serving.publication`` (the run, the time and every table's
row count), is closed, flushed to disk and renamed onto the serving path with ``os.replace``. A reader that opens the
serving path gets the old file or the new one, whole; a reader that already has the old file open keeps reading it
(POSIX keeps a replaced file alive while it is open). Staging folders a killed run left behind are removed by the
next publication, under a lock file, so two publications never remove each other's staging folder.

The serving file has the warehouse's file name because DuckDB names a database's catalog after its file, and views
refer to it (dbt's staging views read ``warehouse.raw.<source>``); the staging copy keeps that name too, inside its
own staging folder, so its views can be checked before it is published.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from dagster_twins.warehouse.sql import quote_ident
from dagster_twins.warehouse.tables import connect

MANIFEST_SCHEMA = "serving"
MANIFEST_TABLE = "publication"
MANIFEST = f"{MANIFEST_SCHEMA}.{MANIFEST_TABLE}"
STAGING_PREFIX = ".publishing-"  # staging folders inside the serving folder
LOCK_FILE = ".publish.lock"

# One row per published table; run_id, published_at and source_path repeat on every row, so a reader gets the whole
# manifest with one query and checks each table's count against it.
MANIFEST_DDL = f"""
create or replace table {MANIFEST} (
    run_id varchar not null,          -- the run that published this copy
    published_at timestamp not null,  -- when, in UTC
    source_path varchar not null,     -- the warehouse file it was copied from
    table_schema varchar not null,
    table_name varchar not null,
    row_count bigint not null         -- the table's rows in this copy
)"""


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def _qualified(schema: str, name: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def published_tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(schema, table) of every base table of the connection's database but the manifest itself."""
    return [tuple(row) for row in con.execute(
        "select schema_name, table_name from duckdb_tables() where database_name = current_database() "
        "and not temporary and not (schema_name = ? and table_name = ?) order by 1, 2",
        [MANIFEST_SCHEMA, MANIFEST_TABLE]).fetchall()]


def broken_views(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Views that do not bind in this database (schema.view -> the error); binding reads no rows."""
    views = con.execute("select schema_name, view_name from duckdb_views() where database_name = current_database() "
                        "and not internal and not temporary order by 1, 2").fetchall()
    broken = {}
    for schema, name in views:
        try:
            con.execute(f"select * from {_qualified(schema, name)} limit 0").fetchall()
        except duckdb.Error as error:
            broken[f"{schema}.{name}"] = str(error).splitlines()[0]
    return broken


def view_count(con: duckdb.DuckDBPyConnection) -> int:
    return int(con.execute("select count(*) from duckdb_views() where database_name = current_database() "
                           "and not internal and not temporary").fetchone()[0])


@contextmanager
def _publication_lock(folder: Path) -> Iterator[None]:
    """One publication at a time per serving folder (released by the kernel if the process dies)."""
    with open(folder / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_leftovers(folder: Path) -> list[str]:
    """Remove the staging folders (and files) of publications that never finished; call under the lock."""
    removed = []
    for entry in sorted(folder.glob(STAGING_PREFIX + "*")):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry.name)
    return removed


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_manifest(con: duckdb.DuckDBPyConnection, run_id: str, published_at: datetime,
                    source: Path) -> list[tuple[str, str, int]]:
    tables = [(schema, name, int(con.execute(f"select count(*) from {_qualified(schema, name)}").fetchone()[0]))
              for schema, name in published_tables(con)]
    con.execute(f"create schema if not exists {MANIFEST_SCHEMA}")
    con.execute(MANIFEST_DDL)
    con.executemany(f"insert into {MANIFEST} values (?, ?, ?, ?, ?, ?)",
                    [[run_id, published_at, str(source), schema, name, rows] for schema, name, rows in tables])
    return tables


def publish_serving_copy(warehouse_path: Path | str, serving_path: Path | str, run_id: str) -> dict:
    """Copy the warehouse to ``serving_path`` with a manifest, atomically; returns what was published: path, bytes,
    seconds, run_id, published_at, tables (schema, table, rows), views, broken_views, removed_leftovers.

    The warehouse must not be open elsewhere (it is opened read-write to checkpoint it, as any step of a run does).
    """
    started = time.perf_counter()
    warehouse_path, serving_path = Path(warehouse_path).resolve(), Path(serving_path).resolve()
    if not warehouse_path.is_file():
        raise FileNotFoundError(f"no warehouse at {warehouse_path}")
    if serving_path.name != warehouse_path.name:
        raise ValueError(f"the serving copy must have the warehouse's file name ({warehouse_path.name}, not "
                         f"{serving_path.name}): DuckDB names the catalog after the file and views refer to it")
    if serving_path.parent == warehouse_path.parent:
        raise ValueError(f"the serving copy needs its own folder, not the warehouse's ({warehouse_path.parent})")
    folder = serving_path.parent
    folder.mkdir(parents=True, exist_ok=True)

    with _publication_lock(folder):
        removed = remove_leftovers(folder)
        # Checkpoint: every committed change moves from the write-ahead log into the file, which is then complete.
        con = connect(warehouse_path)
        try:
            con.execute("checkpoint")
        finally:
            con.close()
        before = warehouse_path.stat()
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
        try:
            staged = staging / serving_path.name
            shutil.copyfile(warehouse_path, staged)
            after = warehouse_path.stat()
            changed = (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns)
            if changed or _wal(warehouse_path).exists():
                raise RuntimeError(f"{warehouse_path} changed while it was copied: another process writes to it")
            published_at = datetime.now(UTC).replace(tzinfo=None)
            con = connect(staged)
            try:
                tables = _write_manifest(con, run_id, published_at, warehouse_path)
                views, broken = view_count(con), broken_views(con)
                con.execute("checkpoint")
            finally:
                con.close()
            if _wal(staged).exists():
                raise RuntimeError(f"{staged} kept a write-ahead log after closing")
            _fsync(staged)
            os.replace(staged, serving_path)
            _fsync(folder, directory=True)  # the rename itself survives a crash
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    return {
        "path": str(serving_path),
        "bytes": serving_path.stat().st_size,
        "seconds": round(time.perf_counter() - started, 2),
        "run_id": run_id,
        "published_at": published_at.isoformat(),
        "tables": [{"table_schema": s, "table_name": n, "row_count": rows} for s, n, rows in tables],
        "views": views,
        "broken_views": broken,
        "removed_leftovers": removed,
    }


def read_publication(con: duckdb.DuckDBPyConnection) -> tuple[str, dict[str, int]]:
    """The run that published the copy behind ``con`` and its manifest: schema.table -> row count."""
    rows = con.execute(f"select run_id, table_schema, table_name, row_count from {MANIFEST}").fetchall()
    runs = {row[0] for row in rows}
    if len(runs) != 1:
        raise ValueError(f"{MANIFEST} names {len(runs)} runs, expected one")
    return runs.pop(), {f"{schema}.{name}": int(count) for _, schema, name, count in rows}


def verify_serving_copy(serving_path: Path | str) -> dict:
    """Open the serving copy read-only and compare it with its manifest: ok, run_id, published_at, tables checked,
    mismatched (table -> (manifest, actual)), missing (in the manifest, not in the copy), unlisted (the reverse),
    broken_views, and error (why the copy could not be read at all, or None)."""
    out = {"ok": False, "path": str(serving_path), "run_id": None, "published_at": None, "tables": 0,
           "mismatched": {}, "missing": [], "unlisted": [], "broken_views": {}, "error": None}
    try:
        con = connect(Path(serving_path), read_only=True)
    except duckdb.Error as error:
        out["error"] = f"cannot open read-only: {error}"
        return out
    try:
        try:
            out["run_id"], manifest = read_publication(con)
        except (duckdb.Error, ValueError) as error:
            out["error"] = f"no readable manifest: {error}"
            return out
        out["published_at"] = str(con.execute(f"select max(published_at) from {MANIFEST}").fetchone()[0])
        present = {f"{schema}.{name}": (schema, name) for schema, name in published_tables(con)}
        out["missing"] = sorted(set(manifest) - set(present))
        out["unlisted"] = sorted(set(present) - set(manifest))
        for table in sorted(set(manifest) & set(present)):
            actual = int(con.execute(f"select count(*) from {_qualified(*present[table])}").fetchone()[0])
            if actual != manifest[table]:
                out["mismatched"][table] = (manifest[table], actual)
        out["tables"] = len(manifest)
        out["broken_views"] = broken_views(con)
    finally:
        con.close()
    out["ok"] = not (out["mismatched"] or out["missing"] or out["unlisted"] or out["broken_views"])
    return out
