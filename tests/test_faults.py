"""Fault suite: bad input and crashes never corrupt the warehouse.

Each test writes a few hand-made landing files into ``tmp_path/landing`` (the backfill and crash tests use the
session's small demo instead) and runs the real pipeline (the Dagster job: ingestion, then dbt, and the twins
where they matter) into a temporary warehouse. The invariant checked throughout (``reconcile``): for every file,
as last loaded, rows read = loaded + duplicate + quarantined in ``raw.load_log``, those counts are the rows the
file really has in ``raw.<source>`` and ``raw.quarantine``, and every raw row belongs to a logged file.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from dagster_twins.contract import RAW_BOOKKEEPING, SOURCES
from dagster_twins.layers import layer_of
from dagster_twins.location import build_definitions
from dagster_twins.pipeline import run_pipeline
from dagster_twins.settings import PROJECT_ROOT, Settings
from tests.conftest import make_settings

D0, D1, D2 = date(2026, 5, 1), date(2026, 5, 2), date(2026, 5, 3)
EVENTS_HEADER = "event_id,user_id,occurred_at,event_type,value"
# Marts that depend only on what landed (the churn frames also depend on the run's window end).
EVENT_MARTS = ("fct_events", "fct_user_daily_features", "fct_user_daily_dimension_counts", "dim_users")
# Load bookkeeping that legitimately differs between two loads of the same data, and paths of landing folders.
VOLATILE = {"_loaded_at", "loaded_at", "load_id", "_source_file", "source_file",
            # twins.user_documents embeds the churn and simulation outputs, which these checksums do not cover
            # (their reproducibility after a kill is not this test's claim): its rows and days are compared.
            "document"}
BASE_LAYERS = ("ingestion", "transform")


# ---------------------------------------------------------------------------------------------- landing files


def at(day: date, hour: int, minute: int = 0) -> str:
    return f"{day.isoformat()}T{hour:02d}:{minute:02d}:00Z"


def csv_text(header: str, *rows: str | Sequence[object]) -> str:
    lines = [row if isinstance(row, str) else ",".join("" if v is None else str(v) for v in row) for row in rows]
    return "\n".join([header, *lines]) + "\n"


def land(settings: Settings, rel: str, content: str | bytes | pd.DataFrame | list[dict]) -> Path:
    """Write one landing file: text or bytes as is, a DataFrame as Parquet, a list of dicts as JSON Lines."""
    path = settings.landing_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, pd.DataFrame):
        content.to_parquet(path)
    elif isinstance(content, list):
        path.write_text("".join(json.dumps(record) + "\n" for record in content))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


# ------------------------------------------------------------------------------------------------- running

# The layers this suite exercises (the job also holds layers built on top of these: churn, simulation, reports;
# they are not what these tests are about and would only slow them).
def _selection(settings: Settings, layers: Sequence[str]) -> list[dg.AssetKey]:
    job = build_definitions(settings).resolve_job_def("twins_pipeline")
    return sorted(key for key in job.asset_layer.executable_asset_keys if layer_of(key.path) in layers)


def failed_checks(result: dg.ExecuteInProcessResult) -> list[str]:
    return [f"{c.asset_key.to_user_string()}: {c.check_name}" for c in result.get_asset_check_evaluations()
            if not c.passed]


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """Every step failure's error, its causes included (Dagster wraps the asset's own exception)."""
    parts = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None:
                parts.append(error.message)
                error = error.cause
    return "\n".join(parts)


def run(settings: Settings, start: date, end: date | None = None, layers: tuple[str, ...] = BASE_LAYERS,
        expect_success: bool = True) -> dg.ExecuteInProcessResult:
    """The real job for landing days start .. end, limited to ``layers``; by default it must succeed with every
    asset check passing."""
    result = run_pipeline(settings, start, end or start, instance=dg.DagsterInstance.ephemeral(),
                          selection=_selection(settings, layers), raise_on_error=False)
    if expect_success:
        assert result.success, failure_text(result)
        assert failed_checks(result) == []
    return result


# ------------------------------------------------------------------------------------------ reading results


@contextmanager
def warehouse(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        yield con
    finally:
        con.close()


def rows(settings: Settings, sql: str, params: Sequence[object] = ()) -> list[tuple]:
    with warehouse(settings) as con:
        return con.execute(sql, list(params)).fetchall()


def reconcile(settings: Settings) -> dict[tuple[str, str], tuple[int, int, int, int]]:
    """Check every file's latest load-log entry against itself and the tables; return
    {(source, file name): (read, loaded, duplicate, quarantined)}."""
    stats: dict[tuple[str, str], tuple[int, int, int, int]] = {}
    with warehouse(settings) as con:
        entries = con.execute(
            "select source, source_file, rows_read, rows_loaded, rows_duplicate, rows_quarantined, status "
            "from raw.load_log qualify row_number() over (partition by source, source_file "
            "order by loaded_at desc, rowid desc) = 1"
        ).fetchall()
        # What was not read (an unknown folder, a dangling symlink) is logged as skipped, with no rows.
        assert all(s[2:6] == (0, 0, 0, 0) for s in entries if s[6] == "skipped")
        latest = [s[:6] for s in entries if s[6] != "skipped"]
        for source, path, read, loaded, duplicate, quarantined in latest:
            assert read == loaded + duplicate + quarantined, (source, path)
            in_table = con.execute(f"select count(*) from raw.{source} where _source_file = ?", [path]).fetchone()[0]
            assert in_table == loaded, (source, path)
            in_quarantine = con.execute("select count(*) from raw.quarantine where source = ? and source_file = ?",
                                        [source, path]).fetchone()[0]
            assert in_quarantine == quarantined, (source, path)
            stats[(source, Path(path).name)] = (read, loaded, duplicate, quarantined)
        for source in SOURCES:  # no raw row without a logged file
            logged = sum(s[3] for s in latest if s[0] == source)
            assert con.execute(f"select count(*) from raw.{source}").fetchone()[0] == logged, source
        assert con.execute("select count(*) from raw.quarantine").fetchone()[0] == sum(s[5] for s in latest)
    return stats


def quarantined(settings: Settings, source: str) -> dict[int, tuple[str, str]]:
    """{line: (reason, original record)} of a source's quarantined rows."""
    found = rows(settings, "select source_line, reason, record from raw.quarantine where source = ?", [source])
    return {line: (reason, record) for line, reason, record in found}


def snapshot(settings: Settings, schemas: Sequence[str] = ("marts",), tables: Sequence[str] | None = None,
             exclude: set[str] = VOLATILE) -> dict[str, pd.DataFrame]:
    """Full contents of every table and view of ``schemas`` (or just ``tables``), sorted, without ``exclude``."""
    out: dict[str, pd.DataFrame] = {}
    with warehouse(settings) as con:
        names = con.execute("select table_schema || '.' || table_name from information_schema.tables "
                            "where table_schema in (select unnest(?)) order by 1", [list(schemas)]).fetchall()
        for (name,) in names:
            if tables is not None and name.split(".")[1] not in tables:
                continue
            columns = [c[0] for c in con.execute(f"describe {name}").fetchall() if c[0] not in exclude]
            select = ", ".join(f'"{c}"' for c in columns)
            out[name] = con.execute(f"select {select} from {name} order by all").df()
    assert out, f"no tables in {schemas}"
    return out


def assert_same(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame]) -> None:
    assert left.keys() == right.keys()
    for name in left:
        pd.testing.assert_frame_equal(left[name], right[name], check_exact=False, rtol=1e-9, obj=name)


def daily(settings: Settings) -> dict[tuple[str, date], tuple[int, int, float]]:
    """{(user, activity day): (events, purchases, spend)} from marts.fct_user_daily_features."""
    found = rows(settings, "select user_id, activity_date, events, purchases, spend from marts.fct_user_daily_features")
    return {(u, d): (int(e), int(p), float(s)) for u, d, e, p, s in found}


def event_ids(settings: Settings) -> list[str]:
    return [r[0] for r in rows(settings, "select interaction_id from marts.fct_events where source = 'events' "
                                         "order by 1")]


# --------------------------------------------------------------------------------------------------- tests


def test_malformed_rows_are_quarantined_with_reasons_and_good_rows_still_load(tmp_path: Path):
    settings = make_settings(tmp_path)
    land(settings, "events/2026-05-01.csv", csv_text(
        EVENTS_HEADER,
        ("e1", "u1", at(D0, 9), "view", None),
        ("e2", "u1", at(D0, 10), "purchase", 12.5),
        ("e3", "u2", "yesterday at noon", "view", None),  # line 4
        ("e4", "u2", at(D0, 11), "purchase", "twelve"),  # line 5
        ("e5", "u2", at(D0, 12), "view", "", "surplus"),  # line 6: a field too many
        "e6,u2",  # line 7: fields missing
        ("e7", "u2", at(D0, 13), "view", None),  # line 8: good rows after ragged ones keep their own line
    ))
    land(settings, "subscriptions/2026-05-01.csv", csv_text(
        "user_id,occurred_at,action,plan,mrr",
        ("u1", at(D0, 8), "started", "pro", 29),
        ("u2", at(D0, 8), "paused", "pro", 29),  # line 3
    ))
    land(settings, "conversations/2026-05-01.jsonl", "\n".join([
        json.dumps({"message_id": "m1", "user_id": "u1", "sent_at": at(D0, 9, 30), "role": "user", "text": "hi"}),
        '{"message_id": "m2", "user_id": "u1", "sent_at": "2026-05-0',  # line 2: cut off
        json.dumps({"message_id": "m3", "user_id": "u2", "sent_at": at(D0, 9, 31), "role": "customer"}),
        json.dumps({"message_id": "m4", "user_id": "u2", "sent_at": at(D0, 9, 32), "role": "agent"}),
    ]) + "\n")
    # A source whose only file is one cut-off JSON line: no valid record, so no keys to check, still quarantined.
    land(settings, "support_tickets/2026-05-01.jsonl", '{"ticket_id": "t1", "user_id": "u1", "opened_at": \n')

    run(settings, D0)

    events = quarantined(settings, "events")
    assert sorted(events) == [4, 5, 6, 7]
    assert events[4][0] == "unparseable timestamp in occurred_at: yesterday at noon"
    assert events[5][0] == "not a number in value: twelve"
    assert events[6][0].startswith("malformed CSV row: TOO MANY COLUMNS")
    assert events[7][0].startswith("malformed CSV row: MISSING COLUMNS")
    # The original record is kept, so the row can be repaired and re-sent.
    for line, value in [(4, "yesterday at noon"), (5, "twelve"), (6, "surplus"), (7, "e6,u2")]:
        assert value in events[line][1]
    subscriptions = quarantined(settings, "subscriptions")
    assert list(subscriptions) == [3] and subscriptions[3][0].startswith("invalid action: paused")
    conversations = quarantined(settings, "conversations")
    assert sorted(conversations) == [2, 3]
    assert conversations[2] == ("malformed JSON line", '{"message_id": "m2", "user_id": "u1", "sent_at": "2026-05-0')
    assert conversations[3][0].startswith("invalid role: customer")
    assert quarantined(settings, "support_tickets") == {1: ("malformed JSON line", '{"ticket_id": "t1", '
                                                                                   '"user_id": "u1", "opened_at": ')}

    assert rows(settings, "select event_id, _source_line from raw.events order by 1") == [("e1", 2), ("e2", 3),
                                                                                           ("e7", 8)]
    assert rows(settings, "select message_id from raw.conversations order by 1") == [("m1",), ("m4",)]
    assert reconcile(settings) == {
        ("events", "2026-05-01.csv"): (7, 3, 0, 4),
        ("subscriptions", "2026-05-01.csv"): (2, 1, 0, 1),
        ("conversations", "2026-05-01.jsonl"): (4, 2, 0, 2),
        ("support_tickets", "2026-05-01.jsonl"): (1, 0, 0, 1),
    }
    # Only the good rows reach the marts.
    assert event_ids(settings) == ["events:e1", "events:e2", "events:e7"]
    features = daily(settings)
    assert features[("u1", D0)] == (2, 1, 12.5)
    assert features[("u2", D0)] == (1, 0, 0.0)


def test_duplicates_within_and_across_files_and_reloads_are_never_double_counted(tmp_path: Path):
    settings = make_settings(tmp_path)
    land(settings, "events/2026-05-01/part-1.csv", csv_text(
        EVENTS_HEADER,
        ("e1", "u1", at(D0, 9), "view", None),
        ("e2", "u1", at(D0, 10), "purchase", 10),
        ("e2", "u1", at(D0, 10), "purchase", 10),  # the same id twice in one file
    ))
    land(settings, "events/2026-05-01/part-2.csv", csv_text(
        EVENTS_HEADER,
        ("e1", "u1", at(D0, 9), "view", None),  # again, in another file of the same day
        ("e3", "u2", at(D0, 11), "view", None),
    ))
    land(settings, "events/2026-05-02.csv", csv_text(
        EVENTS_HEADER,
        ("e2", "u1", at(D0, 10), "purchase", 10),  # re-sent a day later
        ("e4", "u2", at(D1, 9), "view", None),
        (None, "u2", at(D1, 10), "purchase", 5),  # no id: keyed by its content...
        (None, "u2", at(D1, 10), "purchase", 5),  # ...so the same content is a duplicate
    ))
    expected_files = {
        ("events", "part-1.csv"): (3, 2, 1, 0),
        ("events", "part-2.csv"): (2, 1, 1, 0),
        ("events", "2026-05-02.csv"): (4, 2, 2, 0),
    }
    expected_days = {("u1", D0): (2, 1, 10.0), ("u2", D0): (1, 0, 0.0), ("u2", D1): (2, 1, 5.0)}

    run(settings, D0, D1)
    assert reconcile(settings) == expected_files
    assert len(event_ids(settings)) == len(set(event_ids(settings))) == 5
    assert daily(settings) == expected_days
    first = snapshot(settings, tables=EVENT_MARTS)

    # The later day's file loaded a second time, alone (an incremental run; the whole range run again is
    # test_backfill_run_twice_...).
    run(settings, D1)
    assert reconcile(settings) == expected_files
    assert daily(settings) == expected_days
    assert_same(snapshot(settings, tables=EVENT_MARTS), first)


def test_a_corrected_file_replaces_its_days_rows_in_the_marts(tmp_path: Path):
    settings = make_settings(tmp_path)
    land(settings, "events/2026-05-01.csv", csv_text(
        EVENTS_HEADER, ("e1", "u1", at(D0, 9), "view", None), ("e2", "u1", at(D0, 10), "view", None),
        (None, "u1", at(D0, 11), "purchase", 5)))
    run(settings, D0)
    # The day's file is sent again, corrected: e2 was bogus and the purchase was 50, not 5.
    land(settings, "events/2026-05-01.csv", csv_text(
        EVENTS_HEADER, ("e1", "u1", at(D0, 9), "view", None), (None, "u1", at(D0, 11), "purchase", 50)))
    run(settings, D0)
    assert reconcile(settings) == {("events", "2026-05-01.csv"): (2, 2, 0, 0)}  # raw holds the corrected day
    assert daily(settings)[("u1", D0)] == (2, 1, 50.0)  # was (4, 2, 55.0) before fct_events replaced its days


def test_late_event_is_folded_into_its_own_day_as_a_full_rebuild_would(tmp_path: Path):
    settings = make_settings(tmp_path)
    land(settings, "events/2026-05-01.csv", csv_text(
        EVENTS_HEADER, ("e1", "u1", at(D0, 9), "view", None), ("e2", "u2", at(D0, 10), "purchase", 5)))
    land(settings, "events/2026-05-02.csv", csv_text(EVENTS_HEADER, ("e3", "u1", at(D1, 9), "view", None)))
    run(settings, D0, D1)
    assert daily(settings)[("u1", D0)] == (1, 0, 0.0)

    # Day D's events arrive in day D+2's file, and only D+2 is run.
    land(settings, "events/2026-05-03.csv", csv_text(
        EVENTS_HEADER,
        ("e4", "u1", at(D2, 9), "view", None),
        ("e5", "u1", at(D0, 20), "purchase", 7),
        ("e6", "u2", at(D0, 11), "view", None),
    ))
    run(settings, D2)
    features = daily(settings)
    assert features[("u1", D0)] == (2, 1, 7.0)
    assert features[("u2", D0)] == (2, 1, 5.0)
    assert features[("u1", D2)] == (1, 0, 0.0)
    assert ("u2", D2) not in features
    assert rows(settings, "select activity_date, landing_date from marts.fct_events where interaction_id = 'events:e5'"
                ) == [(D0, D2)]

    rebuilt = replace(settings, warehouse_path=tmp_path / "rebuilt.duckdb")
    run(rebuilt, D0, D2)
    assert_same(snapshot(settings), snapshot(rebuilt))


def test_rows_out_of_order_in_a_file_give_the_same_warehouse_as_sorted_rows(tmp_path: Path):
    events = [
        ("e1", "u1", at(D0, 8), "view", None),
        ("e2", "u1", at(D0, 9), "purchase", 3),
        ("e3", "u2", at(D0, 10), "view", None),
        (None, "u2", at(D0, 11), "purchase", 4.5),
        ("e5", "u3", at(D0, 23, 59), "view", None),
        ("e6", "u1", at(D0, 22), "view", None),  # late: lands on D1
        ("e7", "u1", at(D1, 7), "view", None),
        ("e8", "u3", at(D1, 12), "purchase", 1),
        (None, "u2", at(D1, 13), "view", None),
    ]
    by_day = {D0: events[:5], D1: events[5:]}
    shuffled = {D0: [by_day[D0][i] for i in (3, 0, 4, 2, 1)], D1: [by_day[D1][i] for i in (2, 0, 3, 1)]}
    warehouses = []
    for name, layout in [("sorted", by_day), ("shuffled", shuffled)]:
        settings = make_settings(tmp_path / name)
        for day, day_rows in layout.items():
            land(settings, f"events/{day}.csv", csv_text(EVENTS_HEADER, *day_rows))
        run(settings, D0, D1)
        warehouses.append(settings)
    sorted_wh, shuffled_wh = warehouses
    assert daily(sorted_wh)[("u1", D0)] == (3, 1, 3.0)
    assert_same(snapshot(sorted_wh), snapshot(shuffled_wh))
    # Raw rows too, but for the line each came from.
    moved = VOLATILE | {"_source_line"}
    assert_same(snapshot(sorted_wh, ("raw",), tables=("events",), exclude=moved),
                snapshot(shuffled_wh, ("raw",), tables=("events",), exclude=moved))


def test_empty_and_header_only_files_load_zero_rows_without_error(tmp_path: Path):
    settings = make_settings(tmp_path)
    land(settings, "events/2026-05-01.csv", csv_text(
        EVENTS_HEADER, ("e1", "u1", at(D0, 9), "view", None), ("e2", "u2", at(D0, 10), "view", None)))
    land(settings, "events/2026-05-01-empty.csv", "")
    land(settings, "events/2026-05-01-header.csv", EVENTS_HEADER + "\n")
    land(settings, "events/2026-05-01-header-no-newline.csv", "user_id,occurred_at,event_type")
    land(settings, "events/2026-05-01-blank.csv", "\n")
    land(settings, "events/2026-05-02.jsonl", "")  # a day whose only file is empty
    land(settings, "events/2026-05-02-blank.jsonl", "\n\n")
    land(settings, "users/2026-05-01.csv", "user_id,signed_up_at,plan\n")
    land(settings, "conversations/2026-05-01.jsonl", "")
    land(settings, "subscriptions/2026-05-02.parquet", pd.DataFrame({
        "user_id": pd.Series([], dtype=str), "occurred_at": pd.Series([], dtype="datetime64[ns, UTC]"),
        "action": pd.Series([], dtype=str)}))

    run(settings, D0, D1, layers=("ingestion",))

    stats = reconcile(settings)
    assert stats.pop(("events", "2026-05-01.csv")) == (2, 2, 0, 0)
    assert sorted(stats) == [
        ("conversations", "2026-05-01.jsonl"),
        ("events", "2026-05-01-blank.csv"),
        ("events", "2026-05-01-empty.csv"),
        ("events", "2026-05-01-header-no-newline.csv"),
        ("events", "2026-05-01-header.csv"),
        ("events", "2026-05-02-blank.jsonl"),
        ("events", "2026-05-02.jsonl"),
        ("subscriptions", "2026-05-02.parquet"),
        ("users", "2026-05-01.csv"),
    ]
    assert set(stats.values()) == {(0, 0, 0, 0)}
    assert rows(settings, "select count(*) from raw.quarantine") == [(0,)]
    assert rows(settings, "select event_id from raw.events order by 1") == [("e1",), ("e2",)]


def test_schema_drift_an_unknown_extra_column_is_ignored(tmp_path: Path):
    """The loader reads the contract's columns only: an unknown column is neither loaded nor reported (it is not
    in the raw table, nor in a quarantined row's record), and the file's rows load as usual."""
    settings = make_settings(tmp_path)
    land(settings, "events/2026-05-01.csv", csv_text(
        EVENTS_HEADER + ",referrer,Session Id",
        ("e1", "u1", at(D0, 9), "view", None, "newsletter", "s-1"),
        ("e2", "u1", "not a time", "view", None, "newsletter", "s-1"),
    ))
    run(settings, D0, layers=("ingestion",))
    assert reconcile(settings) == {("events", "2026-05-01.csv"): (2, 1, 0, 1)}
    columns = [c[0] for c in rows(settings, "describe raw.events")]
    assert columns == SOURCES["events"].column_names + list(RAW_BOOKKEEPING)
    reason, record = quarantined(settings, "events")[3]
    assert reason == "unparseable timestamp in occurred_at: not a time"
    assert "newsletter" not in record and "referrer" not in record


def events_state(settings: Settings) -> list[list[tuple]]:
    """Everything the warehouse holds about the events source: rows, load log and quarantine, as they are."""
    return [rows(settings, f"select * from {table} order by all") for table in (
        "raw.events", "raw.load_log where source = 'events'", "raw.quarantine where source = 'events'")]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_schema_drift_a_missing_required_column_fails_the_source_naming_file_and_column(tmp_path: Path, fmt: str):
    settings = make_settings(tmp_path)
    land(settings, "users/2026-05-01.csv", csv_text("user_id,signed_up_at", ("u1", at(D0, 8))))
    land(settings, "events/2026-05-01.csv", csv_text(EVENTS_HEADER, ("e1", "u1", at(D0, 9), "view", None)))
    run(settings, D0, layers=("ingestion",))
    before = events_state(settings)

    # A second file for the same day arrives without occurred_at (renamed upstream).
    bad = [{"event_id": "e2", "user_id": "u1", "when": at(D0, 10), "event_type": "view"}]
    content = {"csv": csv_text("event_id,user_id,when,event_type", "e2,u1,2026-05-01T10:00:00Z,view"),
               "jsonl": bad, "parquet": pd.DataFrame(bad)}[fmt]
    path = land(settings, f"events/2026-05-01-b.{fmt}", content)
    result = run(settings, D0, layers=("ingestion",), expect_success=False)

    assert not result.success
    error = failure_text(result)
    assert f"{path}: required column 'occurred_at' is missing from this events file" in error
    assert "MissingColumnError" in error
    # The failing source is left exactly as it was (nothing deleted, nothing half loaded, nothing logged) ...
    assert events_state(settings) == before
    # ... while the source loaded before it in the same step was materialized.
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "raw/users" in materialized and "raw/events" not in materialized


def test_schema_drift_a_changed_column_type_is_quarantined_row_by_row(tmp_path: Path):
    settings = make_settings(tmp_path)
    # CSV: value now carries a currency.
    land(settings, "events/2026-05-01.csv", csv_text(
        EVENTS_HEADER, ("e1", "u1", at(D0, 9), "purchase", "12.50"), ("e2", "u1", at(D0, 10), "purchase", "12.50 EUR")))
    # Parquet: one file typed as before, one where ids became integers and times and values became text, and one
    # where times became epoch seconds (not ISO 8601: quarantined, not guessed).
    land(settings, "events/2026-05-02/typed.parquet", pd.DataFrame({
        "event_id": ["p1"], "user_id": ["u1"], "occurred_at": pd.to_datetime([at(D1, 9)], utc=True),
        "event_type": ["purchase"], "value": [1.5]}))
    land(settings, "events/2026-05-02/drifted.parquet", pd.DataFrame({
        "event_id": ["p2", "p3", "p4"], "user_id": [7, 8, 9],
        "occurred_at": ["2026-05-02 10:00:00", "2026-05-02T12:00:00+02:00", "noon"],
        "event_type": ["purchase"] * 3, "value": ["2.5", None, "abc"]}))
    land(settings, "events/2026-05-02/epoch.parquet", pd.DataFrame({
        "event_id": ["p5"], "user_id": ["u1"], "occurred_at": [1777716000], "event_type": ["view"]}))

    run(settings, D0, D1, layers=("ingestion",))

    assert reconcile(settings) == {
        ("events", "2026-05-01.csv"): (2, 1, 0, 1),
        ("events", "typed.parquet"): (1, 1, 0, 0),
        ("events", "drifted.parquet"): (3, 2, 0, 1),
        ("events", "epoch.parquet"): (1, 0, 0, 1),
    }
    reasons = dict(rows(settings, "select regexp_extract(source_file, '[^/]+$'), reason from raw.quarantine"))
    assert reasons == {
        "2026-05-01.csv": "not a number in value: 12.50 EUR",
        "drifted.parquet": "unparseable timestamp in occurred_at: noon; not a number in value: abc",
        "epoch.parquet": "unparseable timestamp in occurred_at: 1777716000",
    }
    loaded = rows(settings, "select event_id, user_id, occurred_at, value from raw.events order by 1")
    assert [(e, u, t.isoformat(), v) for e, u, t, v in loaded] == [
        ("e1", "u1", "2026-05-01T09:00:00", 12.5),
        ("p1", "u1", "2026-05-02T09:00:00", 1.5),
        ("p2", "7", "2026-05-02T10:00:00", 2.5),
        ("p3", "8", "2026-05-02T10:00:00", None),
    ]


def test_unknown_users_get_a_dim_users_row_and_a_twin(tmp_path: Path):
    """dim_users is "one row per user seen anywhere": users who only appear in interactions get a row marked
    is_known_user = false, signed up at their first interaction, without profile; users without interactions
    keep theirs with zero interactions."""
    settings = make_settings(tmp_path)
    land(settings, "users/2026-05-01.csv", csv_text(
        "user_id,signed_up_at,plan,country", ("u1", "2026-04-01T00:00:00Z", "pro", "DE"),
        ("u2", "2026-04-15T00:00:00Z", "free", "FR")))
    land(settings, "events/2026-05-01.csv", csv_text(
        EVENTS_HEADER, ("e1", "u1", at(D0, 9), "view", None), ("e2", "ghost", at(D0, 10), "view", None)))
    land(settings, "events/2026-05-02.csv", csv_text(
        EVENTS_HEADER, ("e3", "u1", at(D1, 9), "view", None), ("e4", "ghost", at(D1, 11), "purchase", 3)))

    run(settings, D0, D1, layers=(*BASE_LAYERS, "twins"))

    users = {r[0]: r[1:] for r in rows(settings, "select user_id, is_known_user, signed_up_at, plan, country, "
                                                 "first_seen_at, interactions, lifetime_spend from marts.dim_users")}
    assert sorted(users) == ["ghost", "u1", "u2"]
    known, signed_up, plan, country, first_seen, interactions, spend = users["ghost"]
    assert (known, plan, country, interactions, spend) == (False, None, None, 2, 3.0)
    assert signed_up == first_seen and first_seen.isoformat() == "2026-05-01T10:00:00"
    assert users["u1"][:4] == (True, datetime(2026, 4, 1), "pro", "DE")
    assert users["u2"][0] is True and users["u2"][4:6] == (None, 0)
    assert rows(settings, "select user_id from twins.user_twins order by 1") == [("ghost",), ("u1",), ("u2",)]


FULL_LAYERS = (*BASE_LAYERS, "twins")


def copy_warehouse(settings: Settings, folder: Path) -> Settings:
    folder.mkdir(parents=True, exist_ok=True)
    for path in settings.warehouse_path.parent.glob(settings.warehouse_path.name + "*"):  # the file and any WAL
        shutil.copy(path, folder / path.name)
    return replace(settings, warehouse_path=folder / settings.warehouse_path.name)


@pytest.fixture(scope="module")
def demo_clean(small_demo, tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Settings]:
    """The session's small demo (300 users x 45 days, every source, with malformed, duplicate and late rows
    planted; its landing files are read, never changed) run once into a fresh warehouse: (demo, settings). Tests
    that run more copy the warehouse first."""
    settings = replace(make_settings(tmp_path_factory.mktemp("demo_clean")), landing_dir=small_demo.landing_dir)
    run(settings, small_demo.start_date, small_demo.end_date, layers=FULL_LAYERS)
    return small_demo, settings


def warehouse_contents(settings: Settings) -> dict[str, pd.DataFrame]:
    """raw, marts and twins in full, but for load bookkeeping; the load log (append-only, one entry per file and
    load) is compared through ``reconcile`` instead."""
    contents = snapshot(settings, ("raw", "marts", "twins"))
    contents.pop("raw.load_log")
    return contents


def test_backfill_run_twice_gives_identical_raw_marts_and_twins(demo_clean, tmp_path: Path):
    demo, clean = demo_clean
    settings = copy_warehouse(clean, tmp_path)
    files = reconcile(settings)
    assert sum(s[2] for s in files.values()) > 0 and sum(s[3] for s in files.values()) > 0  # faults were there

    run(settings, demo.start_date, demo.end_date, layers=FULL_LAYERS)

    assert reconcile(settings) == files
    assert rows(settings, "select count(*) from raw.load_log") == [(2 * len(files),)]
    assert_same(warehouse_contents(settings), warehouse_contents(clean))


def _run_cli_until(env: dict[str, str], marker: str) -> list[str]:
    """Start `dagster-twins run` in its own process group, read its log as it comes, and SIGKILL the whole
    group (dbt included) as soon as a line holds ``marker``. Returns the lines read."""
    proc = subprocess.Popen(
        # --verbose: Dagster's event log on the console, where the materializations show.
        [sys.executable, "-m", "dagster_twins.cli", "run", "--verbose"], cwd=PROJECT_ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        while (line := lines.get(timeout=900)) is not None:  # a guard against a hang, not a speed limit
            seen.append(line)
            if marker in line:
                break
    finally:
        if proc.poll() is None:  # midway (or a hang): kill the CLI and its subprocesses at once
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        reader.join()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "".join(seen[-30:])
    return seen


def _cli_env(settings: Settings, landing: Path, home: Path) -> dict[str, str]:
    return {**os.environ, "TWINS_WAREHOUSE": str(settings.warehouse_path), "TWINS_LANDING_DIR": str(landing),
            "TWINS_SOURCES_CONFIG": str(settings.sources_config), "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1"}


def _assert_recovered(settings: Settings, clean: Settings, demo) -> None:
    """Re-run to completion (every check passing): the warehouse equals the clean run's, table by table."""
    run(settings, demo.start_date, demo.end_date, layers=FULL_LAYERS)
    files = reconcile(settings)
    assert files == reconcile(clean)
    for source in SOURCES:
        assert sum(s[0] for (src, _), s in files.items() if src == source) == demo.rows_written[source], source
    assert checksums(settings) == checksums(clean)
    assert_same(warehouse_contents(settings), warehouse_contents(clean))


def checksums(settings: Settings) -> dict[str, tuple[int, int]]:
    """Per table of raw, marts and twins: (rows, an order-free checksum of its rows), load bookkeeping aside."""
    out = {}
    with warehouse(settings) as con:
        tables = con.execute("select table_schema, table_name from information_schema.tables where table_schema in "
                             "('raw', 'marts', 'twins') and table_name <> 'load_log' order by 1, 2").fetchall()
        for schema, table in tables:
            columns = [c[0] for c in con.execute(f"describe {schema}.{table}").fetchall() if c[0] not in VOLATILE]
            # Floats rounded: sums over the same rows in another order may differ in the last bits.
            values = ", ".join(f'round("{c}", 9)' if t.startswith(("DOUBLE", "FLOAT")) else f'"{c}"'
                               for c, t, *_ in con.execute(f"describe {schema}.{table}").fetchall() if c in columns)
            out[f"{schema}.{table}"] = tuple(con.execute(
                f"select count(*), coalesce(sum(hash({values})), 0) from {schema}.{table}").fetchone())
    return out


def test_runs_killed_during_dbt_then_during_the_twins_recover_to_the_warehouse_of_a_clean_run(demo_clean,
                                                                                                 tmp_path: Path):
    """Two crashes of the command line's run in a row, then a re-run: the first run is killed in dbt (after raw
    was loaded); the second, its re-run, goes through ingestion and dbt again and is killed after the twins folded
    their evidence into the state table and before the summary tables were written; the last re-run gives the clean
    run's warehouse. (Two kills before one recovery: each recovery is a whole pipeline run over the demo, and a
    state a killed dbt left that a re-run does not repair would outlive the second run as well.)"""
    demo, clean = demo_clean
    settings = replace(make_settings(tmp_path), landing_dir=demo.landing_dir)
    env = _cli_env(settings, demo.landing_dir, tmp_path / "dagster_home")

    log = "".join(_run_cli_until(env, "dbt_models - ASSET_MATERIALIZATION"))
    assert 'Finished execution of step "raw_sources"' in log
    assert 'Finished execution of step "dbt_models"' not in log
    assert rows(settings, "select count(*) from duckdb_tables() where schema_name = 'twins'") == [(0,)]

    log = "".join(_run_cli_until(env, "folded bucket"))
    assert 'Finished execution of step "dbt_models"' in log
    assert 'Finished execution of step "twins_beliefs"' not in log

    _assert_recovered(settings, clean, demo)


_PUBLISH = """
import sys
from dagster_twins.serving.publish import publish_serving_copy
publish_serving_copy(sys.argv[1], sys.argv[2], sys.argv[3])
"""


def test_a_publication_killed_at_any_point_leaves_readers_a_whole_copy(demo_clean, tmp_path: Path):
    """kill -9 a publication of the serving copy at many points (checkpointing the warehouse, copying, writing the
    manifest, renaming): readers opening the serving copy meanwhile always find a whole one (its manifest matches
    every table), the warehouse keeps its checksums, and the next publication clears what the killed ones left."""
    from dagster_twins.serving.publish import STAGING_PREFIX, publish_serving_copy, verify_serving_copy

    _, clean = demo_clean
    settings = copy_warehouse(clean, tmp_path / "warehouse")
    serving = tmp_path / "serving" / settings.warehouse_path.name
    publish_serving_copy(settings.warehouse_path, serving, "first")
    before = checksums(settings)
    seen: list[dict] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.append(verify_serving_copy(serving))

    reader = threading.Thread(target=read)
    reader.start()
    runs, midway = {"first"}, 0
    try:
        # Killed as the staging copy appears, then a little later each time: copying, writing the manifest, syncing,
        # renaming (the last ones land after the rename: then that run is published, whole).
        for i, delay in enumerate((0, 0, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4)):
            proc = subprocess.Popen([sys.executable, "-c", _PUBLISH, str(settings.warehouse_path), str(serving),
                                     f"killed-{i}"], cwd=PROJECT_ROOT,
                                    env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
            runs.add(f"killed-{i}")
            while proc.poll() is None and not list(serving.parent.glob(STAGING_PREFIX + "*")):
                time.sleep(0.0005)
            time.sleep(delay)
            midway += proc.poll() is None and bool(list(serving.parent.glob(STAGING_PREFIX + "*")))
            proc.kill()
            proc.wait()
    finally:
        stop.set()
        reader.join()
    assert midway >= 3, midway
    assert seen and all(check["ok"] and check["run_id"] in runs for check in seen), [c for c in seen if not c["ok"]]
    assert checksums(settings) == before

    last = publish_serving_copy(settings.warehouse_path, serving, "last")
    assert verify_serving_copy(serving)["ok"] and verify_serving_copy(serving)["run_id"] == "last"
    assert not list(serving.parent.glob(STAGING_PREFIX + "*")), last["removed_leftovers"]
