"""What every layer's assets show in the Dagster UI, written one way: tables as Markdown with rounded numbers."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd


def md_table(frame: pd.DataFrame, floatfmt: str = ".3f", index: bool = False, empty: str = "(empty)"
             ) -> dg.MetadataValue:
    """A frame as a Markdown table (numbers rounded by ``floatfmt``), or ``empty`` when it has no rows."""
    return dg.MetadataValue.md(frame.to_markdown(index=index, floatfmt=floatfmt) if len(frame) else empty)


def md_image(path: Path | None, alt: str, missing: str = "(no plot)") -> dg.MetadataValue:
    """A PNG embedded in Markdown as a data URI, so the UI shows the plot itself (a path would only name a file
    on the machine that ran the step); ``missing`` when there is no plot."""
    if path is None or not Path(path).exists():
        return dg.MetadataValue.md(missing)
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{data})\n\n`{path}`")


def rounded(metadata: Mapping[str, Any], digits: int = 4) -> dict[str, Any]:
    """``metadata`` with every plain float rounded to ``digits`` significant places (0.7022376543209876 -> 0.7022)."""
    return {key: float(f"{value:.{digits}g}") if isinstance(value, float) else value
            for key, value in metadata.items()}


def column_schema(con: duckdb.DuckDBPyConnection, table: str,
                  descriptions: Mapping[str, str] | None = None) -> dg.TableSchema:
    """The columns of ``table`` ("schema.name") as the warehouse holds them: names, DuckDB types and nullability in
    the table's order, read from DuckDB's catalog rather than written by hand, so the UI's *Columns* tab never drifts
    from the table. ``descriptions`` (by column name, e.g. from a dbt model's YAML) are kept beside the types."""
    schema, name = table.split(".", 1)
    rows = con.execute(
        "select column_name, data_type, is_nullable, coalesce(comment, '') from duckdb_columns() "
        "where database_name = current_database() and schema_name = ? and table_name = ? order by column_index",
        [schema, name]).fetchall()
    if not rows:
        raise ValueError(f"no table or view {table} in the warehouse")
    descriptions = descriptions or {}
    return dg.TableSchema(columns=[
        dg.TableColumn(column, kind, description=descriptions.get(column) or comment or None,
                       constraints=dg.TableColumnConstraints(nullable=bool(nullable)))
        for column, kind, nullable, comment in rows])


def table_metadata(con: duckdb.DuckDBPyConnection, table: str | dg.AssetKey, row_count: bool = False,
                   descriptions: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What the UI shows of a warehouse table: its column schema and name, and with ``row_count`` its rows if it is
    a table (a view is not counted: that would run it); nothing when there is no such
    table. An asset key names the table of the same schema and name (``twins/user_twins``: ``twins.user_twins``)."""
    table = ".".join(table.path) if isinstance(table, dg.AssetKey) else table
    try:
        out: dict[str, Any] = {"dagster/column_schema": column_schema(con, table, descriptions),
                               "dagster/table_name": table}
    except ValueError:  # a step that wrote no rows may have created no table: nothing to show
        return {}
    schema, name = table.split(".", 1)
    if row_count and con.execute("select count(*) from duckdb_tables() where database_name = current_database() "
                                 "and schema_name = ? and table_name = ?", [schema, name]).fetchone()[0]:
        out["dagster/row_count"] = int(con.sql(f'select count(*) from "{schema}"."{name}"').fetchone()[0])
    return out
