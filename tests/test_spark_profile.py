"""The Spark profiler's pure parts: dbt's run record broken down by node kind, and the files per table."""

from __future__ import annotations

from dagster_twins.tools.spark_profile import dbt_run_profile, table_files


def test_dbt_run_profile_splits_time_by_node_kind_and_what_is_outside_the_nodes():
    results = {"elapsed_time": 100.0, "args": {"threads": 2}, "results": [
        {"unique_id": "model.p.a", "execution_time": 30.0}, {"unique_id": "model.p.b", "execution_time": 10.0},
        {"unique_id": "test.p.t1", "execution_time": 2.0}, {"unique_id": "test.p.t2", "execution_time": 4.0},
        {"unique_id": "test.p.t3", "execution_time": 3.0}, {"unique_id": "seed.p.s", "execution_time": 1.0}]}
    profile = dbt_run_profile(results)
    assert profile["kinds"]["model"] == {"nodes": 2, "total_seconds": 40.0, "median_seconds": 20.0}
    assert profile["kinds"]["test"] == {"nodes": 3, "total_seconds": 9.0, "median_seconds": 3.0}
    assert profile["kinds"]["seed"]["nodes"] == 1
    # 50 s of node time on two threads: at least 75 s of the 100 s were spent outside any node.
    assert profile["outside_nodes_seconds"] == 75.0 and profile["threads"] == 2
    assert dbt_run_profile({**results, "args": {}}, threads=2) == profile
    assert dbt_run_profile({**results, "args": {}})["outside_nodes_seconds"] == 50.0  # one thread when unknown


def test_table_files_counts_files_and_partitions_per_table(tmp_path):
    table = tmp_path / "warehouse" / "marts.db" / "fct_events"
    for day, parts in (("2026-01-01", 3), ("2026-01-02", 1)):
        (table / f"landing_date={day}").mkdir(parents=True)
        for i in range(parts):
            (table / f"landing_date={day}" / f"part-{i:05d}-x.c000.snappy.parquet").write_bytes(b"x" * 1024)
    (table / "landing_date=2026-01-01" / ".part-00000-x.c000.snappy.parquet.crc").write_bytes(b"c")
    lake = tmp_path / "lake" / "raw" / "users"
    lake.mkdir(parents=True)
    (lake / "2026-01-01_0.parquet").write_bytes(b"x" * 2048)
    files = table_files(tmp_path)
    assert files["marts.fct_events"] == {"files": 4, "partitions": 2, "mean_kb": 1.0}
    assert files["raw.users"] == {"files": 1, "partitions": 0, "mean_kb": 2.0}
