"""Unit tests of the landing-file loader: mapping, quarantine reasons, idempotency, formats."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dagster_twins.contract import SOURCES
from dagster_twins.ingestion.loader import load_source
from dagster_twins.ingestion.mapping import MappingConfigError, default_mappings, parse_mappings
from dagster_twins.ingestion.validate import MissingColumnError
from dagster_twins.warehouse.tables import connect

DAY = date(2026, 5, 1)


@pytest.fixture
def con(tmp_path: Path):
    connection = connect(tmp_path / "w.duckdb")
    yield connection
    connection.close()


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def quarantine(con, source: str = "events") -> list[tuple[int, str]]:
    return con.execute(
        "select source_line, reason from raw.quarantine where source = ? order by source_line", [source]
    ).fetchall()


EVENTS_CSV = """event_id,user_id,occurred_at,event_type,value
e1,u1,2026-05-01T10:00:00Z,view,
e2,u1,2026-05-01T11:00:00+02:00,purchase,9.5
e3,,2026-05-01T12:00:00Z,view,
e4,u2,not-a-date,view,
e5,u2,2026-05-01T12:00:00Z,purchase,n/a
e6,u2,2026-05-01T12:00:00Z
e1,u1,2026-05-01T10:00:00Z,view,
"""


def test_quarantine_reasons_lines_and_reconciliation(con, tmp_path):
    write(tmp_path / "landing", "events/2026-05-01.csv", EVENTS_CSV)
    result = load_source(con, "events", default_mappings()["events"], tmp_path / "landing", [DAY])
    assert result.summary() == {"rows_read": 7, "rows_loaded": 2, "rows_duplicate": 1, "rows_quarantined": 4}
    assert result.reconciles
    reasons = quarantine(con)
    assert [line for line, _ in reasons] == [4, 5, 6, 7]
    assert reasons[0][1] == "missing required user_id"
    assert reasons[1][1] == "unparseable timestamp in occurred_at: not-a-date"
    assert reasons[2][1] == "not a number in value: n/a"
    assert reasons[3][1].startswith("malformed CSV row: MISSING COLUMNS")
    record = con.execute("select record from raw.quarantine where source_line = 5").fetchone()[0]
    assert "not-a-date" in record


def test_times_are_normalised_to_utc(con, tmp_path):
    write(tmp_path / "landing", "events/2026-05-01.csv", EVENTS_CSV)
    load_source(con, "events", default_mappings()["events"], tmp_path / "landing", [DAY])
    occurred = con.execute("select occurred_at from raw.events where event_id = 'e2'").fetchone()[0]
    assert occurred.isoformat() == "2026-05-01T09:00:00"


def test_loading_twice_changes_nothing(con, tmp_path):
    landing = tmp_path / "landing"
    write(landing, "events/2026-05-01.csv", EVENTS_CSV)
    write(landing, "events/2026-05-02.csv", "event_id,user_id,occurred_at,event_type\ne1,u1,2026-05-01T10:00:00Z,view\n"
          "e7,u3,2026-05-02T10:00:00Z,view\n")
    mapping = default_mappings()["events"]
    first = load_source(con, "events", mapping, landing, [DAY, date(2026, 5, 2)])
    snapshot = con.execute("select * exclude (_loaded_at) from raw.events order by _row_id").fetchall()
    quarantined = quarantine(con)
    for _ in range(2):
        again = load_source(con, "events", mapping, landing, [DAY, date(2026, 5, 2)])
        assert again.summary() == first.summary()
        assert con.execute("select * exclude (_loaded_at) from raw.events order by _row_id").fetchall() == snapshot
        assert quarantine(con) == quarantined
    # Re-loading only the second day: e1 is already loaded from the first day, so it stays a duplicate.
    second = load_source(con, "events", mapping, landing, [date(2026, 5, 2)])
    assert second.summary() == {"rows_read": 2, "rows_loaded": 1, "rows_duplicate": 1, "rows_quarantined": 0}
    assert con.execute("select count(*) from raw.events").fetchone()[0] == 3


def test_rows_without_id_dedupe_on_content_hash(con, tmp_path):
    landing = tmp_path / "landing"
    write(landing, "events/2026-05-01.csv", "user_id,occurred_at,event_type\nu1,2026-05-01 10:00:00,view\n"
          "u1,2026-05-01 10:00:00,view\nu1,2026-05-01 10:00:01,view\n")
    result = load_source(con, "events", default_mappings()["events"], landing, [DAY])
    assert result.summary() == {"rows_read": 3, "rows_loaded": 2, "rows_duplicate": 1, "rows_quarantined": 0}


def test_column_mapping_from_config(con, tmp_path):
    landing = tmp_path / "landing"
    write(landing, "clicks/2026-05-01.csv", "customer,ts,kind\nc1,01/05/2026 10:30,open\nc2,31/13/2026 10:30,open\n")
    mappings = parse_mappings({"sources": {"events": {
        "folder": "clicks",
        "columns": {"user_id": "customer", "occurred_at": "ts", "event_type": "kind"},
        "timestamp_format": "%d/%m/%Y %H:%M",
    }}})
    result = load_source(con, "events", mappings["events"], landing, [DAY])
    assert result.summary()["rows_loaded"] == 1
    row = con.execute("select user_id, occurred_at, event_type from raw.events").fetchone()
    assert row[0] == "c1" and row[1].isoformat() == "2026-05-01T10:30:00" and row[2] == "open"
    assert quarantine(con)[0][1] == "unparseable timestamp in occurred_at: 31/13/2026 10:30"


@pytest.mark.parametrize(
    "config, message",
    [
        ({"sources": {"clicks": {}}}, "unknown source 'clicks'"),
        ({"sources": {"events": {"columns": {"userid": "x"}}}}, "unknown contract column 'userid'"),
        ({"sources": {"events": {"colums": {}}}}, "unknown settings ['colums']"),
    ],
)
def test_bad_mapping_config_is_a_clear_error(config, message):
    with pytest.raises(MappingConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_mappings(config)


def test_missing_required_column_names_file_and_column(con, tmp_path):
    landing = tmp_path / "landing"
    path = write(landing, "events/2026-05-01.csv", "user_id,event_type\nu1,view\n")
    with pytest.raises(MissingColumnError) as error:
        load_source(con, "events", default_mappings()["events"], landing, [DAY])
    assert str(path) in str(error.value) and "'occurred_at'" in str(error.value)
    assert con.execute("select count(*) from raw.events").fetchone()[0] == 0


def test_accepted_values_are_enforced(con, tmp_path):
    landing = tmp_path / "landing"
    write(landing, "subscriptions/2026-05-01.csv",
          "user_id,occurred_at,action,plan,mrr\nu1,2026-05-01T00:00:00Z,Started,pro,29\nu1,2026-05-01T01:00:00Z,paused,pro,29\n")
    result = load_source(con, "subscriptions", default_mappings()["subscriptions"], landing, [DAY])
    assert result.summary()["rows_loaded"] == 1
    assert con.execute("select action from raw.subscriptions").fetchone()[0] == "started"
    assert quarantine(con, "subscriptions")[0][1].startswith("invalid action: paused")


def test_jsonl_with_malformed_line(con, tmp_path):
    landing = tmp_path / "landing"
    lines = [
        json.dumps({"message_id": "m1", "user_id": "u1", "sent_at": "2026-05-01T10:00:00Z", "role": "user",
                    "text": "how to fix my camera"}),
        '{"message_id": "m2", "user_id": "u1", "sent_at": "2026-05-01T1',
        json.dumps({"message_id": "m3", "user_id": "u1", "sent_at": "2026-05-01T10:02:00Z", "role": "agent"}),
    ]
    write(landing, "conversations/2026-05-01.jsonl", "\n".join(lines) + "\n")
    result = load_source(con, "conversations", default_mappings()["conversations"], landing, [DAY])
    assert result.summary() == {"rows_read": 3, "rows_loaded": 2, "rows_duplicate": 0, "rows_quarantined": 1}
    line, reason = quarantine(con, "conversations")[0]
    assert (line, reason) == (2, "malformed JSON line")


def test_parquet_with_typed_timestamps(con, tmp_path):
    landing = tmp_path / "landing"
    (landing / "events").mkdir(parents=True)
    frame = pd.DataFrame({
        "event_id": ["a", "b"],
        "user_id": ["u1", None],
        "occurred_at": pd.to_datetime(["2026-05-01 10:00", "2026-05-01 11:00"], utc=True),
        "event_type": ["view", "view"],
        "value": [1.5, None],
    })
    frame.to_parquet(landing / "events" / "2026-05-01.parquet")
    result = load_source(con, "events", default_mappings()["events"], landing, [DAY])
    assert result.summary() == {"rows_read": 2, "rows_loaded": 1, "rows_duplicate": 0, "rows_quarantined": 1}
    assert quarantine(con) == [(2, "missing required user_id")]


def test_empty_file_and_header_only_file(con, tmp_path):
    landing = tmp_path / "landing"
    write(landing, "events/2026-05-01.csv", "")
    write(landing, "events/2026-05-01-b.csv", "user_id,occurred_at,event_type\n")
    result = load_source(con, "events", default_mappings()["events"], landing, [DAY])
    assert result.summary() == {"rows_read": 0, "rows_loaded": 0, "rows_duplicate": 0, "rows_quarantined": 0}
    assert len(result.files) == 2


def test_undated_file_lands_on_its_latest_event_day(con, tmp_path):
    landing = tmp_path / "landing"
    write(landing, "events/export.csv", "user_id,occurred_at,event_type\nu1,2026-04-03T10:00:00Z,view\n"
          "u1,2026-04-05T10:00:00Z,view\nu1,garbage,view\n")
    assert load_source(con, "events", default_mappings()["events"], landing, [DAY]).files == []
    result = load_source(con, "events", default_mappings()["events"], landing, [date(2026, 4, 5)])
    assert result.summary() == {"rows_read": 3, "rows_loaded": 2, "rows_duplicate": 0, "rows_quarantined": 1}


def test_every_raw_table_exists_even_without_files(con, tmp_path):
    load_source(con, "events", default_mappings()["events"], tmp_path / "none", [DAY])
    tables = {r[0] for r in con.execute("select table_name from duckdb_tables() where schema_name = 'raw'").fetchall()}
    assert set(SOURCES) | {"quarantine", "load_log", "file_index"} <= tables


# A landing day's rows: (event id from a small pool, so keys repeat within and across days; is the row malformed).
_day_rows = st.lists(st.tuples(st.integers(0, 12), st.booleans()), max_size=8)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(days=st.lists(_day_rows, min_size=1, max_size=6), slice_days=st.integers(1, 3))
def test_loading_in_slices_of_days_equals_loading_the_window_at_once(tmp_path_factory, days, slice_days):
    """A backfill is staged a few landing days at a time: the earliest landing of a key must still win, and every
    file's counts must be what one pass over the whole window gives."""
    landing = tmp_path_factory.mktemp("landing")
    dates = [date(2026, 5, 1 + i) for i in range(len(days))]
    for day, rows in zip(dates, days, strict=True):
        lines = [f"e{key},u{key},{'not-a-date' if bad else f'{day}T10:00:00Z'},view" for key, bad in rows]
        write(landing, f"events/{day}.csv", "event_id,user_id,occurred_at,event_type\n" + "".join(
            line + "\n" for line in lines))

    def load(slices: int) -> tuple[list, list, list]:
        con = connect(tmp_path_factory.mktemp("w") / "w.duckdb")
        try:
            result = load_source(con, "events", default_mappings()["events"], landing, dates, slice_days=slices)
            assert result.reconciles
            table = con.execute("select * exclude (_loaded_at) from raw.events order by _row_id").fetchall()
            return table, [dataclasses.astuple(f) for f in result.files], quarantine(con)
        finally:
            con.close()

    assert load(slice_days) == load(len(dates))


def test_a_failed_backfill_keeps_whole_days_and_a_rerun_loads_the_window(con, tmp_path):
    """Each slice of a backfill commits: a failure leaves the days before it loaded and the rest of the window
    empty (never half a day), and loading the window again after the fix gives every day."""
    landing = tmp_path / "landing"
    days = [date(2026, 5, 1 + i) for i in range(4)]
    for day in days:
        write(landing, f"events/{day}.csv",
              f"event_id,user_id,occurred_at,event_type\ne{day.day},u1,{day}T10:00:00Z,view\n")
    mapping = default_mappings()["events"]
    load_source(con, "events", mapping, landing, days)
    broken = write(landing, f"events/{days[2]}.csv", "event_id,occurred_at,event_type\ne9,2026-05-03T10:00:00Z,view\n")
    with pytest.raises(MissingColumnError):
        load_source(con, "events", mapping, landing, days, load_id="failed", slice_days=1)
    loaded = [d for (d,) in con.execute("select distinct _landing_date from raw.events order by 1").fetchall()]
    assert loaded == days[:2]
    assert con.execute("select count(distinct landing_date) from raw.load_log where load_id = 'failed'"
                       ).fetchone()[0] == 2
    broken.write_text(f"event_id,user_id,occurred_at,event_type\ne3,u1,{days[2]}T10:00:00Z,view\n")
    result = load_source(con, "events", mapping, landing, days, slice_days=1)
    assert result.reconciles and result.rows_in_table == 4


def test_the_quarantine_policy_is_configurable(con, tmp_path):
    """null_values and plausible_times in the sources config: a listed word is no value, times before `earliest` or
    more than `days_after_landing` after the landing day are quarantined."""
    mappings = parse_mappings({"null_values": ["-", "missing"],
                               "plausible_times": {"earliest": "2026-01-01", "days_after_landing": 0}})
    landing = tmp_path / "landing"
    write(landing, "events/2026-05-01.csv", "event_id,user_id,occurred_at,event_type,value\n"
          "e1,u1,2026-05-01T10:00:00Z,purchase,-\n"  # '-' is no value here
          "e2,missing,2026-05-01T10:00:00Z,view,\n"  # a required id that is a null word
          "e3,u1,2025-12-31T23:59:59Z,view,\n"  # before earliest
          "e4,u1,2026-05-02T00:00:00Z,view,\n"  # the day after landing: not allowed with days_after_landing 0
          "e5,NULL,2026-05-01T23:59:59Z,view,\n")  # NULL is not a null word in this config: an id like another
    result = load_source(con, "events", mappings["events"], landing, [DAY])
    assert result.summary() == {"rows_read": 5, "rows_loaded": 2, "rows_duplicate": 0, "rows_quarantined": 3}
    assert [reason.split(":")[0] for _, reason in quarantine(con)] == [
        "missing required user_id (null-like", "implausible occurred_at", "implausible occurred_at"]
    assert con.execute("select event_id, user_id, value from raw.events order by 1").fetchall() == [
        ("e1", "u1", None), ("e5", "NULL", None)]
    with pytest.raises(MappingConfigError, match="days_after_landing"):
        parse_mappings({"plausible_times": {"days_after_landing": -1}})
