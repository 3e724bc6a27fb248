"""The ``raw`` schema: one table per contract source plus quarantine, conflicts, load log and file index."""

from __future__ import annotations

import duckdb

from dagster_twins.contract import (
    CONFLICTS_TABLE,
    FILE_INDEX_TABLE,
    LOAD_LOG_TABLE,
    QUARANTINE_TABLE,
    RAW_SCHEMA,
    SOURCES,
    SQL_TYPES,
    SourceContract,
)
from dagster_twins.warehouse.sql import quote_ident

QUARANTINE_DDL = f"""
create table if not exists {RAW_SCHEMA}.{QUARANTINE_TABLE} (
    source varchar not null,
    source_file varchar not null,
    source_line bigint,
    reason varchar not null,
    record varchar,
    landing_date date not null,
    loaded_at timestamp not null
)"""

LOAD_LOG_DDL = f"""
create table if not exists {RAW_SCHEMA}.{LOAD_LOG_TABLE} (
    load_id varchar not null,
    source varchar not null,
    source_file varchar not null,
    landing_date date not null,
    rows_read bigint not null,
    rows_loaded bigint not null,
    rows_duplicate bigint not null,
    rows_quarantined bigint not null,
    loaded_at timestamp not null,
    status varchar,
    message varchar,
    rows_conflicting bigint
)"""
# Columns the load log gained after its first release (added to older warehouses by ensure_raw_schema).
# status: loaded | refused (the file could not be read: one quarantine row says why) | skipped (not read: an unknown
# folder, a dangling symlink, ...); message: why, or how the file was read; rows_conflicting: duplicates whose
# content differs from the row kept (recorded in raw.conflicts).
_LOAD_LOG_ADDED = {"status": "varchar", "message": "varchar", "rows_conflicting": "bigint"}

# A key that arrived again with different content: the version kept (the first landing wins) and the one not loaded.
CONFLICTS_DDL = f"""
create table if not exists {RAW_SCHEMA}.{CONFLICTS_TABLE} (
    source varchar not null,
    row_id varchar not null,
    landing_date date not null,
    source_file varchar not null,
    source_line bigint,
    record varchar,
    kept_landing_date date,
    kept_file varchar,
    kept_line bigint,
    kept_record varchar,
    differing_columns varchar,
    loaded_at timestamp not null
)"""

FILE_INDEX_DDL = f"""
create table if not exists {RAW_SCHEMA}.{FILE_INDEX_TABLE} (
    source varchar not null,
    source_file varchar not null,
    size_bytes bigint not null,
    modified_ns bigint not null,
    landing_date date not null
)"""


def raw_table(source: str) -> str:
    return f"{RAW_SCHEMA}.{quote_ident(source)}"


def raw_table_ddl(contract: SourceContract) -> str:
    cols = [f"{quote_ident(c.name)} {SQL_TYPES[c.type]}" for c in contract.columns]
    cols += [
        "_row_id varchar not null",
        "_source_file varchar not null",
        "_source_line bigint",
        "_landing_date date not null",
        "_loaded_at timestamp not null",
    ]
    return f"create table if not exists {raw_table(contract.name)} (\n    " + ",\n    ".join(cols) + "\n)"


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every raw table, even for sources with no files, so dbt always finds its sources."""
    con.execute(f"create schema if not exists {RAW_SCHEMA}")
    for contract in SOURCES.values():
        con.execute(raw_table_ddl(contract))
        _migrate_types(con, contract)
    con.execute(QUARANTINE_DDL)
    con.execute(LOAD_LOG_DDL)
    for name, type_ in _LOAD_LOG_ADDED.items():
        con.execute(f"alter table {RAW_SCHEMA}.{LOAD_LOG_TABLE} add column if not exists {name} {type_}")
    con.execute(CONFLICTS_DDL)
    con.execute(FILE_INDEX_DDL)


def _migrate_types(con: duckdb.DuckDBPyConnection, contract: SourceContract) -> None:
    """A warehouse made before money became DECIMAL(18, 2): retype those columns (their doubles round to the cent).
    dbt's incremental marts keep their old types until a full refresh (docs/reliability.md)."""
    types = dict(con.execute(
        "select column_name, data_type from information_schema.columns where table_schema = ? and table_name = ?",
        [RAW_SCHEMA, contract.name]).fetchall())
    for column in contract.columns:
        wanted = SQL_TYPES[column.type].replace(" ", "").upper()
        if column.name in types and types[column.name].replace(" ", "").upper() != wanted:
            con.execute(f"alter table {raw_table(contract.name)} alter column {quote_ident(column.name)} "
                        f"set data type {SQL_TYPES[column.type]}")
