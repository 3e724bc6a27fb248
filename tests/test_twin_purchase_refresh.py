"""``store.refresh_twin_purchases`` rewrites ``twins.user_twins`` with today's purchase columns: a twin with a row in
``user_purchases`` takes its values, a twin without keeps its own, and nothing else about the table changes (rows,
column order and types, the other columns)."""

from __future__ import annotations

import duckdb
import pandas as pd

from dagster_twins.twins import store


def _warehouse() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("create schema twins")
    con.execute("""create table twins.user_twins as select * from (values
        ('u1', timestamp '2026-03-01', 0.10, 'a'),
        ('u2', timestamp '2026-03-02', 0.20, 'b'),
        ('u3', timestamp '2026-03-03', null, 'c'))
        t(user_id, last_updated, p_purchase_30d, top_topic)""")
    return con


def test_twins_take_todays_purchase_columns_and_keep_everything_else():
    con = _warehouse()
    con.execute("""create table twins.user_purchases as select * from (values
        ('u1', timestamp '2026-03-05', 0.55, 3.0),
        ('u3', timestamp '2026-03-05', 0.05, 1.0),
        ('u9', timestamp '2026-03-05', 0.99, 9.0))
        t(user_id, as_of, p_purchase_30d, expected_orders_90d)""")
    types_before = con.execute("describe twins.user_twins").df()[["column_name", "column_type"]]

    store.refresh_twin_purchases(con)

    after = con.execute("select * from twins.user_twins order by user_id").df()
    pd.testing.assert_frame_equal(con.execute("describe twins.user_twins").df()[["column_name", "column_type"]],
                                  types_before)
    assert after["user_id"].tolist() == ["u1", "u2", "u3"]  # no twin added (u9) or lost (u2)
    assert after["p_purchase_30d"].tolist() == [0.55, 0.20, 0.05]  # u2 has no purchase row: kept
    assert after["top_topic"].tolist() == ["a", "b", "c"]
    assert after["last_updated"].dt.day.tolist() == [1, 2, 3]  # the purchases' as_of is not the twin's


def test_without_purchases_the_twins_are_left_alone():
    con = _warehouse()
    before = con.execute("select * from twins.user_twins order by user_id").df()
    store.refresh_twin_purchases(con)
    pd.testing.assert_frame_equal(con.execute("select * from twins.user_twins order by user_id").df(), before)
