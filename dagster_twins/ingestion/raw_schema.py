"""The ``raw`` schema: one table per contract source plus quarantine, load log and file index."""

from __future__ import annotations

import duckdb

from dagster_twins.contract import (
    FILE_INDEX_TABLE,
    LOAD_LOG_TABLE,
    QUARANTINE_TABLE,
    RAW_SCHEMA,
    SOURCES,
    SourceContract,
)
from dagster_twins.warehouse.sql import quote_ident

_SQL_TYPES = {"string": "varchar", "timestamp": "timestamp", "double": "double"}

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
    cols = [f"{quote_ident(c.name)} {_SQL_TYPES[c.type]}" for c in contract.columns]
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
    con.execute(QUARANTINE_DDL)
    con.execute(LOAD_LOG_DDL)
    con.execute(FILE_INDEX_DDL)
