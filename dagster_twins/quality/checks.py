"""The GX suites as Dagster asset checks: one check per suite file, on the asset whose table it validates,
blocking where the suite says a bad table must not flow downstream."""

from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd

from dagster_twins.contract import RAW_LANDING_DATE
from dagster_twins.metadata import md_table
from dagster_twins.partitions import run_window, window_dates
from dagster_twins.quality.gx import SuiteFile, load_suite_files, row_count_verdict, validate
from dagster_twins.warehouse.resources import WarehouseResource
from dagster_twins.warehouse.sql import quote_ident
from dagster_twins.warehouse.tables import relation_exists, replace_rows, table_exists

SCHEMA = "quality"
ROW_COUNTS = "table_row_counts"
# Above this many rows a table is validated on a repeatable random sample (row counts stay exact).
MAX_VALIDATED_ROWS = 500_000


def gx_store_dir(warehouse: WarehouseResource) -> Path:
    return warehouse.reports_folder / "gx"


def _rows_to_validate(con: duckdb.DuckDBPyConnection, suite: SuiteFile,
                      window: tuple[date, date] | None) -> tuple[pd.DataFrame, int, int]:
    """The rows the suite validates (a sample above MAX_VALIDATED_ROWS), the table's exact count (of the window's
    rows for a ``landing_window`` suite) and landing days. An ``updated`` suite validates the rows the run wrote
    (``updated_column`` on or after the window's first day; every row without a window): a daily run's twins are
    the users with new evidence, the others' rows were validated when they were written."""
    where, params = "1 = 1", []
    if suite.rows == "landing_window" and window is not None:
        where, params = f"{RAW_LANDING_DATE} >= ? and {RAW_LANDING_DATE} < ?", list(window)
    elif suite.rows == "updated" and window is not None:
        where, params = f"{quote_ident(suite.updated_column)} >= ?", [window[0]]
    rows, days = con.execute(
        f"select count(*), count(distinct {RAW_LANDING_DATE}) from {suite.table} where {where}"
        if suite.rows == "landing_window" else f"select count(*), 1 from {suite.table}",
        params if suite.rows == "landing_window" else []).fetchone()
    query = f"select * from {suite.table} where {where}"
    chosen = rows if suite.rows != "updated" else con.execute(f"select count(*) from ({query})", params).fetchone()[0]
    if chosen > MAX_VALIDATED_ROWS:
        query = f"select * from ({query}) using sample reservoir({MAX_VALIDATED_ROWS} rows) repeatable (7)"
    return con.execute(query, params).df(), int(rows), int(days)


def _previous_count(con: duckdb.DuckDBPyConnection, suite: str, run_id: str) -> tuple[int, int] | None:
    if not table_exists(con, SCHEMA, ROW_COUNTS):
        return None
    return con.execute(f"select rows, landing_days from {SCHEMA}.{ROW_COUNTS} where suite = ? and run_id <> ? "
                       "order by checked_at desc limit 1", [suite, run_id]).fetchone()


TYPICAL_DAYS = 28  # a typical landing day: the median over (up to) this many days before the run's window


def typical_day(con: duckdb.DuckDBPyConnection, suite: SuiteFile,
                 window: tuple[date, date] | None) -> tuple[float, int] | None:
    """What a landing day of the suite's table typically brings: the median rows per calendar day (days without
    rows count as 0) over the TYPICAL_DAYS days before the window, from the first landing day on; as (rows, 1),
    the baseline of a per-landing-day row count. None before any earlier day landed (a first run, a backfill)."""
    if window is None:
        return None
    first = con.execute(f"select min({RAW_LANDING_DATE}) from {suite.table}").fetchone()[0]
    if first is None or first >= window[0]:
        return None
    start = max(first, window[0] - timedelta(days=TYPICAL_DAYS))
    counts = dict(con.execute(f"select {RAW_LANDING_DATE}, count(*) from {suite.table} where {RAW_LANDING_DATE} >= ? "
                              f"and {RAW_LANDING_DATE} < ? group by 1", [start, window[0]]).fetchall())
    return float(np.median([counts.get(day, 0) for day in window_dates(start, window[0])])), 1


def build_gx_check(suite: SuiteFile) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(suite.asset), name=f"gx_{suite.name}", blocking=suite.blocking,
        description=f"Great Expectations suite {suite.path.name} on {suite.table}: {suite.why}",
        metadata={"suite_file": str(suite.path), "table": suite.table},
    )
    def _check(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        con = warehouse.connect()
        try:
            if not relation_exists(con, *suite.table.split(".")):
                return dg.AssetCheckResult(passed=False, metadata={"error": f"{suite.table} does not exist"})
            window = run_window(context.run.tags)
            frame, rows, days = _rows_to_validate(con, suite, window)
            # Like with like: a run's rows per landing day against a typical day before it (a day after a backfill
            # is held against a day, not the backfill); a whole table against the previous run's.
            per_day = bool(suite.row_count_vs_previous.get("per_landing_day")) and suite.rows == "landing_window"
            previous = (typical_day(con, suite, window) if per_day
                        else _previous_count(con, suite.name, context.run.run_id))
            if per_day and window is not None:
                days = (window[1] - window[0]).days  # calendar days: a day with no rows counts as a day
            replace_rows(con, SCHEMA, ROW_COUNTS, pd.DataFrame([{
                "suite": suite.name, "run_id": context.run.run_id, "checked_at": pd.Timestamp.now(tz="UTC"),
                "rows": rows, "landing_days": days}]), {"suite": suite.name, "run_id": context.run.run_id})
        finally:
            con.close()
        validation = validate(suite, frame, gx_store_dir(warehouse))
        verdict = row_count_verdict(suite, rows, days, previous, baseline=(
            f"on a typical day (median of the {TYPICAL_DAYS} days before)" if per_day else "in the previous run"))
        results = pd.DataFrame(validation.results.to_dict("records") + ([verdict] if verdict else []))
        failed = results[~results["success"]]
        # A row count far from the previous run's is worth a look, not a stop: sparse sources have empty days.
        only_volume = bool(len(failed)) and (failed["expectation"] == "row_count_against_previous_run").all()
        context.log.info(f"GX {suite.name}: {len(results) - len(failed)} of {len(results)} expectations met on "
                         f"{len(frame):,} of {rows:,} rows")
        return dg.AssetCheckResult(
            passed=failed.empty,
            severity=dg.AssetCheckSeverity.WARN if only_volume else dg.AssetCheckSeverity.ERROR,
            metadata={
                "rows": rows, "rows_validated": len(frame), "expectations": len(results), "failed": len(failed),
                "results": md_table(results, floatfmt="g"),
                "data_docs": dg.MetadataValue.path(str(gx_store_dir(warehouse) / "data_docs" / "index.html")),
            },
        )

    return _check


def gx_checks(folder: Path, asset_keys: set[dg.AssetKey]) -> list[dg.AssetChecksDefinition]:
    """A check per suite file in ``folder`` whose asset is in the code location; a suite naming an asset that does
    not exist fails loading, unless it says the asset is optional (the scenario suite: no specs, no ranking)."""
    suites = load_suite_files(folder)
    unknown = [s for s in suites if dg.AssetKey(s.asset) not in asset_keys and not s.optional]
    if unknown:
        raise ValueError(f"{unknown[0].path}: meta.dagster_twins.asset: no asset {'/'.join(unknown[0].asset)}")
    return [build_gx_check(suite) for suite in suites if dg.AssetKey(suite.asset) in asset_keys]
