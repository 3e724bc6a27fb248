"""Reading landing files of one format, many at a time, into a temporary relation.

The relation keeps the files' own column names (the union over the files) plus ``_source_file``,
``_line`` (1-based line in the file, the header being line 1; the row number for Parquet) and
``_error`` (why the row could not be parsed at all, else NULL). Rows DuckDB's CSV reader rejects
outright (wrong number of fields, bad quoting, invalid UTF-8) are returned separately, so they can be
quarantined, not dropped. One query per format keeps the cost per file small: a daily backfill over
months reads hundreds of files.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass

import duckdb
import pyarrow.parquet as pq

from dagster_twins.ingestion.files import FileFormat, LandingFile
from dagster_twins.warehouse.sql import quote_ident, sql_literal

FILE_TABLE = "_landing_file"
JSON_KEYS_TABLE = "_landing_json_keys"  # (file, key) of every top-level key in a JSON Lines file's valid records
_REJECTS = "_landing_rejects"
_REJECT_SCANS = "_landing_reject_scans"
_BOOKKEEPING = ("_source_file", "_line", "_error", "_raw_line")


@dataclass(frozen=True)
class FilesRead:
    """Landing files read into the temp table ``FILE_TABLE``."""

    columns: dict[str, str]  # file column name -> DuckDB type, over all files read
    rows_per_file: dict[str, int]  # rows parsed, per file
    rejects: list[tuple[str, int, str, str]]  # (file, line, error, raw line) of rows that could not be parsed


def file_header(file: LandingFile) -> list[str]:
    """The columns a file declares, read cheaply (header line, Parquet schema, or JSON keys later)."""
    if file.is_empty:
        return []
    if file.format == "parquet":
        return list(pq.read_schema(file.path).names)
    if file.format == "csv":
        with file.path.open(newline="", encoding="utf-8", errors="replace") as f:
            first = f.readline()
        try:
            dialect = csv.Sniffer().sniff(first, delimiters=",;\t|")
        except csv.Error:
            dialect = csv.excel
        return [c.strip() for c in next(csv.reader([first.lstrip("\ufeff")], dialect), [])]
    raise ValueError(f"{file.path}: JSON Lines files have no header; their keys are read with the rows")


def read_files(con: duckdb.DuckDBPyConnection, fmt: FileFormat, files: list[LandingFile]) -> FilesRead:
    con.execute(f"drop table if exists {FILE_TABLE}")
    con.execute(f"create or replace temp table {JSON_KEYS_TABLE} (_source_file varchar, key varchar)")
    files = [f for f in files if not f.is_empty]  # an empty file has no header to read: zero rows, not an error
    if not files:
        con.execute(f"create temp table {FILE_TABLE} (_source_file varchar, _line bigint, _error varchar)")
        return FilesRead({}, {}, [])
    rejects = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}[fmt](con, files)
    columns = {
        name: type_
        for name, type_, *_ in con.execute(f"describe {FILE_TABLE}").fetchall()
        if name not in _BOOKKEEPING
    }
    per_file = dict(con.execute(f"select _source_file, count(*) from {FILE_TABLE} group by 1").fetchall())
    return FilesRead(columns, {str(f.path): int(per_file.get(str(f.path), 0)) for f in files}, rejects)


def _path_list(files: list[LandingFile]) -> str:
    return "[" + ", ".join(sql_literal(str(f.path)) for f in files) + "]"


def _read_csv(con: duckdb.DuckDBPyConnection, files: list[LandingFile]) -> list[tuple[str, int, str, str]]:
    # DuckDB cannot record rejected rows while unioning files by column name, so files are read in groups
    # that share a header, and the groups are unioned by name afterwards.
    groups: dict[tuple[str, ...], list[LandingFile]] = defaultdict(list)
    for file in files:
        groups[tuple(file_header(file))].append(file)
    rejects: list[tuple[str, int, str, str]] = []
    for i, group in enumerate(groups.values()):
        con.execute(f"drop table if exists {_REJECTS}; drop table if exists {_REJECT_SCANS}")
        # DuckDB keeps insertion order, so rowid follows the files in order and the rows within each file.
        con.execute(
            f"create temp table _landing_csv_{i} as select * from read_csv({_path_list(group)}, all_varchar = true, "
            f"header = true, filename = '_source_file', store_rejects = true, "
            f"rejects_table = '{_REJECTS}', rejects_scan = '{_REJECT_SCANS}')"
        )
        rejects += [
            (str(path), int(line), str(error), str(raw))
            for path, line, error, raw in con.execute(
                f"select s.file_path, e.line, string_agg(e.error_type || ': ' || e.error_message, '; '), "
                f"any_value(e.csv_line) from {_REJECTS} e join {_REJECT_SCANS} s "
                "on e.scan_id = s.scan_id and e.file_id = s.file_id group by 1, 2 order by 1, 2"
            ).fetchall()
        ]
    union = " union all by name ".join(f"select * from _landing_csv_{i}" for i in range(len(groups)))
    con.execute(f"create temp table _landing_csv as {union}")
    for i in range(len(groups)):
        con.execute(f"drop table _landing_csv_{i}")
    # Rows are numbered within their file in read order; where a file had rejected rows, good rows take
    # the line numbers the rejected rows leave free, in order.
    con.execute(
        "create temp table _landing_ranked as select *, "
        "row_number() over (partition by _source_file order by rowid) - 1 as _k from _landing_csv"
    )
    line = "_k + 2"
    if rejects:
        con.execute("create temp table _landing_reject_lines (_source_file varchar, line bigint)")
        con.executemany("insert into _landing_reject_lines values (?, ?)", [(p, n) for p, n, _, _ in rejects])
        con.execute(
            "create temp table _landing_free as "
            "with sizes as (select r._source_file, count(*) + (select count(*) from _landing_reject_lines x "
            "  where x._source_file = r._source_file) as n from _landing_ranked r "
            "  where r._source_file in (select _source_file from _landing_reject_lines) group by 1), "
            "lines as (select _source_file, unnest(range(2, n + 2)) as line from sizes) "
            "select l._source_file, l.line, row_number() over (partition by l._source_file order by l.line) - 1 as k "
            "from lines l anti join _landing_reject_lines x on x._source_file = l._source_file and x.line = l.line"
        )
        con.execute(
            "create or replace temp table _landing_ranked as select r.*, f.line as _free_line from _landing_ranked r "
            "left join _landing_free f on f._source_file = r._source_file and f.k = r._k"
        )
        con.execute("drop table _landing_reject_lines; drop table _landing_free")
        line = "coalesce(_free_line, _k + 2)"
    extra = ", _free_line" if rejects else ""
    con.execute(
        f"create temp table {FILE_TABLE} as select * exclude (_k{extra}), {line} as _line, "
        "null::varchar as _error from _landing_ranked"
    )
    con.execute("drop table _landing_csv; drop table _landing_ranked")
    return rejects


def _read_jsonl(con: duckdb.DuckDBPyConnection, files: list[LandingFile]) -> list[tuple[str, int, str, str]]:
    # Read whole lines, then parse them as JSON ourselves: DuckDB's JSON reader would skip bad lines
    # silently, and a malformed line must be quarantined with its line number.
    con.execute(
        f"create temp table _landing_lines as select filename as _source_file, line from read_csv("
        f"{_path_list(files)}, columns = {{'line': 'VARCHAR'}}, header = false, delim = chr(30), quote = '', "
        "escape = '', auto_detect = false, filename = true)"
    )
    # Insertion order is file order, so the row number within a file is its line (blank lines included).
    con.execute(
        "create temp table _landing_json as select _source_file, line, "
        "row_number() over (partition by _source_file order by rowid) as _line, "
        "case when json_valid(line) and json_type(line) = 'OBJECT' then null "
        "else 'malformed JSON line' end as _error from _landing_lines"
    )
    con.execute("delete from _landing_json where line is null or trim(line) = ''")
    con.execute(
        f"insert into {JSON_KEYS_TABLE} select distinct _source_file, unnest(json_keys(line)) "
        "from _landing_json where _error is null"
    )
    keys = [row[0] for row in con.execute(f"select distinct key from {JSON_KEYS_TABLE} order by 1").fetchall()]
    extracts = "".join(
        f", case when _error is null then json_extract_string(line, {sql_literal('$.' + _json_key(k))}) end "
        f"as {quote_ident(k)}"
        for k in keys
    )
    con.execute(
        f"create temp table {FILE_TABLE} as select _source_file, _line, _error, "
        f"case when _error is not null then line end as _raw_line{extracts} from _landing_json"
    )
    con.execute("drop table _landing_lines; drop table _landing_json")
    return []


def json_keys_per_file(con: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    """The keys of each JSON Lines file last read by ``read_files`` (a key counts when a valid record has it, even
    with a null value). A file without one valid record is left out: there is nothing to map, and its lines are
    quarantined as malformed."""
    rows = con.execute(f"select _source_file, list(key) from {JSON_KEYS_TABLE} group by 1").fetchall()
    return {path: set(keys) for path, keys in rows}


def _json_key(key: str) -> str:
    return '"' + key.replace('"', '\\"') + '"'


def _read_parquet(con: duckdb.DuckDBPyConnection, files: list[LandingFile]) -> list[tuple[str, int, str, str]]:
    con.execute(
        f"create temp table {FILE_TABLE} as select * exclude (file_row_number, filename), "
        "filename as _source_file, file_row_number + 1 as _line, null::varchar as _error "
        f"from read_parquet({_path_list(files)}, file_row_number = true, filename = true, union_by_name = true)"
    )
    return []
