"""The raw tables as a Parquet lake, for dbt on Spark.

Ingestion loads the landing files into DuckDB (schema ``raw``). dbt on Spark reads them from Parquet instead:
``<spark_dir>/lake/raw/<table>/<landing day>_<n>.parquet``, every column (the landing day included) in each file,
over which dbt's on-run-start hook (macro ``register_raw_lake``) declares the Spark tables ``raw.<table>``.

The files of a landing day sit side by side in one folder, not in Hive partition folders: Spark plans and reads a
flat folder of files faster than the same files as metastore partitions (about half the time per scan, and every
staging view scans its table), and the landing day inside each file still lets Parquet statistics skip the days a
query filters out.

A run rewrites the landing days of its window, the only days ingestion changed, plus any day DuckDB has and the
lake lacks (a first export, or a switch of engine), and removes the days DuckDB no longer has; without a window it
rewrites every day. Files are written under hidden names (Spark skips names starting with a dot) and renamed into
place. Timestamps are written as UTC instants (TIMESTAMPTZ), which Spark reads as its TIMESTAMP type.
"""

from __future__ import annotations

import shutil
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb

from dagster_twins.contract import QUARANTINE_TABLE, RAW_LANDING_DATE, RAW_SCHEMA, SOURCE_NAMES
from dagster_twins.warehouse.sql import quote_ident
from dagster_twins.warehouse.tables import table_exists

# The raw tables dbt reads (its sources) and each one's landing-day column.
LAKE_TABLES: dict[str, str] = {**{name: RAW_LANDING_DATE for name in SOURCE_NAMES}, QUARANTINE_TABLE: "landing_date"}


def lake_dir(spark_dir: Path) -> Path:
    """The raw tables' Parquet folder under the Spark folder (dbt's macro register_raw_lake uses the same path)."""
    return spark_dir / "lake" / RAW_SCHEMA


@dataclass
class LakeExport:
    days_written: dict[str, int] = field(default_factory=dict)  # table -> landing days (re)written
    days_removed: dict[str, int] = field(default_factory=dict)  # table -> landing days no longer in DuckDB
    rows_written: dict[str, int] = field(default_factory=dict)


def _day_files(table_dir: Path) -> dict[date, list[Path]]:
    """The lake's files of a table by landing day (``<YYYY-MM-DD>_<n>.parquet``)."""
    out: dict[date, list[Path]] = defaultdict(list)
    for path in table_dir.glob("*.parquet"):
        if not path.name.startswith("."):
            out[date.fromisoformat(path.name[:10])].append(path)
    return out


def _select_list(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """Every column, timestamps as UTC instants (the connection runs in UTC)."""
    cols = con.execute(
        "select column_name, data_type from information_schema.columns where table_schema = ? and table_name = ? "
        "order by ordinal_position", [RAW_SCHEMA, table]).fetchall()
    return ", ".join(
        f"cast({quote_ident(name)} as timestamptz) as {quote_ident(name)}" if dtype == "TIMESTAMP"
        else quote_ident(name)
        for name, dtype in cols
    )


def export_raw_lake(con: duckdb.DuckDBPyConnection, spark_dir: Path,
                    window: tuple[date, date] | None = None) -> LakeExport:
    """Writes DuckDB's raw tables to the lake: the landing days in ``window`` ([start, end)) and the days the lake
    lacks, or every day when ``window`` is None; removes lake days DuckDB does not have."""
    root = lake_dir(spark_dir)
    result = LakeExport()
    for table, column in LAKE_TABLES.items():
        table_dir = root / table
        table_dir.mkdir(parents=True, exist_ok=True)
        in_lake = _day_files(table_dir)
        in_duckdb: set[date] = set()
        if table_exists(con, RAW_SCHEMA, table):
            in_duckdb = {row[0] for row in con.execute(
                f"select distinct {quote_ident(column)} from {RAW_SCHEMA}.{quote_ident(table)}").fetchall()}
        if window is None:
            to_write = in_duckdb
        else:
            to_write = {d for d in in_duckdb if window[0] <= d < window[1]} | (in_duckdb - in_lake.keys())
        gone = in_lake.keys() - in_duckdb
        for day in gone:
            for path in in_lake[day]:
                path.unlink()
        result.days_removed[table] = len(gone)
        result.days_written[table] = len(to_write)
        result.rows_written[table] = 0
        if not to_write:
            continue
        # One pass over the table: DuckDB writes a folder per day (keeping the day column in the files) into a
        # hidden staging folder; each day's files then replace the lake's.
        staging = table_dir / f".export-{uuid.uuid4().hex}"
        try:
            days = ", ".join(f"date '{d.isoformat()}'" for d in sorted(to_write))
            query = (f"select {_select_list(con, table)} from {RAW_SCHEMA}.{quote_ident(table)} "
                     f"where {quote_ident(column)} in ({days})")
            copied = con.execute(f"copy ({query}) to '{staging}' (format parquet, "
                                 f"partition_by ({quote_ident(column)}), write_partition_columns true)").fetchone()
            result.rows_written[table] = int(copied[0])
            prefix = f"{column}="
            for folder in staging.iterdir():
                day = date.fromisoformat(folder.name[len(prefix):])
                for old in in_lake.get(day, []):
                    old.unlink()
                for n, written in enumerate(sorted(folder.glob("*.parquet"))):
                    written.rename(table_dir / f"{day.isoformat()}_{n}.parquet")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return result
