"""Load the landing files of one source for a set of landing dates into ``raw.<source>``.

Idempotent by construction: the rows of those landing dates are replaced (a few days per transaction), and a
row whose key (``_row_id``) is already loaded from another date, or repeats within the batch, is
counted as a duplicate instead of loaded. Malformed rows go to ``raw.quarantine`` with file, line
and reason. For every file, rows read = loaded + duplicate + quarantined.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import duckdb
import pandas as pd

from dagster_twins.contract import (
    CONFLICTS_TABLE,
    FILE_INDEX_TABLE,
    LOAD_LOG_TABLE,
    QUARANTINE_TABLE,
    RAW_SCHEMA,
    SOURCES,
)
from dagster_twins.ingestion.files import LandingFile, Notice, modified_day, root_notices, scan
from dagster_twins.ingestion.mapping import SourceMapping
from dagster_twins.ingestion.raw_schema import ensure_raw_schema, raw_table
from dagster_twins.ingestion.readers import FileRead, Refused, Shape, file_shape, read_files, refuse_outcome
from dagster_twins.ingestion.validate import (
    LANDING_DATES,
    MissingColumnError,
    check_required_columns,
    ensure_zones,
    row_id_expr,
    validation_query,
)
from dagster_twins.warehouse.sql import quote_ident, sql_literal
from dagster_twins.warehouse.tables import append_rows, registered

log = logging.getLogger(__name__)

_BATCH = "_landing_batch"


@dataclass(frozen=True)
class FileStats:
    source_file: str
    landing_date: date
    rows_read: int
    rows_loaded: int
    rows_duplicate: int
    rows_quarantined: int
    status: str = "loaded"  # loaded | refused (quarantined whole) | skipped (not read; see message)
    message: str = ""
    rows_conflicting: int = 0  # duplicates whose content differs from the row kept (raw.conflicts)

    @property
    def reconciles(self) -> bool:
        return self.rows_read == self.rows_loaded + self.rows_duplicate + self.rows_quarantined


@dataclass
class LoadResult:
    source: str
    landing_dates: list[date]
    files: list[FileStats] = field(default_factory=list)
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    rows_in_table: int = 0
    notices: list[FileStats] = field(default_factory=list)  # what was not read under the source's folder

    def total(self, attr: str) -> int:
        return sum(getattr(f, attr) for f in self.files)

    @property
    def reconciles(self) -> bool:
        return all(f.reconciles for f in self.files)

    @property
    def refused(self) -> list[FileStats]:
        return [f for f in self.files if f.status == "refused"]

    def summary(self) -> dict[str, int]:
        return {
            name: self.total(name)
            for name in ("rows_read", "rows_loaded", "rows_duplicate", "rows_quarantined")
        }


def _file_index_date(con: duckdb.DuckDBPyConnection, source: str, file: LandingFile) -> date | None:
    stat = file.path.stat()
    row = con.execute(
        f"select landing_date from {RAW_SCHEMA}.{FILE_INDEX_TABLE} where source = ? and source_file = ? "
        "and size_bytes = ? and modified_ns = ?",
        [source, str(file.path), stat.st_size, stat.st_mtime_ns],
    ).fetchone()
    return row[0] if row else None


def _stage(
    con: duckdb.DuckDBPyConnection, source: str, mapping: SourceMapping, files: dict[LandingFile, date]
) -> dict[str, FileRead]:
    """Read, validate and append the files' rows to the batch table, file by file (validated together per format,
    and per schema for Parquet). Every CSV and Parquet file's required columns are checked before any row is read
    (a missing one fails the source: MissingColumnError); a file that cannot be read is refused and quarantined
    whole. Returns each file's outcome."""
    contract = SOURCES[source]
    wanted = {mapping.file_column(c) for c in contract.column_names}
    outcomes: dict[str, FileRead] = {}
    by_format: dict[str, list[LandingFile]] = defaultdict(list)
    for file in sorted(files, key=lambda f: str(f.path)):
        by_format[file.format].append(file)
    ensure_zones(con)
    dates = pd.DataFrame({
        "_source_file": [str(f.path) for f in files],
        "_landing_date": [d for d in files.values()],
        # Times are plausible up to a day after the landing day; an undated file's landing day is not known yet,
        # so the day it was last written bounds them.
        "_bound_day": [d if d != date.min else modified_day(f.path) for f, d in files.items()],
    })
    with registered(con, dates) as landing_dates:
        con.execute(f"create or replace temp table {LANDING_DATES} as select _source_file, "
                    f"cast(_landing_date as date) as _landing_date, cast(_bound_day as date) as _bound_day "
                    f"from {landing_dates}")
    for fmt, group in by_format.items():
        shapes: dict[str, Shape] = {}
        readable = []
        for file in group:
            if fmt == "jsonl" or file.is_empty:
                readable.append(file)
                continue
            try:
                shapes[str(file.path)] = file_shape(file, wanted)
            except Refused as exc:
                outcomes[str(file.path)] = refuse_outcome(file, exc)
                continue
            check_required_columns(contract, mapping, set(shapes[str(file.path)].columns), str(file.path))
            readable.append(file)
        for read in read_files(con, fmt, readable, shapes, wanted):
            outcomes.update(read.files)
            if fmt == "jsonl":
                for path, outcome in read.files.items():
                    if outcome.keys is not None:
                        check_required_columns(contract, mapping, outcome.keys, path)
            if not any(o.rows for o in read.files.values()):
                continue
            query = validation_query(contract, mapping, read.columns, has_raw_line=fmt == "jsonl")
            row_id = row_id_expr(contract, mapping, read.columns)
            con.execute(f"insert into {_BATCH} by name select v.*, {row_id} as _row_id from ({query}) v")
    landing_of = {str(f.path): d for f, d in files.items()}
    for path, outcome in outcomes.items():
        landing = landing_of[path]
        rows = [(line, reason, raw) for line, reason, raw in outcome.rejects]
        if outcome.refused:
            rows = [(outcome.refused_line, f"file refused: {outcome.refused}", outcome.head)]
        if rows:
            con.executemany(
                f"insert into {_BATCH} (_source_line, _reason, _record, _row_id, _source_file, _landing_date) "
                "values (?, ?, ?, '', ?, ?)", [(line, reason, raw, path, landing) for line, reason, raw in rows])
    return outcomes


def _create_batch(con: duckdb.DuckDBPyConnection, source: str) -> None:
    con.execute(f"drop table if exists {_BATCH}")
    con.execute(
        f"create temp table {_BATCH} as select * exclude (_landing_date, _loaded_at), "
        f"null::varchar as _reason, null::varchar as _record, null::date as _landing_date "
        f"from {raw_table(source)} limit 0"
    )


@contextmanager
def scratch_database() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory database with the raw schema, where undated files are read to find their landing day."""
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    try:
        ensure_raw_schema(con)
        yield con
    finally:
        con.close()


def landing_date_of(
    con: duckdb.DuckDBPyConnection, source: str, mapping: SourceMapping, file: LandingFile
) -> date:
    """The date in the file's path, else (cached) the date of its latest plausible timestamp: rows dated after the
    day after the file was last written are quarantined first, so one far-future row cannot plan a run over
    centuries. A file without one valid time lands on the day it was last written."""
    if file.path_date is not None:
        return file.path_date
    cached = _file_index_date(con, source, file)
    if cached is not None:
        return cached
    contract = SOURCES[source]
    _create_batch(con, source)
    try:
        _stage(con, source, mapping, {file: date.min})
        latest = con.execute(
            f"select max({quote_ident(contract.time_column)}) from {_BATCH} where _reason is null"
        ).fetchone()[0]
    except MissingColumnError:
        latest = None  # the real load reports it, naming the file
    landing = latest.date() if latest else modified_day(file.path)
    stat = file.path.stat()
    con.execute(
        f"insert into {RAW_SCHEMA}.{FILE_INDEX_TABLE} values (?, ?, ?, ?, ?)",
        [source, str(file.path), stat.st_size, stat.st_mtime_ns, landing],
    )
    return landing


def files_by_landing_date(
    con: duckdb.DuckDBPyConnection, source: str, mapping: SourceMapping, landing_root: Path
) -> dict[LandingFile, date]:
    files, _ = scan(landing_root / mapping.folder, landing_root)
    return {f: landing_date_of(con, source, mapping, f) for f in files}


def landing_notices(landing_root: Path, mappings: dict[str, SourceMapping]) -> dict[str, list[Notice]]:
    """What is not read under the landing root, by source ('' for the root itself: unknown folders and files)."""
    notices = {"": root_notices(landing_root, [m.folder for m in mappings.values()])}
    for source, mapping in mappings.items():
        notices[source] = scan(landing_root / mapping.folder, landing_root)[1]
    return notices


# Landing days loaded per transaction. A backfill's files are read, validated and deduplicated a slice of days at
# a time, each slice committed, so its temporary tables, sorts and uncommitted rows stay the size of the slice: at
# a million users, 180 days in one transaction spilled tens of GB to disk.
LOAD_SLICE_DAYS = 7


def load_source(
    con: duckdb.DuckDBPyConnection,
    source: str,
    mapping: SourceMapping,
    landing_root: Path,
    landing_dates: Iterable[date],
    load_id: str | None = None,
    slice_days: int = LOAD_SLICE_DAYS,
    progress: Callable[[str], None] = log.info,
) -> LoadResult:
    """Replace ``raw.<source>`` rows of ``landing_dates`` with the landing files of those dates.

    The first transaction removes every row of the window (and its quarantine and conflicts) and loads its first
    slice of days; each later slice is its own transaction. A failure leaves the slices before it loaded and the
    rest of the window empty (never a half-loaded day), and the run fails: re-running the window loads it whole.
    What the source's folder holds but is not read (dangling symlinks, ...) is logged as skipped.
    """
    ensure_raw_schema(con)
    dates = sorted(set(landing_dates))
    load_id = load_id or uuid.uuid4().hex
    result = LoadResult(source, dates)
    wanted = {f: d for f, d in files_by_landing_date(con, source, mapping, landing_root).items() if d in dates}
    loaded_at = datetime.now().replace(microsecond=0)
    # Slices in date order: a key seen in an earlier slice is already in the table, so the earliest landing wins
    # exactly as if the window were ranked at once.
    for first in range(0, len(dates), slice_days):
        days = set(dates[first:first + slice_days])
        files = {f: d for f, d in wanted.items() if d in days}
        # Files are read and validated into the temporary batch before the slice's transaction: a statement DuckDB
        # fails on (a file its CSV reader gives up on) would abort the transaction, and only that file is refused.
        _create_batch(con, source)
        outcomes = _stage(con, source, mapping, files)
        con.execute("begin transaction")
        try:
            if first == 0:
                date_list = _date_list(dates)
                con.execute(f"delete from {raw_table(source)} where _landing_date in ({date_list})")
                for table in (QUARANTINE_TABLE, CONFLICTS_TABLE):
                    con.execute(f"delete from {RAW_SCHEMA}.{table} where source = ? "
                                f"and landing_date in ({date_list})", [source])
            stats = _load_slice(con, source, files, outcomes, loaded_at)
            _write_load_log(con, load_id, source, stats, loaded_at)
            con.execute("commit")
        except Exception:
            con.execute("rollback")
            raise
        finally:
            con.execute(f"drop table if exists {_BATCH}")
        result.files += stats
        if len(dates) > slice_days:  # a backfill: say how far it got
            progress(f"raw.{source}: landing days {min(days)} .. {max(days)} loaded "
                     f"({sum(f.rows_loaded for f in stats):,} rows; {len(result.files)} of {len(wanted)} files so far)")
    if dates:
        _, notices = scan(landing_root / mapping.folder, landing_root)
        result.notices = log_notices(con, load_id, source, notices, dates[0], loaded_at)

    result.quarantine_reasons = _reason_counts(con, source, dates)
    result.rows_in_table = int(con.execute(f"select count(*) from {raw_table(source)}").fetchone()[0])
    return result


def log_notices(con: duckdb.DuckDBPyConnection, load_id: str, source: str, notices: list[Notice],
                landing: date, loaded_at: datetime | None = None) -> list[FileStats]:
    """Log what was not read as ``skipped`` (no rows), so nothing under the landing root goes unmentioned."""
    stats = [FileStats(str(n.path), landing, 0, 0, 0, 0, status="skipped", message=n.message) for n in notices]
    if stats:
        _write_load_log(con, load_id, source, stats, loaded_at or datetime.now().replace(microsecond=0))
    return stats


def _date_list(dates: Iterable[date]) -> str:
    return ", ".join(f"date '{d.isoformat()}'" for d in dates) or "null"


def _load_slice(
    con: duckdb.DuckDBPyConnection, source: str, files: dict[LandingFile, date], outcomes: dict[str, FileRead],
    loaded_at: datetime,
) -> list[FileStats]:
    """Insert the staged batch's first row of each new key; rows of other keys are counted as duplicates (and
    recorded in raw.conflicts where their content differs from the row kept), malformed rows quarantined. Runs
    inside the slice's transaction (``load_source``)."""
    table = raw_table(source)
    # A good row is a duplicate when its key is already in the table (another landing date, or an earlier
    # slice) or appears earlier in this batch; only the first of each key is inserted: the first landing wins.
    # The keys already in the table come from an inner join, which builds its hash table on the (smaller) batch.
    con.execute(
        f"create or replace temp table _landing_seen as select distinct b._row_id from {_BATCH} b "
        f"join {table} t on t._row_id = b._row_id where b._reason is null"
    )
    con.execute(
        f"insert into {table} by name select * exclude (_reason, _record, _rank), "
        f"timestamp '{loaded_at}' as _loaded_at from (select *, row_number() over (partition by _row_id "
        f"order by _landing_date, _source_file, _source_line) as _rank from {_BATCH} where _reason is null "
        f"and _row_id not in (select _row_id from _landing_seen)) where _rank = 1"
    )
    conflicts = _record_conflicts(con, source, table, loaded_at)
    con.execute("drop table _landing_seen")
    con.execute(
        f"insert into {RAW_SCHEMA}.{QUARANTINE_TABLE} select {sql_literal(source)}, _source_file, "
        f"_source_line, _reason, _record, _landing_date, timestamp '{loaded_at}' "
        f"from {_BATCH} where _reason is not null"
    )
    per_file = con.execute(
        f"select _source_file, count(*) filter (where _reason is null), count(*) filter (where _reason is not null) "
        f"from {_BATCH} group by 1"
    ).fetchall()
    good = {f: int(n) for f, n, _ in per_file}
    bad = {f: int(n) for f, _, n in per_file}
    loaded_per_file = dict(con.execute(
        f"select _source_file, count(*) from {table} where _landing_date in ({_date_list(set(files.values()))}) "
        "group by 1"
    ).fetchall())
    stats = []
    for file, landing in sorted(files.items(), key=lambda item: (item[1], str(item[0].path))):
        key = str(file.path)
        outcome = outcomes.get(key) or FileRead(key)
        loaded = int(loaded_per_file.get(key, 0))
        read = outcome.rows + len(outcome.rejects) + (1 if outcome.refused else 0)
        status = "refused" if outcome.refused else "loaded"
        stats.append(FileStats(key, landing, read, loaded, good.get(key, 0) - loaded, bad.get(key, 0), status,
                               outcome.refused or outcome.note, conflicts.get(key, 0)))
    return stats


def _record_conflicts(con: duckdb.DuckDBPyConnection, source: str, table: str, loaded_at: datetime) -> dict[str, int]:
    """Duplicates whose contract columns differ from the row kept (the first landing): both versions go to
    raw.conflicts, the kept one untouched in the table. Returns conflicts per file."""
    contract = SOURCES[source]
    columns = contract.column_names

    def record(alias: str) -> str:
        return "cast(struct_pack(" + ", ".join(
            f"{quote_ident(c)} := cast({alias}.{quote_ident(c)} as varchar)" for c in columns) + ") as varchar)"

    differ = " or ".join(f"d.{quote_ident(c)} is distinct from k.{quote_ident(c)}" for c in columns)
    differing = "concat_ws(', ', " + ", ".join(
        f"case when d.{quote_ident(c)} is distinct from k.{quote_ident(c)} then {sql_literal(c)} end"
        for c in columns) + ")"
    con.execute(
        f"insert into {RAW_SCHEMA}.{CONFLICTS_TABLE} select {sql_literal(source)}, d._row_id, d._landing_date, "
        f"d._source_file, d._source_line, {record('d')}, k._landing_date, k._source_file, k._source_line, "
        f"{record('k')}, {differing}, timestamp '{loaded_at}' "
        f"from (select b.* from {_BATCH} b where b._reason is null and b._row_id in (select _row_id from "
        f"_landing_seen union all select _row_id from {_BATCH} where _reason is null group by 1 "
        f"having count(*) > 1)) d "
        # the kept row is in the table now; the duplicate is any other row of its key
        f"join {table} k on k._row_id = d._row_id and (k._source_file <> d._source_file or "
        f"k._source_line is distinct from d._source_line or k._landing_date <> d._landing_date) where {differ}"
    )
    return dict(con.execute(
        f"select source_file, count(*) from {RAW_SCHEMA}.{CONFLICTS_TABLE} where source = ? "
        f"and loaded_at = timestamp '{loaded_at}' group by 1", [source]).fetchall())


def _write_load_log(
    con: duckdb.DuckDBPyConnection, load_id: str, source: str, files: list[FileStats], loaded_at: datetime
) -> None:
    log_rows = pd.DataFrame(
        [(load_id, source, f.source_file, f.landing_date, f.rows_read, f.rows_loaded, f.rows_duplicate,
          f.rows_quarantined, loaded_at, f.status, f.message or None, f.rows_conflicting) for f in files],
        columns=["load_id", "source", "source_file", "landing_date", "rows_read", "rows_loaded",
                 "rows_duplicate", "rows_quarantined", "loaded_at", "status", "message", "rows_conflicting"],
    )
    append_rows(con, RAW_SCHEMA, LOAD_LOG_TABLE, log_rows)


def _reason_counts(con: duckdb.DuckDBPyConnection, source: str, dates: list[date]) -> dict[str, int]:
    if not dates:
        return {}
    date_list = _date_list(dates)
    # Group by the kind of problem (the text before the offending value) so the counts stay readable.
    rows = con.execute(
        f"select split_part(reason, ':', 1) as kind, count(*) from {RAW_SCHEMA}.{QUARANTINE_TABLE} "
        f"where source = ? and landing_date in ({date_list}) group by 1 order by 2 desc",
        [source],
    ).fetchall()
    return {kind: int(n) for kind, n in rows}
