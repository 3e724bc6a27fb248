"""Reading landing files into a temporary relation, each file its own unit.

Every file is read by its literal path (DuckDB's readers would expand ``*``, ``?`` and ``[...]``), with its own
encoding and dialect, so one file's quirks can neither stop nor reinterpret another's:

- **Encoding**: UTF-8, with or without a byte-order mark. UTF-16 and UTF-32 with a BOM are read (transcoded to UTF-8
  first); other BOMs (UTF-7, UTF-1, UTF-EBCDIC, SCSU, BOCU-1, GB-18030) and UTF-16/32 without a BOM are refused by
  name. A line that is not valid UTF-8 is a malformed row.
- **CSV dialect**: the delimiter is the one of ``, ; TAB |`` that makes the header name the most contract columns;
  quotes are ``"``, escaped by doubling (RFC 4180) or, where the file holds ``\\"``, by a backslash when that reads
  the file with fewer malformed rows. The header must not name a column twice.
- **CSV rows**: DuckDB reads the file with that dialect fixed (no sniffing, so one bad quote cannot switch the whole
  file to another dialect). Where that is not one row per line (a malformed row, a blank line, a quoted field
  spanning lines), the file is parsed line by line instead: a quote that does not close into a good row spoils
  only the line where it opened, and every row keeps its exact line.
- **JSON Lines**: split on ``\\n`` (a ``\\r`` before it dropped), each line parsed as JSON: not an object, a
  duplicate key, a ``NaN``/``Infinity`` or an object/array where a single value belongs makes the row malformed.
- **Parquet**: read file by file; files with the same schema are validated together.

A file that cannot be read at all is *refused*: ``FileRead.refused`` names the file and line and says why; the
loader quarantines it as one unit and the run goes on.

The relation keeps the files' own column names plus ``_source_file``, ``_line`` (1-based line in the file, the
header being line 1; the row number for Parquet), ``_error`` (why the row could not be parsed at all, else NULL)
and ``_raw_line`` (the row's text where it is malformed).
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from dagster_twins.ingestion.files import FileFormat, LandingFile, glob_literal
from dagster_twins.warehouse.sql import quote_ident, sql_literal

FILE_TABLE = "_landing_file"
_ONE = "_landing_one"
_REJECTS = "_landing_rejects"
_REJECT_SCANS = "_landing_reject_scans"
_BOOKKEEPING = ("_source_file", "_line", "_error", "_raw_line")
_DELIMITERS = (",", ";", "\t", "|")
_RAW_TEXT_LIMIT = 2000  # characters of a malformed row's text kept in the quarantine

# Byte-order marks: read (transcoded to UTF-8) or refused by name. UTF-32 before UTF-16 (the same first bytes).
_READ_BOMS = ((b"\x00\x00\xfe\xff", "utf-32-be", "UTF-32BE"), (b"\xff\xfe\x00\x00", "utf-32-le", "UTF-32LE"),
              (b"\xef\xbb\xbf", None, "UTF-8"), (b"\xfe\xff", "utf-16-be", "UTF-16BE"),
              (b"\xff\xfe", "utf-16-le", "UTF-16LE"))
_REFUSED_BOMS = ((b"\x2b\x2f\x76", "UTF-7"), (b"\xf7\x64\x4c", "UTF-1"), (b"\xdd\x73\x66\x73", "UTF-EBCDIC"),
                 (b"\x0e\xfe\xff", "SCSU"), (b"\xfb\xee\x28", "BOCU-1"), (b"\x84\x31\x95\x33", "GB-18030"))


class Refused(Exception):
    """The file cannot be read; the message names the file and the line."""

    def __init__(self, file: LandingFile, line: int | None, why: str):
        self.line = line
        where = f"{file.path}: line {line}" if line else str(file.path)
        super().__init__(f"{where}: {why}")


@dataclass
class FileRead:
    """One file's outcome: rows parsed, rows that could not be (line, reason, text), or why it was refused."""

    path: str
    rows: int = 0
    rejects: list[tuple[int, str, str]] = field(default_factory=list)
    refused: str | None = None
    refused_line: int | None = None
    head: str = ""  # the first bytes of a refused file, as text, for the quarantine record
    note: str = ""  # how the file was read, where that is not the plain default
    keys: set[str] | None = None  # JSON Lines: the keys of its valid records (a key with a null value counts)


@dataclass(frozen=True)
class FilesRead:
    """Landing files read into the temp table ``FILE_TABLE``."""

    columns: dict[str, str]  # file column name -> DuckDB type, over the files of this relation
    files: dict[str, FileRead]


@dataclass(frozen=True)
class Shape:
    """What a file declares before a row is read: its columns and how to read it."""

    columns: list[str]
    delimiter: str = ","
    codec: str | None = None  # a file with a UTF-16/32 byte-order mark: transcoded from this codec
    note: str = ""


# ----------------------------------------------------------------------------------------------- bytes and text


def _encoding(file: LandingFile, head: bytes) -> tuple[str | None, str]:
    """(codec to transcode from, or None for UTF-8; a note). Raises Refused for encodings that are not read."""
    for bom, name in _REFUSED_BOMS:
        if head.startswith(bom):
            raise Refused(file, 1, f"encoding {name} (byte-order mark) is not supported: save the file as UTF-8")
    for bom, codec, name in _READ_BOMS:
        if head.startswith(bom):
            return codec, (f"read as {name} (byte-order mark)" if codec else "")
    sample = head[:4096]
    if len(sample) >= 4 and b"\x00" in sample:
        zeros = max(sample[0::2].count(0), sample[1::2].count(0)) / (len(sample) / 2)
        if zeros > 0.3:
            raise Refused(file, 1, "looks like UTF-16 or UTF-32 without a byte-order mark: save it as UTF-8 "
                                   "(or with a byte-order mark)")
    return None, ""


def _transcoded(file: LandingFile, codec: str) -> bytes:
    data = file.path.read_bytes()
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        line = data[:exc.start].decode(codec, errors="replace").count("\n") + 1
        raise Refused(file, line, f"not valid {codec.upper()}: {exc.reason}") from exc
    return text.lstrip("\ufeff").encode("utf-8")


def _head(file: LandingFile, size: int = 1 << 16) -> bytes:
    with file.path.open("rb") as f:
        return f.read(size)


def _raw(text: str) -> str:
    return text[:_RAW_TEXT_LIMIT]


# ------------------------------------------------------------------------------------------------------- shapes


def file_shape(file: LandingFile, wanted: set[str] = frozenset()) -> Shape:
    """The columns a CSV or Parquet file declares and how to read it; ``wanted``: the file column names the
    contract maps (they decide a CSV file's delimiter). Raises Refused."""
    if file.is_empty:
        return Shape([])
    if file.format == "parquet":
        try:
            names = list(pq.read_schema(file.path).names)
        except Exception as exc:  # noqa: BLE001 (pyarrow raises several kinds for a file that is not Parquet)
            raise Refused(file, None, f"not a readable Parquet file: {exc}") from exc
        _check_unique(file, names)
        return Shape(names)
    if file.format == "jsonl":
        raise ValueError(f"{file.path}: JSON Lines files have no header; their keys are read with the rows")
    head = _head(file)
    codec, note = _encoding(file, head)
    if codec:
        head = _transcoded(file, codec)[: 1 << 16]
    first = head.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        text = first.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        raise Refused(file, 1, "the header is not valid UTF-8") from exc
    best: tuple[tuple[int, int], str, list[str]] | None = None
    order = ("\t", ",", ";", "|") if file.path.suffix.lower() == ".tsv" else _DELIMITERS
    for delimiter in order:
        fields = [f.strip() for f in next(csv.reader([text], delimiter=delimiter), [])]
        score = (len(set(fields) & wanted), len(fields))
        if best is None or score > best[0]:
            best = (score, delimiter, fields)
    _, delimiter, fields = best
    fields = [name or f"_column_{i + 1}" for i, name in enumerate(fields)]
    _check_unique(file, fields)
    return Shape(fields, delimiter, codec, note)


def _check_unique(file: LandingFile, names: list[str]) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(names, start=1):
        key = name.lower()  # DuckDB's column names are case-insensitive
        if key in seen:
            raise Refused(file, 1, f"duplicate column {name!r} in the header (fields {seen[key]} and {i}): "
                                   "which one is meant cannot be known")
        seen[key] = i


# ---------------------------------------------------------------------------------------------------- reading


def read_files(
    con: duckdb.DuckDBPyConnection, fmt: FileFormat, files: list[LandingFile], shapes: dict[str, Shape],
    wanted: set[str] = frozenset(),
) -> Iterator[FilesRead]:
    """Read the files into ``FILE_TABLE``, yielding once per relation: once for CSV and JSON Lines (every value is
    text), once per schema for Parquet. ``shapes``: ``file_shape`` of each CSV/Parquet file that was not refused;
    ``wanted``: the file column names the contract maps (JSON values where those are objects are malformed)."""
    outcomes = {str(f.path): FileRead(str(f.path)) for f in files}
    readable = [f for f in files if not f.is_empty]
    with tempfile.TemporaryDirectory(prefix="twins_landing_") as scratch:
        if fmt == "parquet":
            groups: dict[tuple, list[LandingFile]] = {}
            for file in readable:
                schema = pq.read_schema(file.path)
                groups.setdefault(tuple((n, str(t)) for n, t in zip(schema.names, schema.types, strict=True)),
                                  []).append(file)
            if not groups:
                yield _empty(con, outcomes)
            for group in groups.values():
                yield _read_parquet(con, group, outcomes)
            return
        columns = sorted({c for f in readable if str(f.path) in shapes for c in shapes[str(f.path)].columns})
        con.execute(f"drop table if exists {FILE_TABLE}")
        con.execute(f"create temp table {FILE_TABLE} ({''.join(f'{quote_ident(c)} varchar, ' for c in columns)}"
                    "_source_file varchar, _line bigint, _error varchar, _raw_line varchar)")
        if fmt == "jsonl":
            _read_jsonl(con, readable, outcomes, wanted)
        for i, file in enumerate(readable if fmt == "csv" else []):
            outcome = outcomes[str(file.path)]
            try:
                _read_csv(con, file, shapes[str(file.path)], Path(scratch) / f"{i}.csv", outcome)
            except Refused as exc:
                _refuse(con, file, outcome, exc)
        found = {name: type_ for name, type_, *_ in con.execute(f"describe {FILE_TABLE}").fetchall()
                 if name not in _BOOKKEEPING}
        yield FilesRead(found, outcomes)


def _refuse(con: duckdb.DuckDBPyConnection, file: LandingFile, outcome: FileRead, exc: Refused) -> None:
    if _has_table(con, FILE_TABLE):
        con.execute(f"delete from {FILE_TABLE} where _source_file = ?", [str(file.path)])
    outcome.rows, outcome.rejects = 0, []
    outcome.refused, outcome.refused_line = str(exc), exc.line
    outcome.head = _raw(_head(file, _RAW_TEXT_LIMIT).decode("utf-8", errors="replace"))


def refuse_outcome(file: LandingFile, exc: Refused) -> FileRead:
    """The outcome of a file refused before it was read (by ``file_shape``)."""
    head = _raw(_head(file, _RAW_TEXT_LIMIT).decode("utf-8", errors="replace"))
    return FileRead(str(file.path), refused=str(exc), refused_line=exc.line, head=head)


def _empty(con: duckdb.DuckDBPyConnection, outcomes: dict[str, FileRead]) -> FilesRead:
    con.execute(f"create or replace temp table {FILE_TABLE} (_source_file varchar, _line bigint, _error varchar)")
    return FilesRead({}, outcomes)


# ------------------------------------------------------------------------------------------------------- CSV


def _read_csv(con: duckdb.DuckDBPyConnection, file: LandingFile, shape: Shape, scratch: Path,
              outcome: FileRead) -> None:
    path = file.path
    if shape.codec:
        scratch.write_bytes(_transcoded(file, shape.codec))
        path = scratch
    data = path.read_bytes()
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)  # physical lines, the header included
    notes = [shape.note] if shape.note else []
    if b'\\"' in data:  # backslash-escaped quotes, or a backslash before a closing quote: let the rows decide
        rfc = _parse_lines(data, shape, backslash=False)
        backslash = _parse_lines(data, shape, backslash=True)
        chosen = backslash if (len(backslash[1]), -data.count(b'\\"')) < (len(rfc[1]), -data.count(b'""')) else rfc
        if chosen is backslash:
            notes.append("quotes escaped by backslash")
        _insert_parsed(con, file, shape, chosen, outcome)
    else:
        con.execute(f"drop table if exists {_REJECTS}; drop table if exists {_REJECT_SCANS}")
        columns = "{" + ", ".join(f"{sql_literal(c)}: 'VARCHAR'" for c in shape.columns) + "}"
        try:
            con.execute(
                f"create or replace temp table {_ONE} as select * from read_csv({sql_literal(glob_literal(path))}, "
                f"auto_detect = false, header = true, delim = {sql_literal(shape.delimiter)}, quote = '\"', "
                f"escape = '\"', columns = {columns}, store_rejects = true, rejects_table = '{_REJECTS}', "
                f"rejects_scan = '{_REJECT_SCANS}')"
            )
            rows = con.execute(f"select count(*) from {_ONE}").fetchone()[0]
            rejects = [(int(line), str(error), str(raw)) for line, error, raw in con.execute(
                f"select line, string_agg(error_type || ': ' || error_message, '; '), any_value(csv_line) "
                f"from {_REJECTS} group by line order by line").fetchall()]
        except duckdb.Error:  # DuckDB gave up on the file (seen: line endings mixed within it): line by line
            # (read outside any transaction: the loader stages files before it opens the slice's transaction)
            rows, rejects = -1, []
        bad = {line for line, _, _ in rejects}
        one_row_a_line = (rows + len(rejects) + 1 == lines and all("\n" not in raw for _, _, raw in rejects)
                          and len(bad) == len(rejects) and bad <= set(range(2, lines + 1)))
        if one_row_a_line:
            _insert_read(con, file, shape, rows, rejects, lines, outcome)
        else:  # blank lines, fields spanning lines or rows DuckDB could not split: line by line, exactly
            _insert_parsed(con, file, shape, _parse_lines(data, shape, backslash=False), outcome)
        con.execute(f"drop table if exists {_ONE}")
    outcome.note = "; ".join(notes)


def _insert_read(con: duckdb.DuckDBPyConnection, file: LandingFile, shape: Shape, rows: int,
                 rejects: list[tuple[int, str, str]], lines: int, outcome: FileRead) -> None:
    """Rows DuckDB read, one a line: the good rows take the lines the malformed ones leave free, in order."""
    bad = {line for line, _, _ in rejects}
    free = [line for line in range(2, lines + 1) if line not in bad]  # as many as rows: checked by the caller
    cols = ", ".join(quote_ident(c) for c in shape.columns)
    if bad:
        with _registered(con, pa.table({"_k": pa.array(range(rows), pa.int64()), "_l": pa.array(free, pa.int64())}),
                         "_landing_free") as name:
            con.execute(f"insert into {FILE_TABLE} ({cols}, _source_file, _line) select {cols}, ?, f._l from "
                        f"(select *, row_number() over (order by rowid) - 1 as _k from {_ONE}) o "
                        f"join {name} f using (_k)", [str(file.path)])
    else:
        con.execute(f"insert into {FILE_TABLE} ({cols}, _source_file, _line) select {cols}, ?, "
                    f"row_number() over (order by rowid) + 1 from {_ONE}", [str(file.path)])
    outcome.rows = rows
    outcome.rejects = [(line, f"malformed CSV row: {error}", _raw(raw)) for line, error, raw in rejects]


def _parse_lines(data: bytes, shape: Shape, backslash: bool) -> tuple[list[tuple[int, list[str]]],
                                                                      list[tuple[int, str, str]]]:
    """Parse a CSV file's rows line by line: (rows as (line, fields), malformed rows as (line, reason, text)).

    A row may span lines only inside quotes; where such a span does not close into a row of the header's width, the
    line where it opened is the malformed row and parsing goes on at the next line. Blank lines are not rows.
    """
    dialect = {"delimiter": shape.delimiter, "quotechar": '"', "strict": True}
    dialect.update({"escapechar": "\\", "doublequote": False} if backslash else {"doublequote": True})
    width = len(shape.columns)
    pieces = data.split(b"\n")
    if pieces and pieces[-1] == b"":
        pieces.pop()
    texts: list[str | None] = []
    for piece in pieces:
        try:
            texts.append(piece.decode("utf-8") + "\n")
        except UnicodeDecodeError:
            texts.append(None)
    rows: list[tuple[int, list[str]]] = []
    rejects: list[tuple[int, str, str]] = []

    def one_record(start: int, limit: int) -> tuple[list[str] | None, int, str]:
        feed = _Feed(texts, start, limit)
        try:
            record = next(csv.reader(feed, **dialect))
        except csv.Error as exc:
            return None, feed.pos, f"UNTERMINATED OR STRAY QUOTE: {exc}"
        except StopIteration:
            return None, feed.pos, "EMPTY"
        return record, feed.pos, ""

    i = 1  # line 1 is the header
    while i < len(texts):
        text = texts[i]
        if text is None:
            rejects.append((i + 1, "malformed CSV row: INVALID ENCODING: not UTF-8",
                            _raw(pieces[i].decode("utf-8", errors="replace"))))
            i += 1
            continue
        if not text.strip("\r\n"):
            i += 1
            continue
        record, end, error = one_record(i, len(texts))
        if record is not None and len(record) == width:
            rows.append((i + 1, record))
            i = end
            continue
        if end - i > 1:  # the row ran on over several lines and still is not a row: only its first line is blamed
            record, _, error = one_record(i, i + 1)
        if record is not None:
            kind = "TOO MANY COLUMNS" if len(record) > width else "MISSING COLUMNS"
            error = f"{kind}: {len(record)} fields, expected {width}"
        rejects.append((i + 1, f"malformed CSV row: {error}", _raw(text.rstrip("\r\n"))))
        i += 1
    return rows, rejects


class _Feed:
    """Lines ``start`` .. ``limit`` for one csv.reader record; ``pos`` is the next line not yet read."""

    def __init__(self, texts: list[str | None], start: int, limit: int):
        self.texts, self.pos, self.limit = texts, start, limit

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        if self.pos >= self.limit or self.texts[self.pos] is None:
            raise StopIteration
        self.pos += 1
        return self.texts[self.pos - 1]


def _insert_parsed(con: duckdb.DuckDBPyConnection, file: LandingFile, shape: Shape,
                   parsed: tuple[list[tuple[int, list[str]]], list[tuple[int, str, str]]], outcome: FileRead) -> None:
    rows, rejects = parsed
    columns = {name: pa.array([r[1][j] for r in rows], pa.string()) for j, name in enumerate(shape.columns)}
    table = pa.table({**columns, "_line": pa.array([r[0] for r in rows], pa.int64())})
    cols = ", ".join(quote_ident(c) for c in shape.columns)
    with _registered(con, table, "_landing_parsed") as name:
        con.execute(f"insert into {FILE_TABLE} ({cols}, _source_file, _line) select {cols}, ?, _line from {name}",
                    [str(file.path)])
    outcome.rows, outcome.rejects = len(rows), rejects


class _registered:
    """An Arrow table registered under a name for the duration of a ``with``."""

    def __init__(self, con: duckdb.DuckDBPyConnection, table: pa.Table, name: str):
        self.con, self.table, self.name = con, table, name

    def __enter__(self) -> str:
        self.con.register(self.name, self.table)
        return self.name

    def __exit__(self, *exc: object) -> None:
        self.con.unregister(self.name)


# ------------------------------------------------------------------------------------------------ JSON Lines


def _jsonl_lines(file: LandingFile, outcome: FileRead) -> tuple[list[int], list[str]]:
    """A JSON Lines file's non-blank lines as text, with their line numbers; a line that is not UTF-8 is a
    malformed row of ``outcome``. Raises Refused (an encoding that is not read)."""
    codec, outcome.note = _encoding(file, _head(file))
    data = _transcoded(file, codec) if codec else file.path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    numbers: list[int] = []
    texts: list[str] = []
    for n, piece in enumerate(data.split(b"\n"), start=1):
        piece = piece.rstrip(b"\r")
        if not piece.strip():
            continue
        try:
            texts.append(piece.decode("utf-8"))
        except UnicodeDecodeError:
            outcome.rejects.append((n, "malformed JSON line: not valid UTF-8",
                                    _raw(piece.decode("utf-8", errors="replace"))))
            continue
        numbers.append(n)
    return numbers, texts


def _read_jsonl(con: duckdb.DuckDBPyConnection, files: list[LandingFile], outcomes: dict[str, FileRead],
                wanted: set[str]) -> None:
    """Split each file into lines in Python (each file its own unit: its encoding, its line numbers), then parse
    the lines of all the files as JSON in one pass (measured: a pass per file cost 2 s more over 60 small files)."""
    paths: list[str] = []
    numbers: list[int] = []
    texts: list[str] = []
    for file in files:
        outcome = outcomes[str(file.path)]
        try:
            lines_of, texts_of = _jsonl_lines(file, outcome)
        except Refused as exc:
            _refuse(con, file, outcome, exc)
            continue
        paths += [str(file.path)] * len(texts_of)
        numbers += lines_of
        texts += texts_of
        outcome.rows = len(texts_of)
    if not texts:
        return
    table = pa.table({"_source_file": pa.array(paths, pa.string()), "_line": pa.array(numbers, pa.int64()),
                      "line": pa.array(texts, pa.string())})
    with _registered(con, table, "_landing_lines") as name:
        con.execute(
            "create or replace temp table _landing_json as select _source_file, _line, line, case "
            "when not json_valid(line) or json_type(line) <> 'OBJECT' then 'malformed JSON line' "
            "when len(json_keys(line)) <> len(list_distinct(json_keys(line))) then "
            "'malformed JSON line: duplicate key ' || to_json(list_filter(json_keys(line), "
            "(k, i) -> list_position(json_keys(line), k) < i)[1]) || ' (which value is meant cannot be known)' "
            f"end as _error from {name}"
        )
    per_file = con.execute(
        "select _source_file, list(distinct k) from (select _source_file, unnest(json_keys(line)) as k "
        "from _landing_json where _error is null) group by 1").fetchall()
    for path, keys in per_file:
        outcomes[path].keys = set(keys)
    keys = sorted({k for _, file_keys in per_file for k in file_keys})
    problems = []
    for key in keys:
        if key not in wanted:
            continue
        path = sql_literal("$." + _json_key(key))
        problems.append(
            f"case when json_type(line, {path}) in ('OBJECT', 'ARRAY') then 'malformed JSON line: ' || "
            f"json_type(line, {path}) || ' where a single value belongs, in ' || {sql_literal(key)} "
            f"when json_type(line, {path}) = 'DOUBLE' and lower(json_extract_string(line, {path})) in "
            f"('nan', '-nan', 'infinity', '-infinity', 'inf', '-inf') then 'malformed JSON line: ' || "
            f"json_extract_string(line, {path}) || ' is not a JSON number, in ' || {sql_literal(key)} end")
    if problems:
        con.execute(f"update _landing_json set _error = coalesce({', '.join(problems)}) where _error is null")
    for key in keys:
        con.execute(f"alter table {FILE_TABLE} add column if not exists {quote_ident(key)} varchar")
    extracts = "".join(
        f", case when _error is null then json_extract_string(line, {sql_literal('$.' + _json_key(k))}) end"
        for k in keys)
    cols = "".join(f", {quote_ident(k)}" for k in keys)
    con.execute(
        f"insert into {FILE_TABLE} (_source_file, _line, _error, _raw_line{cols}) select _source_file, _line, _error, "
        f"case when _error is not null then left(line, {_RAW_TEXT_LIMIT}) end{extracts} from _landing_json")
    con.execute("drop table _landing_json")


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(con.execute("select count(*) from duckdb_tables() where table_name = ?", [name]).fetchone()[0])


def _json_key(key: str) -> str:
    return '"' + key.replace('"', '\\"') + '"'


# --------------------------------------------------------------------------------------------------- Parquet


def _read_parquet(con: duckdb.DuckDBPyConnection, files: list[LandingFile],
                  outcomes: dict[str, FileRead]) -> FilesRead:
    con.execute(f"drop table if exists {FILE_TABLE}")
    created = False
    for file in files:
        select = (f"select * exclude (file_row_number), ? as _source_file, file_row_number + 1 as _line, "
                  f"null::varchar as _error from read_parquet({sql_literal(glob_literal(file.path))}, "
                  "file_row_number = true)")
        try:
            if created:
                con.execute(f"insert into {FILE_TABLE} by name {select}", [str(file.path)])
            else:
                con.execute(f"create temp table {FILE_TABLE} as {select}", [str(file.path)])
                created = True
        except duckdb.Error as exc:
            _refuse(con, file, outcomes[str(file.path)], Refused(file, None, f"not a readable Parquet file: {exc}"))
            continue
        outcomes[str(file.path)].rows = con.execute(
            f"select count(*) from {FILE_TABLE} where _source_file = ?", [str(file.path)]).fetchone()[0]
    if not created:
        return _empty(con, {str(f.path): outcomes[str(f.path)] for f in files})
    columns = {name: type_ for name, type_, *_ in con.execute(f"describe {FILE_TABLE}").fetchall()
               if name not in _BOOKKEEPING}
    return FilesRead(columns, {str(f.path): outcomes[str(f.path)] for f in files})

