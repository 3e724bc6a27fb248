"""Reading one landing file into a temporary relation whose columns keep the file's own names.

Every reader yields the file's columns plus ``_line`` (1-based line in the file, the header being
line 1; the row number for Parquet) and ``_error`` (why the row could not be parsed at all, else NULL).
Rows DuckDB's CSV reader rejects outright (wrong number of fields, bad quoting, invalid UTF-8) are
returned separately so they can be quarantined, not dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from dagster_twins.ingestion.files import LandingFile
from dagster_twins.ingestion.sql import quote_ident, sql_literal

FILE_TABLE = "_landing_file"
_REJECTS = "_landing_rejects"
_REJECT_SCANS = "_landing_reject_scans"


@dataclass(frozen=True)
class FileRead:
    """A landing file read into the temp table ``FILE_TABLE``."""

    columns: dict[str, str]  # file column name -> DuckDB type
    rows_parsed: int
    rejects: list[tuple[int, str, str]]  # (line, error, raw line) of rows that could not be parsed


def read_file(con: duckdb.DuckDBPyConnection, file: LandingFile) -> FileRead:
    con.execute(f"drop table if exists {FILE_TABLE}")
    if file.size == 0:  # an empty file has no header to read: zero rows, not an error
        con.execute(f"create temp table {FILE_TABLE} (_line bigint, _error varchar)")
        return FileRead({}, 0, [])
    reader = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}[file.format]
    return reader(con, file)


def _file_columns(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    rows = con.execute(f"describe {FILE_TABLE}").fetchall()
    return {name: type_ for name, type_, *_ in rows if name not in ("_line", "_error")}


def _count(con: duckdb.DuckDBPyConnection) -> int:
    return int(con.execute(f"select count(*) from {FILE_TABLE}").fetchone()[0])


def _read_csv(con: duckdb.DuckDBPyConnection, file: LandingFile) -> FileRead:
    path = sql_literal(str(file.path))
    con.execute(f"drop table if exists {_REJECTS}; drop table if exists {_REJECT_SCANS}")
    # DuckDB keeps insertion order, so rowid is the order of the rows in the file.
    con.execute(
        f"create temp table _landing_csv as select * from read_csv({path}, all_varchar = true, "
        f"header = true, store_rejects = true, rejects_table = '{_REJECTS}', "
        f"rejects_scan = '{_REJECT_SCANS}')"
    )
    rejects = [
        (int(line), str(error), str(raw))
        for line, error, raw in con.execute(
            f"select line, string_agg(error_type || ': ' || error_message, '; '), any_value(csv_line) "
            f"from {_REJECTS} group by line order by line"
        ).fetchall()
    ]
    if rejects:
        # Good rows fill the line numbers the rejected rows leave free, in order.
        total = int(con.execute("select count(*) from _landing_csv").fetchone()[0]) + len(rejects)
        reject_lines = ", ".join(str(line) for line, _, _ in rejects)
        con.execute(
            "create temp table _landing_line_map as select line, row_number() over (order by line) - 1 as k "
            f"from range(2, {total + 2}) t(line) where line not in ({reject_lines})"
        )
        con.execute(
            f"create temp table {FILE_TABLE} as select c.*, m.line as _line, null::varchar as _error "
            "from _landing_csv c join _landing_line_map m on m.k = c.rowid order by m.line"
        )
        con.execute("drop table _landing_line_map")
    else:
        con.execute(
            f"create temp table {FILE_TABLE} as select *, rowid + 2 as _line, null::varchar as _error "
            "from _landing_csv"
        )
    con.execute("drop table _landing_csv")
    return FileRead(_file_columns(con), _count(con), rejects)


def _read_jsonl(con: duckdb.DuckDBPyConnection, file: LandingFile) -> FileRead:
    path = sql_literal(str(file.path))
    # Read whole lines, then parse them as JSON ourselves: DuckDB's JSON reader would skip bad lines
    # silently, and a malformed line must be quarantined with its line number.
    con.execute(
        "create temp table _landing_lines as select line from read_csv("
        f"{path}, columns = {{'line': 'VARCHAR'}}, header = false, delim = chr(30), quote = '', "
        "escape = '', auto_detect = false)"
    )
    # Insertion order is file order, so rowid + 1 is the line number (blank lines included).
    con.execute(
        "create temp table _landing_json as select rowid + 1 as _line, line, "
        "case when json_valid(line) and json_type(line) = 'OBJECT' then null "
        "else 'malformed JSON line' end as _error "
        "from _landing_lines where line is not null and trim(line) <> ''"
    )
    keys = [
        row[0]
        for row in con.execute(
            "select distinct unnest(json_keys(line)) from _landing_json where _error is null order by 1"
        ).fetchall()
    ]
    extracts = "".join(
        f", case when _error is null then json_extract_string(line, {sql_literal('$.' + _json_key(k))}) end "
        f"as {quote_ident(k)}"
        for k in keys
    )
    con.execute(
        f"create temp table {FILE_TABLE} as select _line, _error, "
        f"case when _error is not null then line end as _raw_line{extracts} from _landing_json"
    )
    con.execute("drop table _landing_lines; drop table _landing_json")
    columns = {k: "VARCHAR" for k in keys}
    return FileRead(columns, _count(con), [])


def _json_key(key: str) -> str:
    return '"' + key.replace('"', '\\"') + '"'


def _read_parquet(con: duckdb.DuckDBPyConnection, file: LandingFile) -> FileRead:
    path = sql_literal(str(file.path))
    con.execute(
        f"create temp table {FILE_TABLE} as select * exclude (file_row_number), "
        f"file_row_number + 1 as _line, null::varchar as _error "
        f"from read_parquet({path}, file_row_number = true)"
    )
    return FileRead(_file_columns(con), _count(con), [])
