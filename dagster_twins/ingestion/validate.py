"""SQL that turns one relation of file rows into typed contract rows, each with the reason it is malformed.

The query reads ``readers.FILE_TABLE`` joined with ``LANDING_DATES`` (per file: its landing day, or for an undated
file the day it was last modified, which bounds its plausible times) and yields, per row: every contract column
typed, ``_row_id``, ``_source_line`` and ``_reason`` (NULL for a good row, else every problem found, joined by
'; '), plus ``_record``, the original values of a bad row as text.

The quarantine policy for values (docs/reliability.md):

- **Strings** are NFC-normalized. Ids (``*_id``) and categorical columns must hold no control or invisible
  character (Unicode Cc and Cf: NUL, zero-width spaces and joiners, bidirectional overrides, ...): such a value is
  quarantined, never stripped, so two ids never merge by accident. Free text keeps every character but NUL.
- **Null-like words** (``null``, ``None``, ``NA``, ``nan``, ...: ``SourceMapping.null_values``): in a required
  column or an id, the row is quarantined; in an optional number or time, the value is empty.
- **Numbers** must be finite and in the contract's range; money is exact, at most 2 decimal places, as
  DECIMAL(18, 2).
- **Times** are parsed row by row: ISO 8601 date and time, then ``Z``, an offset up to +-14:00, or an IANA zone
  name; a naive time is UTC. A zone on one row never reaches another. An offset out of range, an unknown zone, and a
  local time a daylight-saving change skips or repeats are errors. A time must lie from ``earliest_time`` to the
  end of the day ``days_after_landing`` after the landing day.
"""

from __future__ import annotations

from dataclasses import dataclass

from dagster_twins.contract import SQL_TYPES, Column, SourceContract
from dagster_twins.ingestion.mapping import SourceMapping
from dagster_twins.ingestion.readers import FILE_TABLE
from dagster_twins.warehouse.sql import quote_ident, sql_literal

LANDING_DATES = "_landing_dates"  # (_source_file, _landing_date, _bound_day): created by the loader
ZONES_TABLE = "_landing_zones"  # IANA zone names DuckDB knows (ensure_zones)

_NUMERIC_PREFIXES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                     "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "DECIMAL", "REAL")
_FLOAT_PREFIXES = ("FLOAT", "DOUBLE", "REAL")
_NUMBER_TEXT = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_NON_FINITE_TEXT = r"^[+-]?(inf|infinity|nan)$"
_INVISIBLE = r"[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]"  # control, format (zero-width, bidi), line and paragraph separators
_ISO_TIME = (r"^([0-9]{4}-[0-9]{2}-[0-9]{2})(?:[T ]([0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]{1,9})?)?))?"
             r" ?(Z|z|UTC|GMT|[+-][0-9]{2}(?::?[0-9]{2})?|[A-Za-z][A-Za-z0-9_+/-]*)?$")


class MissingColumnError(ValueError):
    """A landing file lacks a column the contract requires."""


@dataclass(frozen=True)
class ColumnExpr:
    typed: str  # SQL for the typed value (over the names of ``layers``)
    problem: str  # SQL that is a message when the value is bad, else NULL
    # Named intermediate values, computed once each in successive subqueries (layer i may use layer i-1's names):
    # inlining them would repeat a time's parse a dozen times in one expression, and plan for seconds.
    layers: tuple[dict[str, str], ...] = ()


def ensure_zones(con) -> None:
    con.execute(f"create temp table if not exists {ZONES_TABLE} as select name from pg_timezone_names()")


def _raw_text(col: str) -> str:
    return f"nullif(trim(cast({col} as varchar)), '')"


def _null_like(text: str, mapping: SourceMapping) -> str:
    if not mapping.null_values:
        return "false"
    # list_contains, not IN: DuckDB plans an IN list of more than a few values as a join, one per column.
    return f"coalesce(list_contains([{', '.join(sql_literal(v) for v in mapping.null_values)}], lower({text})), false)"


def _short(text: str) -> str:
    return f"left({text}, 60)"


def _names(column: Column, *prefixes: str) -> list[str]:
    return [quote_ident(f"_{p}_{column.name}") for p in prefixes]


def _string_expr(column: Column, col: str, mapping: SourceMapping) -> ColumnExpr:
    (raw,) = _names(column, "r")
    layers = ({raw: _raw_text(col)},)
    if column.free_text:
        problem = f"case when contains({raw}, chr(0)) then 'NUL character in {column.name}' end"
        return ColumnExpr(raw, problem, layers)
    typed = f"nfc_normalize({raw})"
    invisible = (
        f"when _any_invisible and regexp_matches({raw}, '{_INVISIBLE}') then 'invisible or control character ' || "
        f"printf('U+%04X', unicode(regexp_extract({raw}, '{_INVISIBLE}'))) || ' in {column.name}: ' || "
        f"{_short(f'to_json({raw})')}"
    )
    checks = [invisible]
    if column.required or column.is_id:
        said = (f"'missing required {column.name} (null-like: ' || {_short(raw)} || ')'" if column.required
                else f"'null-like {column.name}: ' || {_short(raw)}")
        checks.append(f"when {_null_like(raw, mapping)} then {said}")
    # (A blank value cannot get here: trim() takes every space separator, and tabs and line breaks are controls.)
    if column.is_id:
        checks.append(f"when starts_with({raw}, '[') or starts_with({raw}, '{{') then 'not an id in "
                      f"{column.name} (a JSON object or list?): ' || {_short(raw)}")
    if column.accepted_values:
        typed = f"lower({typed})"
        accepted = ", ".join(sql_literal(v) for v in column.accepted_values)
        checks.append(f"when not list_contains([{accepted}], {typed}) then 'invalid {column.name}: ' || {typed} || "
                      f"' (accepted: {', '.join(column.accepted_values)})'")
    # An optional category keeps a null-like word as written ('NA' is Namibia in a country column).
    return ColumnExpr(typed, f"case when {raw} is null then null {' '.join(checks)} end", layers)


def _bound(column: Column, mapping: SourceMapping) -> str:
    """The first instant after the plausible range: the end of the day ``days_after_landing`` after landing."""
    days = column.days_after_landing if column.days_after_landing is not None else mapping.days_after_landing
    return f"cast(_bound_day + {days + 1} as timestamp)"


def _timestamp_expr(column: Column, col: str, file_type: str, mapping: SourceMapping) -> ColumnExpr:
    raw, p, local, instant, error = _names(column, "r", "p", "l", "i", "e")
    name = column.name
    null_like = _null_like(raw, mapping)
    if file_type.startswith("TIMESTAMP WITH TIME ZONE"):
        layers = ({raw: "null"}, {instant: f"timezone('UTC', {col})"}, {error: "null"})
    elif file_type.startswith(("TIMESTAMP", "DATE")):
        layers = ({raw: "null"}, {instant: f"cast({col} as timestamp)"}, {error: "null"})
    elif mapping.timestamp_format:
        parsed = f"cast(try_strptime({raw}, {sql_literal(mapping.timestamp_format)}) as timestamp)"
        layers = ({raw: _raw_text(col)}, {instant: parsed}, {error: (
            f"case when {instant} is null and {raw} is not null and not {null_like} then "
            f"'unparseable timestamp in {name}: ' || {_short(raw)} end")})
    else:
        # Parsed per row with an explicit rule, never by casting a column with zones to TIMESTAMPTZ: DuckDB's cast
        # carries a zone named on one row over to the naive rows after it.
        zone = f"{p}.z"
        compact = f"replace({zone}, ':', '')"
        minutes = (f"(cast(substr({compact}, 2, 2) as integer) * 60 + "
                   f"case when length({compact}) = 5 then cast(substr({compact}, 4, 2) as integer) else 0 end)")
        signed = f"(case when {zone}[1] = '-' then -1 else 1 end * {minutes})"
        offset_ok = (f"(cast(substr({compact}, 2, 2) as integer) <= 14 and (length({compact}) = 3 or "
                     f"cast(substr({compact}, 4, 2) as integer) <= 59) and {minutes} <= 840)")
        named = f"({zone} <> '' and {zone}[1] not in ('+', '-') and {zone} not in ('Z', 'z', 'UTC', 'GMT'))"
        known = f"{zone} in (select name from {ZONES_TABLE})"
        zoned = f"timezone({zone}, {local})"
        utc = (
            f"case when {local} is null then null "
            f"when {zone} in ('', 'Z', 'z', 'UTC', 'GMT') then {local} "
            f"when {zone}[1] in ('+', '-') then case when {offset_ok} then {local} - to_minutes(cast({signed} "
            f"as bigint)) end "
            f"when {known} then timezone('UTC', {zoned}) end"
        )
        skipped = f"timezone({zone}, {zoned}) <> {local}"
        repeated = " or ".join(f"timezone({zone}, {zoned} {op} interval {n} minute) = {local}"
                               for op in ("+", "-") for n in (30, 60))
        problem = (
            f"case when {raw} is null or {null_like} then null "
            f"when {local} is null then 'unparseable timestamp in {name}: ' || {_short(raw)} "
            f"when {zone}[1] in ('+', '-') and not {offset_ok} then 'time zone offset out of range (-14:00 .. "
            f"+14:00) in {name}: ' || {_short(raw)} "
            f"when {named} and not ({known}) then 'unknown time zone in {name}: ' || {_short(raw)} "
            f"when {named} and {skipped} then 'non-existent local time (skipped by a daylight-saving change) in "
            f"{name}: ' || {_short(raw)} "
            f"when {named} and ({repeated}) then 'ambiguous local time (repeated by a daylight-saving change) in "
            f"{name}: ' || {_short(raw)} end"
        )
        layers = (
            {raw: _raw_text(col)},
            {p: f"regexp_extract({raw}, {sql_literal(_ISO_TIME)}, ['d', 'hms', 'z'])"},
            {local: f"try_cast({p}.d || ' ' || coalesce(nullif(replace({p}.hms, ',', '.'), ''), '00:00:00') "
                    "as timestamp)"},
            {instant: utc, error: problem},
        )
    earliest = f"timestamp '{mapping.earliest_time.isoformat()}'"
    bound = _bound(column, mapping)
    range_problem = (
        f"case when {instant} < {earliest} or {instant} >= {bound} then 'implausible {name}: ' || "
        f"strftime({instant}, '%Y-%m-%d %H:%M:%S') || ' (allowed: {mapping.earliest_time.isoformat()} .. "
        f"before ' || strftime({bound}, '%Y-%m-%d') || ')' end"
    )
    typed = f"case when {instant} >= {earliest} and {instant} < {bound} then {instant} end"
    return ColumnExpr(typed, f"coalesce({error}, {range_problem})", layers)


def _range_problem(column: Column, value: str, shown: str) -> str:
    checks = []
    if column.min_value is not None:
        checks.append(f"{value} < {column.min_value!r}")
    if column.max_value is not None:
        checks.append(f"{value} > {column.max_value!r}")
    if not checks:
        return "null"
    low = "" if column.min_value is None else f"{column.min_value:g}"
    high = "" if column.max_value is None else (f"{column.max_value:.2f}" if column.type == "money"
                                                 else f"{column.max_value:g}")
    return (f"case when {' or '.join(checks)} then '{column.name} out of range ({low} .. {high}): ' || "
            f"{_short(shown)} end")


def _number_expr(column: Column, col: str, file_type: str, mapping: SourceMapping) -> ColumnExpr:
    """A finite number in the contract's range; money (and a column with ``decimals``) also exact in 2 decimal
    places: a third decimal is quarantined, never rounded away."""
    raw, number, error, ok = _names(column, "r", "d", "e", "ok")
    name = column.name
    money = column.type == "money" or column.decimals == 2
    if file_type.startswith(_NUMERIC_PREFIXES):
        floating = file_type.startswith(_FLOAT_PREFIXES)
        first = {raw: f"cast({col} as varchar)", number: f"cast({col} as double)"}
        present = f"{col} is not null"
        parse_problem = (f"case when {present} and not isfinite({number}) then 'not a finite number in {name}: ' || "
                         f"{raw} end" if floating else "null")
        if money:
            cents_ok = (f"round({number}, 2) = {number}" if floating else
                        f"cast({col} as decimal(38, 18)) = round(cast({col} as decimal(38, 18)), 2)")
            exact = (f"cast(round({number}, 2) as decimal(18, 2))" if floating
                     else f"cast({col} as decimal(18, 2))")
    else:
        first = {raw: _raw_text(col)}
        present = f"({raw} is not null and not {_null_like(raw, mapping)})"
        parse_problem = (
            f"case when not {present} then null "
            f"when regexp_matches(lower({raw}), '{_NON_FINITE_TEXT}') then 'not a finite number in {name}: ' || "
            f"{_short(raw)} "
            f"when not regexp_matches({raw}, '{_NUMBER_TEXT}') or {number} is null then "
            f"'not a number in {name}: ' || {_short(raw)} "
            f"when not isfinite({number}) then 'not a finite number in {name}: ' || {_short(raw)} end"
        )
        if money:
            places = f"length(rtrim(regexp_extract({raw}, '\\.([0-9]*)', 1), '0'))"
            scaled = f"try_cast({raw} as decimal(38, 18))"
            cents_ok = (f"case when regexp_matches({raw}, '[eE]') then {scaled} = round({scaled}, 2) "
                        f"else {places} <= 2 end")
            exact = f"cast({scaled} as decimal(18, 2))"
    range_problem = _range_problem(column, number, raw)
    second = {number: f"try_cast({raw} as double)"} if number not in first else {}
    checked = {error: f"coalesce({parse_problem}, case when {present} then {range_problem} end)",
               ok: f"({present} and ({parse_problem}) is null and ({range_problem}) is null)"}
    layers = tuple(layer for layer in (first, second, checked) if layer)
    if money:
        problem = (f"coalesce({error}, case when {ok} and not ({cents_ok}) then 'more than 2 decimal places in "
                   f"{name}: ' || {_short(raw)} end)")
        typed = f"case when {ok} and {cents_ok} then {exact if column.type == 'money' else number} end"
    else:
        problem, typed = error, f"case when {ok} then {number} end"
    return ColumnExpr(typed, problem, layers)


def check_required_columns(
    contract: SourceContract, mapping: SourceMapping, file_columns: dict[str, str] | set[str], file_label: str
) -> None:
    present = set(file_columns)
    for name in contract.required_columns:
        wanted = mapping.file_column(name)
        if wanted not in present:
            mapped = f" (mapped from contract column '{name}')" if wanted != name else ""
            raise MissingColumnError(
                f"{file_label}: required column '{wanted}'{mapped} is missing from this {contract.name} file; "
                f"its columns are {sorted(present)}. Map your column name in the sources config "
                f"(TWINS_SOURCES_CONFIG) under sources.{contract.name}.columns.{name}."
            )


def validation_query(
    contract: SourceContract, mapping: SourceMapping, file_columns: dict[str, str], has_raw_line: bool
) -> str:
    """SELECT over FILE_TABLE (with LANDING_DATES) producing typed contract columns, _source_file, _source_line,
    _landing_date, _reason and _record."""
    exprs: dict[str, ColumnExpr] = {}
    for column in contract.columns:
        file_col = mapping.file_column(column.name)
        if file_col not in file_columns:
            exprs[column.name] = ColumnExpr("null", "null")
            continue
        col, file_type = quote_ident(file_col), file_columns[file_col].upper()
        if column.type == "timestamp":
            exprs[column.name] = _timestamp_expr(column, col, file_type, mapping)
        elif column.type in ("double", "money"):
            exprs[column.name] = _number_expr(column, col, file_type, mapping)
        else:
            exprs[column.name] = _string_expr(column, col, mapping)

    present = [mapping.file_column(c) for c in contract.column_names if mapping.file_column(c) in file_columns]
    originals = "".join(f", {quote_ident(c)} as {quote_ident('_orig_' + c)}" for c in present)
    record_parts = [f"{quote_ident(c)} := cast({quote_ident('_orig_' + c)} as varchar)" for c in present]
    record = f"cast(struct_pack({', '.join(record_parts)}) as varchar)" if record_parts else "null"
    if has_raw_line:
        record = f"coalesce(_raw_line, {record})"
    # Layer by layer: each subquery adds one layer of every column's named intermediate values.
    relation = (f"(select f.*, d._landing_date, d._bound_day from {FILE_TABLE} f "
                f"join {LANDING_DATES} d using (_source_file))")
    # One pass over all the categorical texts of a row finds the rare row with an invisible character; only such a
    # row is searched column by column (measured: 6 searches a row cost 0.4 s per 765,000 rows, this one 0.1 s).
    categorical = [quote_ident(mapping.file_column(c.name)) for c in contract.columns
                   if c.type == "string" and not c.free_text and mapping.file_column(c.name) in file_columns]
    any_invisible = (f"coalesce(regexp_matches(concat({', '.join(f'cast({c} as varchar)' for c in categorical)}), "
                     f"'{_INVISIBLE}'), false)" if categorical else "false")
    relation = f"(select *, {any_invisible} as _any_invisible from {relation})"
    depth = max((len(e.layers) for e in exprs.values()), default=0)
    for i in range(depth):
        named = [f"{sql} as {name}" for e in exprs.values() if i < len(e.layers) for name, sql in e.layers[i].items()]
        if named:
            relation = f"(select *, {', '.join(named)} from {relation})"
    # Each column's typed value and problem, once each (a required column's check reads both again).
    final = [f"{e.typed} as {quote_ident('_t_' + name)}, {e.problem} as {quote_ident('_x_' + name)}"
             for name, e in exprs.items()]
    relation = f"(select *, {', '.join(final)} from {relation})"
    typed_cols = [f"cast({quote_ident('_t_' + name)} as {SQL_TYPES[contract.column(name).type]}) as "
                  f"{quote_ident(name)}" for name in exprs]
    problems = ["_error"]
    for name in exprs:
        typed, problem = quote_ident("_t_" + name), quote_ident("_x_" + name)
        if contract.column(name).required:
            problems.append(f"case when {typed} is null and _error is null and {problem} is null "
                            f"then 'missing required {name}' end")
        problems.append(f"case when _error is null then {problem} end")
    inner = (f"select {', '.join(typed_cols)}, _source_file, _line as _source_line, _landing_date, "
             f"nullif(concat_ws('; ', {', '.join(problems)}), '') as _reason{originals}"
             f"{', _raw_line' if has_raw_line else ''} from {relation}")
    # The original values are only rendered for bad rows: building text for every good row is waste.
    return (
        f"select {', '.join(quote_ident(c) for c in contract.column_names)}, _source_file, _source_line, "
        f"_landing_date, _reason, case when _reason is not null then {record} end as _record from ({inner})"
    )


def row_id_expr(contract: SourceContract, mapping: SourceMapping, file_columns: dict[str, str]) -> str:
    """The row key: the source id where the file has one, else an md5 of the typed contract columns.

    Evaluated over the typed columns of ``validation_query``; md5 (not DuckDB's hash()) so the key is
    stable across DuckDB versions and engines.
    """
    content = ", ".join(f"coalesce(cast({quote_ident(c)} as varchar), '')" for c in contract.column_names)
    hashed = f"md5(concat_ws(chr(31), {content}))"
    if contract.id_column and mapping.file_column(contract.id_column) in file_columns:
        return f"coalesce({quote_ident(contract.id_column)}, {hashed})"
    return hashed
