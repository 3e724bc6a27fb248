"""The parallel rebuild job: bucket steps in separate processes (Dagster's multiprocess executor) write the same
twins as the twins asset folding everything in one process."""

from __future__ import annotations

import os

import dagster as dg

from dagster_twins.settings import Settings
from tests.tables import assert_same_table, read_sorted

KEYS = {"twins.user_beliefs": ["user_id", "belief", "category"], "twins.user_twins": ["user_id"],
        "twins.belief_priors": ["belief", "category"]}
# Two buckets are two step processes per stage, which is what the property needs (each step process imports the
# project and builds its definitions: about as long as a bucket's work on the small demo, so four cost twice as much).
BUCKETS = 2


def rebuild_job() -> dg.JobDefinition:
    """Module-level, so Dagster can rebuild the job in each step's process (from TWINS_* in the environment)."""
    from dagster_twins.location import build_definitions

    return build_definitions(Settings.from_env()).resolve_job_def("twins_rebuild_parallel")


def test_parallel_rebuild_in_processes_equals_the_asset(built, built_copy, tmp_path, monkeypatch):
    settings = built[0]
    local, _ = built_copy
    monkeypatch.setenv("TWINS_WAREHOUSE", str(local.warehouse_path))
    monkeypatch.setenv("TWINS_LANDING_DIR", str(local.landing_dir))
    work = tmp_path / "work"
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        result = dg.execute_job(dg.reconstructable(rebuild_job), instance=instance, run_config={"ops": {
            name: {"config": {"buckets": BUCKETS, "work_dir": str(work), "keep_work_dir": True}}
            for name in ("extract_buckets", "load_twins")}})
        assert result.success
        steps = {e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS"}
        assert sum(s.startswith("fold_bucket[") for s in steps) == BUCKETS
        assert sum(s.startswith("summarize_bucket[") for s in steps) == BUCKETS
        # Each step ran in a process of its own (the multiprocess executor), not in the test's process.
        pids = {e.pid for e in result.all_events
                if e.event_type_value == "STEP_SUCCESS" and e.step_key.startswith("fold_bucket[")}
        assert len(pids) == BUCKETS and os.getpid() not in pids
        materialized = {e.asset_key for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
        assert materialized == {dg.AssetKey(["twins", "user_beliefs"]), dg.AssetKey(["twins", "user_twins"])}
    assert len(list(work.glob("state_*.parquet"))) == BUCKETS
    for table, key in KEYS.items():
        assert_same_table(read_sorted(settings.warehouse_path, table, key).drop(columns="as_of", errors="ignore"),
                          read_sorted(local.warehouse_path, table, key).drop(columns="as_of", errors="ignore"), table)
