"""Column schemas and row counts in the Dagster UI, read from the warehouse's own catalog: the shared helper on a
small DuckDB, and every Python-layer table and dbt model of the built demo described as the warehouse holds it."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest

from dagster_twins.layers import DBT_SCHEMAS, layer_of
from dagster_twins.metadata import column_schema, table_metadata


@pytest.fixture
def con():
    con = duckdb.connect()
    con.execute("create schema twins")
    con.execute("create table twins.t (user_id varchar not null, p double, n bigint, day date)")
    con.execute("comment on column twins.t.p is 'a probability'")
    con.execute("insert into twins.t values ('a', 0.5, 1, date '2026-01-01'), ('b', null, 2, null)")
    con.execute("create view twins.v as select user_id, n * 2 as n2 from twins.t")
    yield con
    con.close()


def test_the_schema_is_the_tables_own(con):
    schema = column_schema(con, "twins.t", descriptions={"n": "a count"})
    assert [(c.name, c.type) for c in schema.columns] == [("user_id", "VARCHAR"), ("p", "DOUBLE"),
                                                          ("n", "BIGINT"), ("day", "DATE")]
    assert [c.constraints.nullable for c in schema.columns] == [False, True, True, True]
    assert [c.description for c in schema.columns] == [None, "a probability", "a count", None]
    con.execute("alter table twins.t add column tier varchar")  # a new column shows with no list to edit
    assert column_schema(con, "twins.t").columns[-1].name == "tier"


def test_tables_are_counted_views_are_not(con):
    table = table_metadata(con, dg.AssetKey(["twins", "t"]), row_count=True)
    assert table["dagster/row_count"] == 2 and table["dagster/table_name"] == "twins.t"
    view = table_metadata(con, "twins.v", row_count=True)
    assert "dagster/row_count" not in view
    assert [(c.name, c.type) for c in view["dagster/column_schema"].columns] == [("user_id", "VARCHAR"),
                                                                                ("n2", "BIGINT")]
    assert table_metadata(con, "twins.nothing") == {}
    with pytest.raises(ValueError, match="no table or view twins.nothing"):
        column_schema(con, "twins.nothing")


def _warehouse_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    schema, name = table.split(".")
    return con.execute("select column_name, data_type from duckdb_columns() where schema_name = ? and "
                       "table_name = ? order by column_index", [schema, name]).fetchall()


def test_every_table_of_the_demo_shows_its_columns(built):
    settings, result, _ = built
    shown = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        shown[materialization.asset_key] = materialization.metadata
    python_layers = {k: m for k, m in shown.items() if layer_of(k.path) in ("twins", "churn", "simulation")}
    dbt_models = {k: m for k, m in shown.items() if k.path[0] in DBT_SCHEMAS}
    assert len(python_layers) >= 8 and len(dbt_models) >= 15
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        tables = {f"{s}.{t}" for s, t in con.execute("select schema_name, table_name from duckdb_tables()").fetchall()}
        views = {f"{s}.{t}" for s, t in con.execute("select schema_name, view_name from duckdb_views()").fetchall()}
        missing = {k for k, m in {**python_layers, **dbt_models}.items() if "dagster/column_schema" not in m}
        # only a step that wrote no rows and so created no table (on 300 users: no per-user campaign effects)
        assert all(".".join(k.path) not in tables | views and python_layers[k]["dagster/row_count"].value == 0
                   for k in missing), missing
        assert len(missing) <= 2
        for key, metadata in {k: m for k, m in {**python_layers, **dbt_models}.items() if k not in missing}.items():
            table = metadata["dagster/table_name"].value
            columns = [(c.name, c.type) for c in metadata["dagster/column_schema"].schema.columns]
            assert columns == _warehouse_columns(con, table), key
        for key, metadata in dbt_models.items():
            table = ".".join(key.path)
            if table in tables:  # dbt's tables carry their row count; views are not run to count them
                count = con.execute(f"select count(*) from {table}").fetchone()[0]
                assert metadata["dagster/row_count"].value == count, key
            else:
                assert "dagster/row_count" not in metadata, key
    finally:
        con.close()
    # the dbt YAML's column descriptions stay beside the warehouse's types
    users = {c.name: c for c in dbt_models[dg.AssetKey(["marts", "dim_users"])]["dagster/column_schema"]
             .schema.columns}
    assert users["user_id"].description and users["user_id"].type == "VARCHAR"
