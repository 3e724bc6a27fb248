"""Tables in the DuckDB warehouse: the connection every layer opens, and writes that replace a run's own rows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd

from dagster_twins.settings import DEFAULT_MEMORY_LIMIT, default_serving_path
from dagster_twins.warehouse.sql import quote_ident


class WarehouseLocked(RuntimeError):
    """Another process holds the warehouse file (DuckDB allows one writer, and no writer beside a reader). The
    message is one line: the file, the process holding it, and where readers belong instead."""

    def __init__(self, path: Path, holder: str, serving_path: Path | None = None):
        self.path, self.holder = path, holder
        serving = serving_path or default_serving_path(path)
        super().__init__(f"The warehouse {path} is held by {holder}; a run needs it alone: close that connection "
                         f"(readers and BI tools belong on the serving copy, {serving}, which never blocks a run).")


def lock_holder(error: duckdb.Error) -> str | None:
    """The process named in DuckDB's lock error ("... held in /usr/bin/python3 (PID 42) ..."), else None."""
    found = re.search(r"Conflicting lock is held in (.+?) \(PID (\d+)\)", str(error))
    if found:
        return f"process {found.group(2)} ({found.group(1)})"
    return "another process" if "Could not set lock" in str(error) else None


def connect(path: Path, read_only: bool = False, memory_limit: str = DEFAULT_MEMORY_LIMIT) -> duckdb.DuckDBPyConnection:
    """A connection in UTC with no network access (no extension downloads), using at most ``memory_limit``.
    Raises WarehouseLocked when another process holds the file."""
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(
            str(path),
            read_only=read_only,
            config={"autoinstall_known_extensions": False, "autoload_known_extensions": True,
                    "memory_limit": memory_limit},
        )
    except duckdb.IOException as exc:
        holder = lock_holder(exc)
        if holder is None:
            raise
        raise WarehouseLocked(path, holder) from exc
    con.execute("set TimeZone = 'UTC'")
    return con


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(con.execute("select count(*) from duckdb_tables() where schema_name = ? and table_name = ?",
                            [schema, table]).fetchone()[0])


def relation_exists(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    """A table or a view of that name (``twins.user_beliefs`` is a view)."""
    return table_exists(con, schema, name) or bool(con.execute(
        "select count(*) from duckdb_views() where schema_name = ? and view_name = ?", [schema, name]).fetchone()[0])


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, name: str = "_rows_frame") -> Iterator[str]:
    """``frame`` visible to SQL as ``name`` for the block's duration."""
    con.register(name, frame)
    try:
        yield name
    finally:
        con.unregister(name)


def _qualified(schema: str, table: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}"


def _where(where: dict | None) -> tuple[str, list]:
    clause = " and ".join(f"{quote_ident(c)} = ?" for c in (where or {})) or "1 = 1"
    return clause, list((where or {}).values())


def append_rows(con: duckdb.DuckDBPyConnection, schema: str, table: str, frame: pd.DataFrame) -> None:
    """Insert ``frame``'s rows by column name, creating the table from the frame when absent."""
    con.execute(f"create schema if not exists {quote_ident(schema)}")
    with registered(con, frame) as rows:
        if not table_exists(con, schema, table):
            con.execute(f"create table {_qualified(schema, table)} as select * from {rows} limit 0")
        else:
            add_new_columns(con, _qualified(schema, table), rows)
        con.execute(f"insert into {_qualified(schema, table)} by name select * from {rows}")


def delete_rows(con: duckdb.DuckDBPyConnection, schema: str, table: str, where: dict | None = None) -> None:
    """Delete the rows matching ``where`` (column -> value; None: every row), if the table exists."""
    if table_exists(con, schema, table):
        clause, values = _where(where)
        con.execute(f"delete from {_qualified(schema, table)} where {clause}", values)


def replace_rows(con: duckdb.DuckDBPyConnection, schema: str, table: str, frame: pd.DataFrame,
                 where: dict | None = None) -> None:
    """Write ``frame`` into ``schema.table`` (created from the frame when absent), first deleting the rows that
    match ``where`` (column -> value; None: every row), so a re-run replaces its own rows and no others. An empty
    frame only deletes (it does not create a table: its columns carry no types)."""
    con.execute(f"create schema if not exists {quote_ident(schema)}")
    name = _qualified(schema, table)
    if frame.empty and not table_exists(con, schema, table):
        return
    with registered(con, frame) as rows:
        if where is None or not table_exists(con, schema, table):
            con.execute(f"create or replace table {name} as select * from {rows}")
            return
        delete_rows(con, schema, table, where)
        add_new_columns(con, name, rows)
        con.execute(f"insert into {name} by name select * from {rows}")


def add_new_columns(con: duckdb.DuckDBPyConnection, table: str, relation: str) -> None:
    """Columns of ``relation`` the table lacks are added (empty for its existing rows), as dbt's
    ``on_schema_change: append_new_columns`` does: a table kept across runs survives a release that adds a column."""
    have = {row[0] for row in con.execute(f"describe {table}").fetchall()}
    for column, sql_type, *_ in con.execute(f"describe {relation}").fetchall():
        if column not in have:
            con.execute(f"alter table {table} add column {quote_ident(column)} {sql_type}")


class TableRewrite:
    """Replaces a table's rows (those matching ``where``; None: all) with frames written a bucket of users at a
    time: the first non-empty frame replaces, the next ones append. ``finish`` empties the rows when no bucket
    wrote any, so a table never keeps a previous run's rows by accident."""

    def __init__(self, con: duckdb.DuckDBPyConnection, schema: str, table: str, where: dict | None = None):
        self.con, self.schema, self.table, self.where = con, schema, table, where
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        if self.rows == 0:
            replace_rows(self.con, self.schema, self.table, frame, self.where)
        else:
            append_rows(self.con, self.schema, self.table, frame)
        self.rows += len(frame)

    def finish(self) -> int:
        if self.rows == 0:
            delete_rows(self.con, self.schema, self.table, self.where)
        return self.rows
