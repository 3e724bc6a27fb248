"""SQL that turns one file's rows into typed contract rows, each with the reason it is malformed.

The query reads ``readers.FILE_TABLE`` and yields, per row: every contract column typed (strings,
UTC timestamps, doubles), ``_row_id``, ``_source_line`` and ``_reason`` (NULL for a good row, else
every problem found, joined by '; '), plus ``_record``, the original values of a bad row as text.
"""

from __future__ import annotations

from dataclasses import dataclass

from dagster_twins.contract import Column, SourceContract
from dagster_twins.ingestion.mapping import SourceMapping
from dagster_twins.ingestion.readers import FILE_TABLE
from dagster_twins.warehouse.sql import quote_ident, sql_literal

_NUMERIC_PREFIXES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                     "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "DECIMAL", "REAL")


class MissingColumnError(ValueError):
    """A landing file lacks a column the contract requires."""


@dataclass(frozen=True)
class ColumnExpr:
    typed: str  # SQL for the typed value
    problem: str  # SQL that is a message when the value is bad, else NULL


def _raw_text(col: str) -> str:
    return f"nullif(trim(cast({col} as varchar)), '')"


def _string_expr(column: Column, col: str) -> ColumnExpr:
    typed = _raw_text(col)
    if column.accepted_values:
        typed = f"lower({typed})"
        accepted = ", ".join(sql_literal(v) for v in column.accepted_values)
        problem = (
            f"case when {typed} is not null and {typed} not in ({accepted}) then "
            f"'invalid {column.name}: ' || {typed} || ' (accepted: {', '.join(column.accepted_values)})' end"
        )
        return ColumnExpr(typed, problem)
    return ColumnExpr(typed, "null")


def _timestamp_expr(column: Column, col: str, file_type: str, timestamp_format: str | None) -> ColumnExpr:
    if file_type.startswith("TIMESTAMP WITH TIME ZONE"):
        typed = f"timezone('UTC', {col})"
    elif file_type.startswith(("TIMESTAMP", "DATE")):
        typed = f"cast({col} as timestamp)"
    elif timestamp_format:
        typed = f"try_strptime({_raw_text(col)}, {sql_literal(timestamp_format)})"
    else:
        # ISO 8601 with or without an offset; with the session in UTC, naive times are taken as UTC.
        typed = f"timezone('UTC', try_cast({_raw_text(col)} as timestamptz))"
    problem = (
        f"case when {typed} is null and {_raw_text(col)} is not null then "
        f"'unparseable timestamp in {column.name}: ' || left({_raw_text(col)}, 60) end"
    )
    return ColumnExpr(typed, problem)


def _double_expr(column: Column, col: str, file_type: str) -> ColumnExpr:
    if file_type.startswith(_NUMERIC_PREFIXES):
        return ColumnExpr(f"cast({col} as double)", "null")
    typed = f"try_cast({_raw_text(col)} as double)"
    problem = (
        f"case when {typed} is null and {_raw_text(col)} is not null then "
        f"'not a number in {column.name}: ' || left({_raw_text(col)}, 60) end"
    )
    return ColumnExpr(typed, problem)


def check_required_columns(
    contract: SourceContract, mapping: SourceMapping, file_columns: dict[str, str], file_label: str
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
    """SELECT over FILE_TABLE producing typed contract columns, _row_id, _source_line, _reason, _record."""
    typed_cols: list[str] = []
    problems: list[str] = ["_error"]
    for column in contract.columns:
        file_col = mapping.file_column(column.name)
        if file_col not in file_columns:
            expr = ColumnExpr("null", "null")
        else:
            col, file_type = quote_ident(file_col), file_columns[file_col].upper()
            if column.type == "timestamp":
                expr = _timestamp_expr(column, col, file_type, mapping.timestamp_format)
            elif column.type == "double":
                expr = _double_expr(column, col, file_type)
            else:
                expr = _string_expr(column, col)
        sql_type = {"string": "varchar", "timestamp": "timestamp", "double": "double"}[column.type]
        typed_cols.append(f"cast({expr.typed} as {sql_type}) as {quote_ident(column.name)}")
        if column.required:
            problems.append(f"case when {expr.typed} is null and _error is null and "
                            f"({expr.problem}) is null then 'missing required {column.name}' end")
        problems.append(f"case when _error is null then {expr.problem} end")

    present = [mapping.file_column(c) for c in contract.column_names if mapping.file_column(c) in file_columns]
    originals = "".join(f", {quote_ident(c)} as {quote_ident('_orig_' + c)}" for c in present)
    record_parts = [f"{quote_ident(c)} := cast({quote_ident('_orig_' + c)} as varchar)" for c in present]
    record = f"cast(struct_pack({', '.join(record_parts)}) as varchar)" if record_parts else "null"
    if has_raw_line:
        record = f"coalesce(_raw_line, {record})"
    inner = (
        f"select {', '.join(typed_cols)}, _source_file, _line as _source_line, "
        f"nullif(concat_ws('; ', {', '.join(problems)}), '') as _reason{originals}"
        f"{', _raw_line' if has_raw_line else ''} from {FILE_TABLE}"
    )
    # The original values are only rendered for bad rows: building text for every good row is waste.
    return (
        f"select {', '.join(quote_ident(c) for c in contract.column_names)}, _source_file, _source_line, _reason, "
        f"case when _reason is not null then {record} end as _record from ({inner})"
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
