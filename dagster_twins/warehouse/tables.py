"""Tables in the DuckDB warehouse: the connection every layer opens, and writes that replace a run's own rows."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from dagster_twins.warehouse.sql import quote_ident

DEFAULT_MEMORY_LIMIT = "3GB"  # TWINS_DUCKDB_MEMORY_LIMIT; dbt's profile reads the same variable


def connect(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection in UTC with no network access (no extension downloads)."""
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(
        str(path),
        read_only=read_only,
        # A memory cap makes DuckDB spill to disk instead of growing to 80% of RAM (its default).
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": True,
                "memory_limit": os.environ.get("TWINS_DUCKDB_MEMORY_LIMIT", DEFAULT_MEMORY_LIMIT)},
    )
    con.execute("set TimeZone = 'UTC'")
    return con


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(con.execute("select count(*) from duckdb_tables() where schema_name = ? and table_name = ?",
                            [schema, table]).fetchone()[0])


def replace_rows(con: duckdb.DuckDBPyConnection, schema: str, table: str, frame, where: dict | None = None) -> None:
    """Write ``frame`` into ``schema.table`` (created from the frame when absent), first deleting the rows that
    match ``where`` (column -> value; None: every row), so a re-run replaces its own rows and no others. An empty
    frame only deletes (it does not create a table: its columns carry no types)."""
    con.execute(f"create schema if not exists {quote_ident(schema)}")
    name = f"{quote_ident(schema)}.{quote_ident(table)}"
    if frame.empty and not table_exists(con, schema, table):
        return
    con.register("_rows_frame", frame)
    try:
        if where is None or not table_exists(con, schema, table):
            con.execute(f"create or replace table {name} as select * from _rows_frame")
            return
        clause = " and ".join(f"{quote_ident(c)} = ?" for c in where) or "1 = 1"
        con.execute(f"delete from {name} where {clause}", list(where.values()))
        add_new_columns(con, name, "_rows_frame")
        con.execute(f"insert into {name} by name select * from _rows_frame")
    finally:
        con.unregister("_rows_frame")


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

    def write(self, frame) -> None:
        if frame.empty:
            return
        if self.rows == 0:
            replace_rows(self.con, self.schema, self.table, frame, self.where)
        else:
            self.con.register("_rows_frame", frame)
            try:
                self.con.execute(f"insert into {quote_ident(self.schema)}.{quote_ident(self.table)} by name "
                                 "select * from _rows_frame")
            finally:
                self.con.unregister("_rows_frame")
        self.rows += len(frame)

    def finish(self) -> int:
        if self.rows == 0 and table_exists(self.con, self.schema, self.table):
            clause = " and ".join(f"{quote_ident(c)} = ?" for c in (self.where or {})) or "1 = 1"
            self.con.execute(f"delete from {quote_ident(self.schema)}.{quote_ident(self.table)} where {clause}",
                             list((self.where or {}).values()))
        return self.rows
