"""The serving copy for BI tools: published whole and atomically, readable while a run writes the warehouse, and a
reader never blocks the run nor sees a mix of two publications."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from dagster_twins.serving.assets import CHECK_NAME, SERVING_KEY
from dagster_twins.serving.publish import (
    LOCK_FILE,
    MANIFEST,
    STAGING_PREFIX,
    publish_serving_copy,
    read_publication,
    verify_serving_copy,
)

# Tables a reader counts and compares with the manifest of the copy it has open.
TABLES = ["twins.user_twins", "churn.churn_predictions", "marts.fct_events",
          "marts.fct_user_daily_features", "simulation.scenario_policy_ranking"]
VIEWS = ["twins.user_beliefs", "twins.belief_explanations", "simulation.user_segment_base", "staging.stg_events"]


def _counts(con: duckdb.DuckDBPyConnection, tables: list[str]) -> dict[str, int]:
    return {t: int(con.execute(f"select count(*) from {t}").fetchone()[0]) for t in tables}


def _serving_folder_entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_publish_copies_the_warehouse_whole_with_a_manifest_and_replaces_it_atomically(built_copy):
    settings, _ = built_copy
    serving = settings.serving_file
    assert serving == settings.warehouse_path.parent / "serving" / "warehouse.duckdb"
    # What a killed publication leaves behind: a staging folder with a half-written copy, and a stray file.
    (serving.parent / f"{STAGING_PREFIX}killed").mkdir(parents=True)
    (serving.parent / f"{STAGING_PREFIX}killed" / "warehouse.duckdb").write_bytes(b"half a database")
    (serving.parent / f"{STAGING_PREFIX}stray").write_bytes(b"")

    first = publish_serving_copy(settings.warehouse_path, serving, "first")
    assert sorted(first["removed_leftovers"]) == [f"{STAGING_PREFIX}killed", f"{STAGING_PREFIX}stray"]
    assert _serving_folder_entries(serving.parent) == {"warehouse.duckdb", LOCK_FILE}
    assert first["bytes"] == serving.stat().st_size and first["broken_views"] == {}
    published = {f"{t['table_schema']}.{t['table_name']}": t["row_count"] for t in first["tables"]}
    assert set(TABLES) <= set(published) and MANIFEST not in published

    verified = verify_serving_copy(serving)
    assert verified["ok"], verified
    assert verified["run_id"] == "first" and verified["tables"] == len(published)

    con = duckdb.connect(str(serving), read_only=True)
    try:
        run_id, manifest = read_publication(con)
        assert run_id == "first" and manifest == published
        assert _counts(con, list(manifest)) == manifest
        # Views work in the copy: the twins' and simulation's views, and dbt's, which name the catalog "warehouse".
        assert all(n > 0 for n in _counts(con, VIEWS).values())
        with pytest.raises(duckdb.Error):
            con.execute("create table main.scribble (a integer)")
    finally:
        con.close()
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as source:
        assert _counts(source, TABLES) == {t: published[t] for t in TABLES}

    # The warehouse changes; a reader holds the first copy open while the second is published.
    with duckdb.connect(str(settings.warehouse_path)) as writer:
        writer.execute("delete from twins.user_twins where user_id in (select user_id from twins.user_twins limit 5)")
    held = duckdb.connect(str(serving), read_only=True)
    first_inode = serving.stat().st_ino
    try:
        second = publish_serving_copy(settings.warehouse_path, serving, "second")
        assert second["removed_leftovers"] == []
        assert serving.stat().st_ino != first_inode  # a new file took the name; the old one lives on for `held`
        run_id, manifest = read_publication(held)
        assert run_id == "first" and _counts(held, TABLES) == {t: manifest[t] for t in TABLES}
    finally:
        held.close()
    assert _serving_folder_entries(serving.parent) == {"warehouse.duckdb", LOCK_FILE}
    verified = verify_serving_copy(serving)
    assert verified["ok"] and verified["run_id"] == "second"
    with duckdb.connect(str(serving), read_only=True) as con:
        run_id, manifest = read_publication(con)
        assert manifest["twins.user_twins"] == published["twins.user_twins"] - 5
        assert _counts(con, list(manifest)) == manifest


def test_publish_refuses_a_serving_path_that_would_break_views_or_overwrite_the_warehouse(built_copy):
    settings, _ = built_copy
    with pytest.raises(ValueError, match="file name"):
        publish_serving_copy(settings.warehouse_path, settings.warehouse_path.parent / "bi" / "serving.duckdb", "x")
    with pytest.raises(ValueError, match="own folder"):
        publish_serving_copy(settings.warehouse_path, settings.warehouse_path, "x")
    assert verify_serving_copy(settings.warehouse_path.parent / "nowhere" / "warehouse.duckdb")["ok"] is False


# A BI client in its own process. "loop": a new read-only connection each iteration; "hold": one connection opened
# at the start and kept open across the publication. Every iteration reads the manifest and counts the tables in the
# same connection, and writes one JSON line; errors are recorded, not raised. Stops when the stop file appears.
READER = r"""
import json, os, sys, time, traceback
import duckdb

mode, path, out, stop = sys.argv[1:5]
tables = json.loads(sys.argv[5])

def read(con):
    rows = con.execute("select run_id, table_schema || '.' || table_name, row_count "
                       "from serving.publication").fetchall()
    manifest = {name: count for _, name, count in rows if name in tables}
    counts = {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in tables}
    views = con.execute("select count(*) from twins.belief_explanations").fetchone()[0]
    return sorted({r[0] for r in rows}), manifest, counts, views

with open(out, "w") as sink:
    held = duckdb.connect(path, read_only=True) if mode == "hold" else None
    opened_inode = os.stat(path).st_ino
    i = 0
    while not os.path.exists(stop):
        record = {"i": i, "error": None}
        try:
            if held is not None:
                record["run_ids"], record["manifest"], record["counts"], record["views"] = read(held)
                record["replaced"] = os.stat(path).st_ino != opened_inode
            else:
                con = duckdb.connect(path, read_only=True)
                try:
                    record["run_ids"], record["manifest"], record["counts"], record["views"] = read(con)
                finally:
                    con.close()
        except Exception:
            record["error"] = traceback.format_exc()
        sink.write(json.dumps(record) + "\n")
        sink.flush()
        i += 1
        time.sleep(0.02 if held is None else 0.05)
    if held is not None:
        held.close()
"""


def _records(out: Path) -> list[dict]:
    if not out.exists():
        return []
    lines = out.read_text().splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]  # the last line may be half written


def _wait_for(proc: subprocess.Popen, out: Path, predicate) -> None:
    """Poll the reader's output until ``predicate`` holds for a record; fail if the reader dies first."""
    while not any(predicate(r) for r in _records(out)):
        if proc.poll() is not None:
            pytest.fail(f"reader exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)


def test_readers_in_another_process_see_one_whole_publication_while_a_full_run_writes(built_copy, tmp_path):
    from dagster_twins.pipeline import run_pipeline

    settings, demo = built_copy
    serving = settings.serving_file
    # The old publication differs from what the run will publish, so a reader that mixed the two would see counts
    # that disagree with its manifest: it comes from a copy of the warehouse with a row less in every counted table.
    older = tmp_path / "older" / "warehouse.duckdb"
    older.parent.mkdir()
    shutil.copy(settings.warehouse_path, older)
    with duckdb.connect(str(older)) as con:
        for table in TABLES:
            con.execute(f"delete from {table} where rowid in (select min(rowid) from {table})")
    old_manifest = {t["table_schema"] + "." + t["table_name"]: t["row_count"]
                    for t in publish_serving_copy(older, serving, "old-publication")["tables"]}

    stop = tmp_path / "stop"
    readers = {}
    try:
        for mode in ("loop", "hold"):
            out = tmp_path / f"{mode}.jsonl"
            proc = subprocess.Popen([sys.executable, "-c", READER, mode, str(serving), str(out), str(stop),
                                     json.dumps(TABLES)], stderr=subprocess.PIPE, text=True)
            readers[mode] = (proc, out)
        for proc, out in readers.values():  # both read the old publication before the run starts
            _wait_for(proc, out, lambda r: r["error"] is not None or r["run_ids"] == ["old-publication"])

        result = run_pipeline(settings, demo.start_date, demo.end_date, instance=dg.DagsterInstance.ephemeral(),
                              raise_on_error=False)

        if result.success:  # the looping reader goes on until it has read the new publication
            proc, out = readers["loop"]
            _wait_for(proc, out, lambda r: r["error"] is not None or r["run_ids"] == [result.run_id])
    finally:
        stop.touch()
        for proc, _ in readers.values():
            proc.wait()
    assert result.success, "the run failed while readers were connected to the serving copy"

    loop, hold = (_records(readers[mode][1]) for mode in ("loop", "hold"))
    errors = [r["error"] for r in loop + hold if r["error"]]
    assert not errors, errors[0]
    assert all(proc.returncode == 0 for proc, _ in readers.values())

    # Every iteration saw one publication, whole: its counts are its manifest's.
    for record in loop + hold:
        assert len(record["run_ids"]) == 1 and record["counts"] == record["manifest"], record
    assert {r["run_ids"][0] for r in loop} == {"old-publication", result.run_id}
    new_manifests = [r["manifest"] for r in loop if r["run_ids"] == [result.run_id]]
    assert new_manifests and all(m != old_manifest for m in new_manifests)
    # The connection held open across the publication kept reading the old copy, whole, after the name moved on.
    assert {r["run_ids"][0] for r in hold} == {"old-publication"}
    assert any(r["replaced"] for r in hold) and all(r["manifest"] == {t: old_manifest[t] for t in TABLES}
                                                   for r in hold)

    # The run published last and checked what it published.
    published = [e for e in result.get_asset_materialization_events() if e.asset_key == SERVING_KEY]
    assert len(published) == 1
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations() if e.asset_key == SERVING_KEY}
    assert checks == {CHECK_NAME: True}
    assert verify_serving_copy(serving)["run_id"] == result.run_id
    assert not [p for p in serving.parent.iterdir() if p.name.startswith(STAGING_PREFIX)]
