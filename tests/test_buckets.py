"""The Python assets read and fold users a bucket at a time: 16 buckets give what 1 bucket gives."""

from __future__ import annotations

from dataclasses import replace

import dagster as dg
import duckdb
import pandas as pd
import pytest

from dagster_twins.jobs import FRESHNESS_CHECK
from dagster_twins.pipeline import run_pipeline
from dagster_twins.warehouse.buckets import DuckDBReader, bucket_count, to_frame
from tests.tables import assert_same_table, read_sorted

# Every table the twins, churn and simulation layers write per user, with its key.
TABLES = {
    "twins.belief_state": ["as_of", "user_id", "belief", "category"],
    "twins.user_beliefs": ["user_id", "belief", "category"],
    "twins.user_twins": ["user_id"],
    "twins.belief_priors": ["belief", "category"],
    "churn.churn_predictions": ["user_id"],
    "churn.scored_user_covariates": ["user_id"],
    "simulation.scenario_user_effects": ["scenario", "user_id"],
    "simulation.scenario_results": ["scenario"],
}


def test_sixteen_buckets_equal_one(built, built_copy):
    settings, built_result, _ = built
    one_bucket_verdicts = {(e.asset_key, e.check_name): e.passed for e in built_result.get_asset_check_evaluations()}
    local, demo = built_copy
    bucketed = replace(local, user_buckets=16)
    for layer in ("twins", "churn", "simulation"):
        result = run_pipeline(bucketed, demo.start_date, demo.end_date, layer=layer,
                              instance=dg.DagsterInstance.ephemeral())
        assert result.success
        if layer == "twins":
            # The twins layer's beliefs (its purchase asset, which comes first, reports no buckets).
            metadata = next(e.materialization.metadata for e in result.get_asset_materialization_events()
                            if "user_buckets" in e.materialization.metadata)
            assert metadata["user_buckets"].value == 16
            assert metadata["mode"].value == "full rebuild"
        # Every check comes out as it did with one bucket (the tiny demo's churn backtest may miss its floor).
        # A layer's run also evaluates its freshness checks (the whole pipeline's job leaves them to their sensor).
        verdicts = {(e.asset_key, e.check_name): e.passed for e in result.get_asset_check_evaluations()
                    if e.check_name != FRESHNESS_CHECK}
        assert verdicts and verdicts.items() <= one_bucket_verdicts.items()
    for table, key in TABLES.items():
        one, sixteen = read_sorted(settings.warehouse_path, table, key), read_sorted(local.warehouse_path, table, key)
        assert_same_table(one, sixteen, table)


def test_buckets_partition_the_users(built):
    """Every user lands in exactly one bucket, and the buckets of two tables agree on who is where."""
    settings = built[0]
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        reader = DuckDBReader(con)
        users = reader.table_frame("marts.dim_users", ["user_id"])["user_id"]
        seen: list[str] = []
        for b in range(7):
            in_dim = set(reader.table_frame("marts.dim_users", ["user_id"], bucket=(b, 7))["user_id"])
            in_facts = set(reader.table_frame("marts.fct_events", ["distinct user_id"], bucket=(b, 7))["user_id"])
            assert in_facts <= in_dim
            seen += sorted(in_dim)
        assert sorted(seen) == sorted(users)
    finally:
        con.close()


@pytest.mark.parametrize(("users", "configured", "expected"), [(0, 0, 1), (50_000, 0, 1), (50_001, 0, 2),
                                                               (1_000_000, 0, 20), (10, 16, 16)])
def test_bucket_count(users, configured, expected):
    assert bucket_count(users, configured) == expected


def test_frames_have_the_same_types_from_either_engine():
    """Spark hands over timestamps with a time zone, decimals and large strings; DuckDB does not."""
    import pyarrow as pa

    spark_like = pa.table({
        "at": pa.array([0], pa.timestamp("us", tz="UTC")), "day": pa.array([0], pa.date32()),
        "x": pa.array([1], pa.decimal128(10, 2)), "s": pa.array(["a"], pa.large_string()),
    })
    duck_like = pa.table({
        "at": pa.array([0], pa.timestamp("us")), "day": pa.array([0], pa.timestamp("us")),
        "x": pa.array([1.0], pa.float64()), "s": pa.array(["a"], pa.string()),
    })
    pd.testing.assert_frame_equal(to_frame(spark_like), to_frame(duck_like))
    assert str(to_frame(spark_like)["at"].dtype) == "datetime64[us]"
