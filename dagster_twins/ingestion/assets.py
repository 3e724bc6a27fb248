"""Ingestion assets: one asset per contract source in the ``raw`` schema, loaded by landing day."""


import time
from datetime import date
from pathlib import Path

import dagster as dg

from dagster_twins.contract import (
    QUARANTINE_TABLE,
    RAW_LANDING_DATE,
    RAW_LOADED_AT,
    RAW_ROW_ID,
    RAW_SCHEMA,
    RAW_SOURCE_FILE,
    RAW_SOURCE_LINE,
    SOURCES,
    SQL_TYPES,
)
from dagster_twins.ingestion.files import root_notices
from dagster_twins.ingestion.loader import LoadResult, load_source, log_notices
from dagster_twins.ingestion.resources import LandingResource
from dagster_twins.metadata import md_table
from dagster_twins.partitions import single_run, window_dates
from dagster_twins.warehouse.resources import WarehouseResource

GROUP = "ingestion"
RECONCILE_CHECK = "rows_reconcile"
# A warning (the run goes on) naming every file refused, every entry not read and every changed re-send, so none
# goes unmentioned in the UI, the CLI's tally and the data-quality report.
ACCOUNTED_CHECK = "every_file_accounted"
ROOT_SOURCE = "(landing root)"  # the load log's source for entries at the landing root that no source reads


def raw_key(source: str) -> dg.AssetKey:
    return dg.AssetKey([RAW_SCHEMA, source])


QUARANTINE_KEY = raw_key(QUARANTINE_TABLE)

def raw_column_schema(source: str) -> dg.TableSchema:
    """The raw table's columns as the contract types them (SQL types as created), then the bookkeeping columns."""
    contract = SOURCES[source]
    columns = [dg.TableColumn(c.name, SQL_TYPES[c.type], description=("required" if c.required else ""),
                              constraints=dg.TableColumnConstraints(nullable=not c.required))
               for c in contract.columns]
    bookkeeping = [(RAW_ROW_ID, "varchar", "the source's id, or a hash of the row"),
                   (RAW_SOURCE_FILE, "varchar", "landing file"), (RAW_SOURCE_LINE, "bigint", "line in the file"),
                   (RAW_LANDING_DATE, "date", "landing day (the partition)"), (RAW_LOADED_AT, "timestamp", "loaded at")]
    return dg.TableSchema(columns=columns + [dg.TableColumn(n, t, description=d) for n, t, d in bookkeeping])


_SPECS = [
    dg.AssetSpec(
        raw_key(name),
        group_name=GROUP,
        description=f"Raw `{name}` rows from the landing files: typed to the contract, deduplicated on "
        f"`_row_id`, one landing day per partition. Malformed rows go to `raw.quarantine`.",
        metadata={"dagster/column_schema": raw_column_schema(name)},
        kinds={"duckdb"},
        skippable=True,
    )
    for name in SOURCES
] + [
    dg.AssetSpec(
        QUARANTINE_KEY,
        group_name=GROUP,
        description="Rows that could not be loaded, with source, file, line, reason and the original record.",
        kinds={"duckdb"},
        skippable=True,
    )
]


def _markdown_table(rows: dict[str, int], header: tuple[str, str]) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---:|"]
    lines += [f"| {k} | {v:,} |" for k, v in rows.items()] or ["| (none) | 0 |"]
    return "\n".join(lines)


def _metadata(result: LoadResult, seconds: float) -> dict[str, dg.MetadataValue | int | float | str | bool]:
    totals = result.summary()
    return {
        **totals,
        **{f"run_{name}": value for name, value in totals.items()},  # the run's totals (a day's own counts above)
        "reconciles": result.reconciles,
        "files": len(result.files),
        "landing_dates": f"{result.landing_dates[0]} .. {result.landing_dates[-1]}" if result.landing_dates else "",
        "quarantine_reasons": dg.MetadataValue.md(_markdown_table(result.quarantine_reasons, ("reason", "rows"))),
        "dagster/row_count": result.rows_in_table,
        "seconds": round(seconds, 2),
    }


def per_day_counts(result: LoadResult, dates: list[date]) -> dict[date, dict[str, int | str | bool]]:
    """For each landing day of a range run, its own files' counts (the metadata of that day's partition); the run's
    totals stay on the run's whole-range metadata under ``run_*``."""
    out = {}
    for day in dates:
        files = [f for f in result.files if f.landing_date == day]
        counts = {name: sum(getattr(f, name) for f in files)
                  for name in ("rows_read", "rows_loaded", "rows_duplicate", "rows_quarantined")}
        out[day] = {**counts, "files": len(files), "landing_dates": day.isoformat(),
                    "reconciles": all(f.reconciles for f in files)}
    return out


def raw_sources(context: dg.AssetExecutionContext, warehouse: WarehouseResource, landing: LandingResource):
    """Load each selected source's landing files for the partition window into ``raw``."""
    window = context.partition_time_window
    dates = window_dates(window.start.date(), window.end.date())
    mappings = landing.mappings()
    selected = [name for name in SOURCES if raw_key(name) in context.selected_asset_keys]
    con = warehouse.connect()
    try:
        for name in selected:
            started = time.perf_counter()
            result = load_source(con, name, mappings[name], landing.root, dates, load_id=context.run_id,
                                 progress=context.log.debug)
            totals = result.summary()
            context.log.info(
                f"raw.{name}: {totals['rows_read']:,} read, {totals['rows_loaded']:,} loaded, "
                f"{totals['rows_duplicate']:,} duplicate, {totals['rows_quarantined']:,} quarantined "
                f"from {len(result.files)} file(s)"
            )
            metadata = _metadata(result, time.perf_counter() - started)
            if len(dates) > 1:  # a range run: each day's partition shows its own files' counts, not the range's
                for day, counts in per_day_counts(result, dates).items():
                    context.add_asset_metadata(counts, asset_key=raw_key(name), partition_key=day.isoformat())
            yield dg.MaterializeResult(asset_key=raw_key(name), metadata=metadata)
            bad_files = [f.source_file for f in result.files if not f.reconciles]
            yield dg.AssetCheckResult(
                asset_key=raw_key(name),
                check_name=RECONCILE_CHECK,
                passed=not bad_files,
                metadata={**totals, "files_not_reconciling": ", ".join(bad_files) or "none"},
            )
            yield _accounted(raw_key(name), result)
        if QUARANTINE_KEY in context.selected_asset_keys:
            yield _quarantine_result(con)
            notices = root_notices(landing.root, [m.folder for m in mappings.values()])
            for notice in notices:
                context.log.warning(f"{notice.path}: {notice.message}")
            if dates:
                log_notices(con, context.run_id, ROOT_SOURCE, notices, dates[0])
            yield dg.AssetCheckResult(
                asset_key=QUARANTINE_KEY, check_name=ACCOUNTED_CHECK, passed=not notices,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"not_read": len(notices),
                          "first": _short(f"{notices[0].path.name}: {notices[0].message}" if notices else "none"),
                          "entries": dg.MetadataValue.md(_list(f"{n.path}: {n.message}" for n in notices))},
            )
    finally:
        con.close()


def build_raw_sources(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """The raw tables as one multi-asset over ``partitions_def`` (a partition per landing day)."""
    return dg.multi_asset(
        specs=_SPECS,
        check_specs=[
            dg.AssetCheckSpec(
                RECONCILE_CHECK,
                asset=raw_key(name),
                description="For every file loaded: rows read = rows loaded + duplicate + quarantined.",
            )
            for name in SOURCES
        ] + [
            dg.AssetCheckSpec(
                ACCOUNTED_CHECK,
                asset=raw_key(name),
                description="Every file of the source's folder was read (none refused, none skipped) and no key "
                "arrived again with changed content (raw.conflicts); a warning naming them otherwise.",
            )
            for name in SOURCES
        ] + [
            dg.AssetCheckSpec(
                ACCOUNTED_CHECK,
                asset=QUARANTINE_KEY,
                description="Nothing at the top of the landing root that no source reads (a misspelt folder, a "
                "stray file); a warning naming it otherwise (logged as skipped in raw.load_log).",
            )
        ],
        partitions_def=partitions_def,
        backfill_policy=single_run,
        can_subset=True,
        name="raw_sources",
    )(raw_sources)


def _short(text: str) -> str:
    """At most 80 characters: the data-quality report shows a check's short texts (the rest is in the UI)."""
    return text if len(text) <= 80 else text[:77] + "..."


def _list(lines) -> str:
    lines = list(lines)
    return "\n".join(f"- {line}" for line in lines[:50]) + (f"\n- ... and {len(lines) - 50} more"
                                                           if len(lines) > 50 else "") if lines else "none"


def _accounted(key: dg.AssetKey, result: LoadResult) -> dg.AssetCheckResult:
    refused = [f.message for f in result.refused]  # the message names the file and the line
    skipped = [f"{f.source_file}: {f.message}" for f in result.notices]
    conflicting = [f"{f.source_file}: {f.rows_conflicting} changed re-send(s)" for f in result.files
                   if f.rows_conflicting]
    # For the report's short text: the first entry, by file name.
    named = [f"{Path(f.source_file).name}: {f.message.split(': ', 1)[-1]}" for f in result.refused] + [
        f"{Path(f.source_file).name}: {f.message}" for f in result.notices] + [
        f"{Path(f.source_file).name}: {f.rows_conflicting} changed re-send(s)" for f in result.files
        if f.rows_conflicting]
    return dg.AssetCheckResult(
        asset_key=key, check_name=ACCOUNTED_CHECK, passed=not (refused or skipped or conflicting),
        severity=dg.AssetCheckSeverity.WARN,
        # Short texts first: the data-quality report shows numbers and short texts of a check's metadata.
        metadata={"files_refused": len(refused), "entries_skipped": len(skipped),
                  "rows_conflicting": sum(f.rows_conflicting for f in result.files),
                  "first": _short((named or ["none"])[0]),
                  "refused": dg.MetadataValue.md(_list(refused)), "skipped": dg.MetadataValue.md(_list(skipped)),
                  "conflicts": dg.MetadataValue.md(_list(conflicting))},
    )


def _quarantine_result(con) -> dg.MaterializeResult:
    by_source = dict(
        con.execute(
            f"select source, count(*) from {RAW_SCHEMA}.{QUARANTINE_TABLE} group by 1 order by 2 desc"
        ).fetchall()
    )
    preview = con.execute(
        f"select source, source_file, source_line, reason from {RAW_SCHEMA}.{QUARANTINE_TABLE} "
        "order by loaded_at desc, source, source_line limit 10"
    ).df()
    return dg.MaterializeResult(
        asset_key=QUARANTINE_KEY,
        metadata={
            "dagster/row_count": int(sum(by_source.values())),
            "rows_by_source": dg.MetadataValue.md(_markdown_table(by_source, ("source", "rows"))),
            "preview": md_table(preview, floatfmt="g"),
        },
    )
