"""Great Expectations (GX 1.x, offline): suites kept as JSON files in ``expectations/``, validated against tables
of the warehouse, results kept on disk so GX Data Docs lists every validation.

A suite file is GX's own suite format plus our settings under ``meta.dagster_twins``:

    table                   the warehouse table it validates
    asset                   the Dagster asset whose check it is (key path)
    blocking                a failure stops downstream assets in the run
    rows                    "landing_window" (rows loaded by the run) or "all"
    row_count_vs_previous   {min_ratio, max_ratio, per_landing_day}: the row count against the previous run's
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dagster_twins.quality.data_docs import localize_site


@dataclass(frozen=True)
class SuiteFile:
    name: str
    path: Path
    expectations: list[dict]
    table: str
    asset: list[str]
    blocking: bool
    rows: str = "all"  # all, landing_window (raw tables) or updated (the rows the run wrote: updated_column)
    updated_column: str = ""
    optional: bool = False  # its asset may be absent (built from configuration, e.g. only with scenario specs)
    why: str = ""
    row_count_vs_previous: dict = field(default_factory=dict)


def load_suite_file(path: Path) -> SuiteFile:
    raw = json.loads(path.read_text())
    settings = raw.get("meta", {}).get("dagster_twins")
    if not settings or "table" not in settings or "asset" not in settings:
        raise ValueError(f"{path}: meta.dagster_twins.table and .asset are required")
    rows = settings.get("rows", "all")
    if rows not in ("all", "landing_window", "updated") or (rows == "updated") != bool(settings.get("updated_column")):
        raise ValueError(f"{path}: meta.dagster_twins.rows is all, landing_window, or updated with updated_column "
                         f"(the column of the day a row was written); got rows={rows!r}")
    return SuiteFile(name=raw["name"], path=path, expectations=raw["expectations"], table=settings["table"],
                     asset=list(settings["asset"]), blocking=bool(settings.get("blocking", False)),
                     rows=rows, updated_column=settings.get("updated_column", ""),
                     optional=bool(settings.get("optional", False)), why=settings.get("why", ""),
                     row_count_vs_previous=settings.get("row_count_vs_previous", {}))


def load_suite_files(folder: Path) -> list[SuiteFile]:
    return [load_suite_file(p) for p in sorted(folder.glob("*.json"))]


def row_count_verdict(suite: SuiteFile, rows: int, landing_days: int, previous: tuple[float, int] | None,
                      baseline: str = "before") -> dict | None:
    """The row count against a baseline (``previous``: its rows and landing days; for a per-landing-day rule, a
    typical day's rows and 1), as one result row; None on a first run or for a suite without the rule. Counted
    exactly in SQL, not on the validated sample. ``baseline`` names the baseline in the observed text."""
    rule = suite.row_count_vs_previous
    if not rule or previous is None or previous[0] <= 0:
        return None
    per_day = bool(rule.get("per_landing_day"))
    now = rows / max(landing_days, 1) if per_day else rows
    before = previous[0] / max(previous[1], 1) if per_day else previous[0]
    ratio = now / before
    ok = rule.get("min_ratio", 0.0) <= ratio <= rule.get("max_ratio", float("inf"))
    unit = "rows per landing day" if per_day else "rows"
    return {"expectation": "row_count_against_previous_run", "column": "", "success": bool(ok), "unexpected": None,
            "observed": f"{now:,.1f} {unit} against {before:,.1f} {baseline} (ratio {ratio:.2f}; allowed "
                        f"{rule.get('min_ratio', 0)}-{rule.get('max_ratio', 'any')})", "error": ""}


@dataclass(frozen=True)
class Validation:
    suite: str
    success: bool
    evaluated: int
    failed: int
    results: pd.DataFrame  # one row per expectation: expectation, column, success, unexpected, observed


def _import_gx():
    """great_expectations, imported safely in a Dagster run worker. With pyspark installed (the spark extra), GX
    imports ``pyspark.sql.connect``, which takes a process whose ``__main__`` has neither a spec nor a file (the
    run worker the instance launches) for a doctest session and calls ``sys.exit(0)``: the step failed with
    "SystemExit: 0" in every run launched from the UI or the CLI. Naming the main module's file for the import
    avoids it; the name is taken away again after it, because a process that keeps it cannot start children by
    spawn (they would try to run that file as their main module, and die)."""
    import sys

    main = sys.modules.get("__main__")
    named = main is not None and getattr(main, "__spec__", None) is None and not hasattr(main, "__file__")
    if named:
        main.__file__ = "<dagster run worker>"
    try:
        import great_expectations
    finally:
        if named:
            del main.__file__
    return great_expectations


def _context(store_dir: Path):
    """An ephemeral GX context whose validation results and Data Docs live under ``store_dir`` (analytics and
    progress bars off: it runs offline inside Dagster)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    gx = _import_gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        FilesystemStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        analytics_enabled=False, progress_bars=ProgressBarsConfig(globally=False),
        store_backend_defaults=FilesystemStoreBackendDefaults(root_directory=str(store_dir)),
        data_docs_sites={"local_site": {
            "class_name": "SiteBuilder", "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                              "base_directory": str(store_dir / "data_docs")},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }},
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def data_docs_index(store_dir: Path) -> Path:
    return store_dir / "data_docs" / "index.html"


def validate(suite: SuiteFile, frame: pd.DataFrame, store_dir: Path) -> Validation:
    """Validate ``frame`` against the suite, store the result and rebuild Data Docs."""
    gx = _import_gx()
    from great_expectations.core.expectation_suite import ExpectationSuite

    store_dir.mkdir(parents=True, exist_ok=True)
    context = _context(store_dir)
    gx_suite = context.suites.add_or_update(
        ExpectationSuite(name=suite.name, expectations=suite.expectations,
                         meta={"table": suite.table, "why": suite.why}))
    batch = (context.data_sources.add_pandas(suite.name).add_dataframe_asset(suite.table)
             .add_batch_definition_whole_dataframe("rows"))
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=suite.name, data=batch, suite=gx_suite))
    checkpoint = context.checkpoints.add_or_update(gx.Checkpoint(
        name=suite.name, validation_definitions=[definition],
        actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")]))
    outcome = next(iter(checkpoint.run(batch_parameters={"dataframe": frame}).run_results.values()))
    localize_site(store_dir / "data_docs")  # the pages' CDN files, vendored: Data Docs render offline
    rows = []
    for r in outcome.results:
        kwargs = r.expectation_config.kwargs
        rows.append({
            "expectation": r.expectation_config.type,
            "column": kwargs.get("column") or ", ".join(kwargs.get("column_list", []))
            or "/".join(filter(None, (kwargs.get("column_A"), kwargs.get("column_B")))),
            "success": bool(r.success),
            "unexpected": r.result.get("unexpected_count"),
            "observed": json.dumps(r.result.get("observed_value"), default=str)[:200]
            if r.result.get("observed_value") is not None else "",
            "error": _error_text(r.exception_info),
        })
    results = pd.DataFrame(rows)
    failed = int((~results["success"]).sum()) if len(results) else 0
    return Validation(suite.name, bool(outcome.success), len(results), failed, results)


def _error_text(info) -> str:
    """GX reports exceptions per metric, nested; the first message found, if any."""
    if isinstance(info, dict):
        if info.get("raised_exception") and info.get("exception_message"):
            return str(info["exception_message"])[:300]
        for value in info.values():
            text = _error_text(value)
            if text:
                return text
    return ""
