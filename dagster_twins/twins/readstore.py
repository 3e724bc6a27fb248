"""The API's point-lookup copy of one serving copy: documents, the latest belief state and first days, in SQLite.

DuckDB scans: a lookup of one user's document in a million-row table took 25 to 90 ms here (sorted or not, with an
ART index 9 ms), too slow for a p99 under 20 ms. SQLite's B-tree finds a row by key in tens of microseconds. So when
the API sees a newly published serving copy it copies what reads and observe() need into ``read.sqlite`` beside its
link to that copy (one row a user, in key order, journal off), and answers from it; the serving copy stays the source
and the read store is thrown away with the link when the next copy replaces it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

from dagster_twins.twins.state import STATE_COLUMNS
from dagster_twins.warehouse.tables import relation_exists, table_exists

BATCH_ROWS = 5_000
# A user's state in the store: one JSON array of [belief, category, stat_a, stat_b, n_evidence, last_evidence_day]
# rows (60 SQLite rows a user cost a minute a million users to insert, and a 60-row lookup per read).
_STATE_FIELDS = STATE_COLUMNS[1:]


def build(con: duckdb.DuckDBPyConnection, as_of: date | None, data_start, path: Path) -> dict:
    """Write the read store of the serving copy behind ``con`` to ``path`` (atomically: a temporary file renamed).

    One row a user (document, state, first day) in a ``without rowid`` table keyed by user, inserted in key order
    (DuckDB sorts; SQLite appends to its B-tree's last page): one pass, no index to build after."""
    started = time.perf_counter()
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    present = {"documents": relation_exists(con, "twins", "user_documents"),
               "state": table_exists(con, "twins", "belief_state") and as_of is not None,
               "users": table_exists(con, "marts", "dim_users")}
    parts = {"documents": "select user_id, document from twins.user_documents",
             "state": ("select user_id, cast(json_group_array(json_array(belief, category, stat_a, stat_b, "
                       "n_evidence, cast(last_evidence_day as date))) as varchar) as state "
                       "from twins.belief_state where as_of = $as_of group by user_id"),
             "users": ("select user_id, cast(cast(greatest(coalesce(signed_up_at, first_seen_at), $start) as date) "
                       "as varchar) as first_day from marts.dim_users")}
    empty = {"documents": "select null::varchar as user_id, null::varchar as document limit 0",
             "state": "select null::varchar as user_id, null::varchar as state limit 0",
             "users": "select null::varchar as user_id, null::varchar as first_day limit 0"}
    sql = " ".join(f"{name} as ({parts[name] if present[name] else empty[name]})," for name in parts)
    sql = (f"with {sql.rstrip(',')} select user_id, document, state, first_day from documents "
           "full join state using (user_id) full join users using (user_id) order by user_id")
    params = {k: v for k, v in (("as_of", as_of), ("start", data_start)) if f"${k}" in sql}
    reader = con.cursor().execute(sql, params).fetch_record_batch(BATCH_ROWS)
    counts = {"users": 0, "documents": 0, "states": 0}

    def rows() -> Iterator[tuple]:
        for batch in reader:
            counts["users"] += batch.num_rows
            counts["documents"] += batch.num_rows - batch.column(1).null_count
            counts["states"] += batch.num_rows - batch.column(2).null_count
            yield from zip(*(column.to_pylist() for column in batch.columns), strict=True)

    write(tmp, rows())
    os.replace(tmp, path)
    return {**counts, "seconds": round(time.perf_counter() - started, 2), "bytes": path.stat().st_size}


def write(path: Path, rows: Iterable[tuple]) -> None:
    """A read store at ``path`` from ``rows`` (user_id, document, state, first_day) in user order: one
    transaction, journal off, appended to the B-tree's last page (the daily build and the benchmark's clone)."""
    out = sqlite3.connect(str(path), isolation_level=None)
    try:
        out.execute("pragma journal_mode = off")
        out.execute("pragma synchronous = off")
        out.execute("pragma page_size = 8192")
        out.execute("create table twins (user_id text primary key, document text, state text, first_day text) "
                    "without rowid")
        out.execute("begin")
        out.executemany("insert into twins values (?, ?, ?, ?)", rows)
        out.execute("commit")
    finally:
        out.close()


class ReadStore:
    """Read-only lookups in a built read store, one SQLite connection per thread."""

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        return con

    def _one(self, column: str, user_id: str) -> str | None:
        row = self._con().execute(f"select {column} from twins where user_id = ?", [user_id]).fetchone()
        return row[0] if row else None

    def document(self, user_id: str) -> str | None:
        return self._one("document", user_id)

    def state_rows(self, user_id: str) -> list[list]:
        """The user's latest state as the store keeps it: [belief, category, stat_a, stat_b, n_evidence,
        last_evidence_day] rows."""
        return json.loads(self._one("state", user_id) or "[]")

    def state(self, user_id: str) -> pd.DataFrame:
        rows = self.state_rows(user_id)
        frame = pd.DataFrame(rows, columns=_STATE_FIELDS)
        frame.insert(0, "user_id", user_id)
        frame["last_evidence_day"] = pd.to_datetime(frame["last_evidence_day"])
        return frame.astype({"belief": object, "category": object, "stat_a": float, "stat_b": float,
                             "n_evidence": float})

    def first_day(self, user_id: str) -> pd.Timestamp | None:
        text = self._one("first_day", user_id)
        return pd.Timestamp(text) if text else None

    def has(self, user_id: str) -> bool:
        """Whether the copy has a document of the user (without reading it)."""
        return self._con().execute("select 1 from twins where user_id = ? and document is not null",
                                   [user_id]).fetchone() is not None
