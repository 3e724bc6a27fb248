"""Plain-text summaries of what is in the warehouse, for the command line."""

from __future__ import annotations

from pathlib import Path

from dagster_twins.warehouse.tables import connect


def warehouse_table_counts(path: Path) -> list[tuple[str, str, int]]:
    con = connect(path, read_only=True)
    try:
        tables = con.execute(
            "select schema_name, table_name from duckdb_tables() where database_name = current_database() "
            "order by schema_name, table_name"
        ).fetchall()
        return [
            (schema, table, int(con.execute(f'select count(*) from "{schema}"."{table}"').fetchone()[0]))
            for schema, table in tables
        ]
    finally:
        con.close()


def print_warehouse_summary(path: Path) -> None:
    print(f"\nWarehouse: {path}")
    for schema, table, rows in warehouse_table_counts(path):
        print(f"  {schema + '.' + table:<45} {rows:>12,} rows")
