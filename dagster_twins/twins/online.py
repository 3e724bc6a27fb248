"""observe(): one interaction folded into a user's twin between batch runs, and recorded for the next run.

A product posts an event (the landing contract's ``events`` columns: event_type, occurred_at, topic, channel,
content_format, value, text, item_id, event_id). ``observe`` then

1. validates it, with a reason for anything it refuses (``EventError``);
2. appends it as a landing row to ``<landing_dir>/events/observed-<receipt day>.jsonl``, so the next batch run
   ingests it like any landing file (its ``event_id``, given or ``online-<uuid>``, makes a retry idempotent:
   ingestion dedupes on it, and so does the online store);
3. keeps it in the online store (``OnlineStore``: a small SQLite file under ``<data>/online/``, never the
   read-only serving copy) until a published batch run holds it.

A read of a user with pending events refolds them onto the user's batch state in the serving copy
(``twins.belief_state`` of the copy's as-of day): ``online_fold`` on dicts and small arrays, held equal to the
twins' frame functions here (``event_evidence``, ``state.fold``, then ``summarize_bucket`` under the copy's priors:
``online_twin``), so the online twin is exactly what a batch run would compute from the same state, the same priors
and the same evidence. Reconciling is by event: when a newly published copy holds an
event (``marts.fct_events`` has its interaction id), the event leaves the online store; it is in the batch state
now, so it is never counted twice, and the twin is the batch's (the property ``tests/test_twin_online.py`` holds).

What the online update does not do (the next batch run does): match topics and goals from ``text`` (the
taxonomy lives in dbt), re-estimate the population priors, learn categories the copy has never seen, and update
churn predictions. Only the ``events`` source is accepted online.
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
import threading
import unicodedata
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from dagster_twins.contract import EARLIEST_PLAUSIBLE_TIME, MONEY_MAX, SOURCES
from dagster_twins.twins.catalog import BELIEFS, evidence_sql
from dagster_twins.twins.state import KEY, fold
from dagster_twins.twins.summarize import Priors
from dagster_twins.twins.update import summarize_bucket

EVENT_COLUMNS = tuple(c.name for c in SOURCES["events"].columns)
TEXT_LIMIT = 10_000  # characters of a free-text field
ID_LIMIT = 200


class EventError(ValueError):
    """An event that cannot be observed; the message says why (the API answers 422 with it)."""


def _utc(value: Any, field: str) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise EventError(f"{field}: {value!r} is not an ISO 8601 time (e.g. 2026-05-01T12:30:00Z)") from exc
    else:
        raise EventError(f"{field}: expected an ISO 8601 time as text, got {type(value).__name__}")
    return (parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)).replace(tzinfo=None)


def check_id(value: Any, field: str = "user_id") -> str:
    """An identifier as the contract accepts it: text, at most 200 characters, no control or invisible character."""
    if not isinstance(value, str) or not value.strip():
        raise EventError(f"{field}: must be non-empty text")
    if len(value) > ID_LIMIT:
        raise EventError(f"{field}: longer than {ID_LIMIT} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value) or value != value.strip():
        raise EventError(f"{field}: contains a control or invisible character, or surrounding spaces")
    return unicodedata.normalize("NFC", value)


def _text(value: Any, field: str, free: bool = False) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(f"{field}: expected text, got {type(value).__name__}")
    if "\x00" in value:
        raise EventError(f"{field}: contains a NUL character")
    if len(value) > (TEXT_LIMIT if free else ID_LIMIT):
        raise EventError(f"{field}: longer than {TEXT_LIMIT if free else ID_LIMIT} characters")
    value = unicodedata.normalize("NFC", value if free else value.strip())
    return value or None


def _money(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise EventError(f"value: expected a number, got {type(value).__name__}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise EventError(f"value: {value!r} is not a number") from exc
    if not amount.is_finite() or amount < 0 or amount > Decimal(str(MONEY_MAX)):
        raise EventError(f"value: {value!r} is outside 0 .. {MONEY_MAX:,.2f}")
    if amount != amount.quantize(Decimal("0.01")):
        raise EventError(f"value: {value!r} has more than 2 decimal places")
    return f"{amount:.2f}"


def parse_event(user_id: str, body: Mapping[str, Any], received_at: datetime) -> dict[str, Any]:
    """One event as a landing row of the ``events`` contract, or an ``EventError`` naming what is wrong."""
    if not isinstance(body, Mapping):
        raise EventError("the body must be a JSON object of event fields")
    unknown = sorted(set(body) - set(EVENT_COLUMNS))
    if unknown:
        raise EventError(f"unknown fields {unknown}; an event has {sorted(set(EVENT_COLUMNS) - {'user_id'})}")
    user_id = check_id(user_id)
    if body.get("user_id") not in (None, user_id):
        raise EventError(f"user_id: the body names {body['user_id']!r}, the path {user_id!r}")
    event_type = _text(body.get("event_type"), "event_type")
    if not event_type:
        raise EventError("event_type: required (e.g. view, click, purchase)")
    occurred = _utc(body["occurred_at"], "occurred_at") if body.get("occurred_at") is not None else received_at
    latest = datetime.combine(received_at.date() + timedelta(days=2), datetime.min.time())
    if occurred < datetime.combine(EARLIEST_PLAUSIBLE_TIME, datetime.min.time()) or occurred >= latest:
        raise EventError(f"occurred_at: {occurred.isoformat()} is not plausible (after the day after today, or "
                         f"before {EARLIEST_PLAUSIBLE_TIME})")
    given_id = body.get("event_id")
    event_id = check_id(given_id, "event_id") if given_id is not None else f"online-{uuid.uuid4().hex}"
    return {
        "event_id": event_id, "user_id": user_id, "occurred_at": occurred.isoformat(sep=" ") + "+00:00",
        "event_type": event_type, "topic": _text(body.get("topic"), "topic"),
        "item_id": _text(body.get("item_id"), "item_id"), "channel": _text(body.get("channel"), "channel"),
        "content_format": _text(body.get("content_format"), "content_format"), "value": _money(body.get("value")),
        "text": _text(body.get("text"), "text", free=True),
    }


_LOCAL = threading.local()


def _local_duckdb() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection per thread (opening one costs more than the query it runs)."""
    con = getattr(_LOCAL, "con", None)
    if con is None:
        con = _LOCAL.con = duckdb.connect()
    return con


def event_evidence(rows: Iterable[Mapping[str, Any]], landed_on: Mapping[str, date],
                   purchase_event_types: Iterable[str]) -> pd.DataFrame:
    """The twins' daily evidence (user_id, belief, category, stat_a, stat_b, day) of landing rows of ``events``,
    through the batch's own query (``catalog.evidence_sql``) over the columns ``marts.fct_events`` gives an
    ``events`` row (staging lower-cases the codes; spend is the value of a purchase type). A row's day is clipped
    to its landing day, as the batch does."""
    purchases = {t.lower() for t in purchase_event_types}
    frame = pd.DataFrame([{
        "user_id": r["user_id"], "source": "events", "interaction_type": r["event_type"].lower(),
        "is_user_initiated": True, "topic": (r["topic"] or "").lower() or None,
        "channel": (r["channel"] or "").lower() or None,
        "content_format": (r["content_format"] or "").lower() or None, "goal": None,
        "spend": float(r["value"] or 0) if r["event_type"].lower() in purchases else 0.0,
        "activity_date": pd.Timestamp(r["occurred_at"][:10]),
        "landed": pd.Timestamp(landed_on[r["event_id"]]),
    } for r in rows], columns=["user_id", "source", "interaction_type", "is_user_initiated", "topic", "channel",
                               "content_format", "goal", "spend", "activity_date", "landed"])
    con = _local_duckdb()
    con.register("online_events", frame.astype({"goal": object}))
    try:
        evidence = con.sql(evidence_sql("online_events", "true")).df()
        landed = con.sql("select user_id, max(landed) as landed from online_events group by all").df()
    finally:
        con.unregister("online_events")
    if evidence.empty:
        return evidence
    day = pd.to_datetime(evidence["day"])
    evidence["day"] = day.clip(upper=pd.to_datetime(evidence["user_id"].map(dict(landed.to_numpy())))) \
        if len(landed) else day
    # One event's evidence rows per day: summed as the batch's group by does over a day's rows.
    return evidence.groupby([*KEY, "day"], as_index=False)[["stat_a", "stat_b"]].sum()


@dataclass(frozen=True)
class Batch:
    """What a read needs of the published batch for one user: the copy's as-of day, the user's saved state, their
    first day of exposure, the copy's priors and categories, and the twins' half-life."""

    as_of: date
    state: pd.DataFrame
    first_day: pd.Timestamp
    priors: Priors
    categories: dict[str, list[str]]
    half_life_days: float


def priors_from_frame(frame: pd.DataFrame) -> tuple[Priors, dict[str, list[str]]]:
    """``Priors`` and the share categories back from ``twins.belief_priors`` rows of one day (in category order)."""
    params: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    categories: dict[str, list[str]] = {name: [] for name in BELIEFS}
    for name, rows in frame.groupby("belief", sort=False):
        params[str(name)] = (rows["param_1"].to_numpy(dtype=float), rows["param_2"].to_numpy(dtype=float))
        if BELIEFS[str(name)].family == "dirichlet":
            categories[str(name)] = rows["category"].astype(str).tolist()
    return Priors(params, frame), categories


def online_state(batch: Batch, evidence: pd.DataFrame) -> tuple[pd.DataFrame, date]:
    """The user's state with the pending evidence folded onto the batch state, as of the latest of the batch's
    day and the evidence's days."""
    as_of = max([batch.as_of, *pd.to_datetime(evidence["day"]).dt.date]) if len(evidence) else batch.as_of
    return fold(batch.state, batch.as_of, evidence, as_of, batch.half_life_days), as_of


def online_twin(batch: Batch, user_id: str, evidence: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, date]:
    """The user's beliefs and twin row with the pending evidence folded in: the batch's own summary under the
    batch's priors, so an event observed online moves the twin exactly as the batch would from the same state."""
    users = pd.DataFrame({"user_id": [user_id], "first_day": [batch.first_day]})
    return next(iter(online_twins(batch, users, evidence)))


def online_twins(batch: Batch, users: pd.DataFrame, evidence: pd.DataFrame) \
        -> Iterator[tuple[pd.DataFrame, pd.DataFrame, date]]:
    """``online_twin`` for many users at once (``batch.state`` holds all their states, ``users`` their user_id and
    first_day): one fold and one summary per as-of day among them, not one per user. The frame reference the
    API's one-user refold (``online_fold``) is tested against; the as-of route summarizes a kept state with it."""
    days = pd.to_datetime(evidence["day"]).dt.date if len(evidence) else pd.Series(dtype=object)
    as_of_of = {u: max([batch.as_of, *days[evidence["user_id"] == u]]) for u in users["user_id"]}
    for as_of in sorted(set(as_of_of.values())):
        group = [u for u, d in as_of_of.items() if d == as_of]
        state = fold(batch.state[batch.state["user_id"].isin(group)], batch.as_of,
                     evidence[evidence["user_id"].isin(group)], as_of, batch.half_life_days)
        beliefs, twins = summarize_bucket(state, users[users["user_id"].isin(group)], batch.categories,
                                          batch.priors, as_of, batch.half_life_days)
        yield beliefs, twins, as_of


class OnlineStore:
    """Events observed since the last published batch run (and the documents refolded from them), in a SQLite
    file the API writes: WAL mode, one connection per process behind a lock (each statement takes microseconds)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._con = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._con.execute("pragma journal_mode = wal")
        self._con.execute("pragma synchronous = normal")
        self._con.execute("create table if not exists events (event_id text primary key, user_id text not null, "
                          "landing_day text not null, received_at text not null, row text not null)")
        self._con.execute("create index if not exists events_by_user on events (user_id)")
        self._con.execute("create table if not exists documents (user_id text primary key, base_as_of text not null, "
                          "events integer not null, document text not null)")

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def has(self, event_id: str) -> bool:
        with self._lock:
            return self._con.execute("select 1 from events where event_id = ?", [event_id]).fetchone() is not None

    def add(self, row: Mapping[str, Any], landed: date, received_at: str) -> bool:
        """Keep an event; False when its event_id is already kept (a retry)."""
        with self._lock:
            cur = self._con.execute("insert or ignore into events values (?, ?, ?, ?, ?)",
                                    [row["event_id"], row["user_id"], landed.isoformat(), received_at,
                                     json.dumps(dict(row), sort_keys=True)])
            return cur.rowcount == 1

    def pending(self, user_id: str) -> list[tuple[dict[str, Any], date, str]]:
        """The user's events not yet in a published batch: (landing row, landing day, received at), oldest first."""
        with self._lock:
            rows = self._con.execute("select row, landing_day, received_at from events where user_id = ? "
                                     "order by received_at, event_id", [user_id]).fetchall()
        return [(json.loads(r), date.fromisoformat(d), t) for r, d, t in rows]

    def users(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._con.execute("select distinct user_id from events").fetchall()]

    def event_ids(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._con.execute("select event_id from events").fetchall()]

    def reconcile(self, in_batch: Iterable[str]) -> int:
        """Forget the events a published batch holds, and every refolded document (their base changed)."""
        ids = [[i] for i in in_batch]
        with self._lock:
            self._con.execute("begin")
            self._con.executemany("delete from events where event_id = ?", ids)
            self._con.execute("delete from documents")
            self._con.execute("commit")
        return len(ids)

    def cached(self, user_id: str, base_as_of: date, events: int) -> str | None:
        with self._lock:
            row = self._con.execute("select document from documents where user_id = ? and base_as_of = ? and "
                                    "events = ?", [user_id, base_as_of.isoformat(), events]).fetchone()
        return row[0] if row else None

    def cache(self, user_id: str, base_as_of: date, events: int, document: str) -> None:
        with self._lock:
            self._con.execute("insert or replace into documents values (?, ?, ?, ?)",
                              [user_id, base_as_of.isoformat(), events, document])


class LandingWriter:
    """Appends observed events to ``<landing_dir>/events/observed-<day>.jsonl`` (one JSON object a line, the
    contract's column names), under an exclusive file lock, flushed before ``append`` returns."""

    def __init__(self, landing_dir: Path):
        self.folder = landing_dir / "events"
        self._lock = threading.Lock()

    def path_for(self, day: date) -> Path:
        return self.folder / f"observed-{day.isoformat()}.jsonl"

    def append(self, row: Mapping[str, Any], day: date) -> Path:
        path = self.path_for(day)
        line = (json.dumps(dict(row), ensure_ascii=False, sort_keys=True) + "\n").encode()
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(path, "ab") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    handle.write(line)
                    handle.flush()
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        return path


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def stamp(moment: datetime) -> str:
    return moment.replace(microsecond=(moment.microsecond // 1000) * 1000).isoformat(timespec="milliseconds") + "Z"
