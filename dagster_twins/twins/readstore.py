"""The API's point-lookup copy of one serving copy: documents, the latest belief state and first days, in SQLite.

DuckDB scans: a lookup of one user's document in a million-row table took 25 to 90 ms here (sorted or not, with an
ART index 9 ms), too slow for a p99 under 20 ms. SQLite's B-tree finds a row by key in tens of microseconds. So when
the API sees a newly published serving copy it copies what reads and observe() need into ``read.sqlite`` beside its
link to that copy (one pass, journal off, keys indexed after), and answers from it; the serving copy stays the source
and the read store is thrown away with the link when the next copy replaces it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

from dagster_twins.twins.state import STATE_COLUMNS
from dagster_twins.warehouse.tables import table_exists

BATCH_ROWS = 20_000


def build(con: duckdb.DuckDBPyConnection, as_of: date | None, data_start, path: Path) -> dict:
    """Write the read store of the serving copy behind ``con`` to ``path`` (atomically: a temporary file renamed)."""
    started = time.perf_counter()
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    out = sqlite3.connect(str(tmp), isolation_level=None)
    try:
        out.execute("pragma journal_mode = off")
        out.execute("pragma synchronous = off")
        # Rows appended in the copy's order, the key indexed after: sorting 8 KB documents to insert them in key
        # order cost more than the index built over the keys alone.
        out.execute("create table documents (user_id text not null, document text not null)")
        out.execute("create table state (user_id text not null, belief text not null, category text not null, "
                    "stat_a real, stat_b real, n_evidence real, last_evidence_day text)")
        out.execute("create table users (user_id text not null, first_day text)")
        counts = {}
        queries = {
            "documents": "select user_id, document from twins.user_documents",
            "state": (f"select {', '.join(STATE_COLUMNS)} from twins.belief_state where as_of = ?", [as_of]),
            "users": ("select user_id, cast(greatest(coalesce(signed_up_at, first_seen_at), ?) as date) "
                      "from marts.dim_users", [data_start]),
        }
        present = {"documents": table_exists(con, "twins", "user_documents"),
                   "state": table_exists(con, "twins", "belief_state") and as_of is not None,
                   "users": table_exists(con, "marts", "dim_users")}
        for table, query in queries.items():
            counts[table] = 0
            if not present[table]:
                continue
            sql, params = query if isinstance(query, tuple) else (query, [])
            reader = con.cursor().execute(sql, params).fetch_record_batch(BATCH_ROWS)
            marks = ", ".join("?" * len(reader.schema.names))
            out.execute("begin")
            for batch in reader:
                rows = list(zip(*(column.to_pylist() for column in batch.columns), strict=True))
                if table == "state":
                    rows = [(*r[:6], None if r[6] is None else str(r[6])) for r in rows]
                elif table == "users":
                    rows = [(r[0], None if r[1] is None else str(r[1])) for r in rows]
                out.executemany(f"insert into {table} values ({marks})", rows)
                counts[table] += len(rows)
            out.execute("commit")
        out.execute("create unique index documents_by_user on documents (user_id)")
        out.execute("create index state_by_user on state (user_id)")
        out.execute("create unique index users_by_user on users (user_id)")
    finally:
        out.close()
    os.replace(tmp, path)
    return {**counts, "seconds": round(time.perf_counter() - started, 2)}


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

    def document(self, user_id: str) -> str | None:
        row = self._con().execute("select document from documents where user_id = ?", [user_id]).fetchone()
        return row[0] if row else None

    def state(self, user_id: str) -> pd.DataFrame:
        rows = self._con().execute(f"select {', '.join(STATE_COLUMNS)} from state where user_id = ?",
                                   [user_id]).fetchall()
        frame = pd.DataFrame(rows, columns=STATE_COLUMNS)
        frame["last_evidence_day"] = pd.to_datetime(frame["last_evidence_day"])
        return frame.astype({"stat_a": float, "stat_b": float, "n_evidence": float})

    def first_day(self, user_id: str) -> pd.Timestamp | None:
        row = self._con().execute("select first_day from users where user_id = ?", [user_id]).fetchone()
        return pd.Timestamp(row[0]) if row and row[0] else None
