"""dbt models, seeds and tests as Dagster assets and asset checks, run for the partition window."""


import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from dagster_twins.metadata import table_metadata
from dagster_twins.partitions import run_window, single_run
from dagster_twins.settings import Settings
from dagster_twins.transform.lake import export_raw_lake
from dagster_twins.transform.project import dbt_project
from dagster_twins.warehouse.resources import WarehouseResource
from dagster_twins.warehouse.spark import is_spark_target, stop_spark_session
from dagster_twins.warehouse.spark_metastore import metastore_db, provision_metastore


class TwinsDbtTranslator(DagsterDbtTranslator):
    """Groups follow dbt's layers (the model's folder); seeds are reference data."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "seed":
            return "reference"
        fqn = dbt_resource_props.get("fqn", [])
        return fqn[1] if len(fqn) > 2 else "dbt"


    def get_asset_check_spec(self, asset_spec: dg.AssetSpec, manifest: Mapping[str, Any], unique_id: str,
                             project: Any) -> dg.AssetCheckSpec | None:
        """dbt's test as a check, with a description saying what it asserts when the YAML gives none."""
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None or spec.description:
            return spec
        return dg.AssetCheckSpec(spec.name, asset=spec.asset_key, description=test_description(
            manifest["nodes"][unique_id]), additional_deps=spec.additional_deps, blocking=spec.blocking,
            metadata=spec.metadata, automation_condition=spec.automation_condition,
            partitions_def=spec.partitions_def)


_MEANINGS = {"not_null": "no row leaves it empty", "unique": "no two rows share a value",
             "accepted_values": "holds only the accepted values", "relationships": "every value exists upstream"}


def test_description(test: Mapping[str, Any]) -> str:
    """What a dbt test asserts, in a line: the generic test, its column and arguments, or the singular test's file."""
    generic = test.get("test_metadata") or {}
    if not generic:
        return f"dbt test {test['original_file_path']}: passes when its query returns no rows."
    name = generic.get("name", test["name"])
    kwargs = {k: v for k, v in (generic.get("kwargs") or {}).items() if k not in ("model", "column_name")}
    column = test.get("column_name") or (generic.get("kwargs") or {}).get("column_name")
    text = f"dbt test {name}" + (f" on {column}" if column else "")
    text += f": {_MEANINGS[name]}" if name in _MEANINGS else ""
    if kwargs:
        text += " (" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")"
    if "_written__" in ((test.get("config") or {}).get("where") or ""):  # macros/window.sql's placeholders
        text += "; over the rows the run wrote (every row in a run without a landing window, or on --full-refresh)"
    return text + f"; defined in {test['original_file_path']}."


translator = TwinsDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True,
                                                                     enable_code_references=True))


WINDOW_ENV = ("TWINS_DBT_MIN_DATE", "TWINS_DBT_MAX_DATE")  # read by dbt/macros/window.sql's window_bound


def dbt_window_env(tags: Mapping[str, str]) -> dict[str, str]:
    """The run's landing-day window for dbt: landing dates in [TWINS_DBT_MIN_DATE, TWINS_DBT_MAX_DATE).

    dbt models are not partitioned themselves (Dagster would record every model once per day of a
    backfill, which costs more than the models); they take the window of the partitioned run they are part
    of. Materialized on their own, without a window, the incremental models reprocess everything. The window goes
    through the environment, not ``--vars``: vars are part of what dbt's partial parsing depends on, so a new
    window every day made every run parse the whole project again.
    """
    window = run_window(tags)
    return dict(zip(WINDOW_ENV, (window[0].isoformat(), window[1].isoformat()), strict=True)) if window else {}


def keep_partial_parse(invocation: Any, project_target: Path) -> None:
    """The build's parse state becomes the project's, so that the next build (dagster-dbt copies the project's
    ``partial_parse.msgpack`` into each invocation's own target folder) parses only what changed: the state of
    ``dbt parse`` at set-up was made without the settings' vars, and any change of vars parses everything.
    Replaced atomically (runs may overlap); best effort, since a read-only project only loses the speed."""
    made = Path(invocation.target_path) / "partial_parse.msgpack"
    if not made.exists():
        return
    try:
        tmp = project_target / f".partial_parse.{os.getpid()}.tmp"
        shutil.copyfile(made, tmp)
        os.replace(tmp, project_target / "partial_parse.msgpack")
    except OSError:
        pass


# dagster-dbt gives every build its own target folder in the project's (``dbt_models-<run>-<uuid>``: manifest, run
# results, compiled SQL, about 9 MB at the demo's size) and never removes one: a year of daily runs is 3 GB.
KEEP_INVOCATIONS = 20
KEEP_INVOCATIONS_DAYS = 1  # never a folder this recent: a build of an overlapping run may still be writing it


def prune_invocations(invocation: Any, keep: int = KEEP_INVOCATIONS, min_age_days: float = KEEP_INVOCATIONS_DAYS
                      ) -> int:
    """Remove the target folders of earlier builds of this asset beyond the newest ``keep``, if older than
    ``min_age_days``; best effort. Returns how many were removed."""
    current = Path(invocation.target_path)
    prefix = current.name.split("-", 1)[0] + "-"
    folders: list[tuple[float, Path]] = []
    for path in current.parent.glob(prefix + "*"):
        with contextlib.suppress(OSError):  # removed meanwhile by another run's build
            if path.is_dir() and path != current:
                folders.append((path.stat().st_mtime, path))
    folders.sort(reverse=True)
    cutoff = time.time() - min_age_days * 86400
    removed = 0
    for modified, folder in folders[max(keep - 1, 0):]:
        if modified < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


DBT_OUTPUT_TAG = "twins/dbt_output"  # "file": dbt's console output goes to a file in reports/ (the CLI's default)


def build_dbt_assets(settings: Settings) -> dg.AssetsDefinition:
    """The dbt project as assets; each build gets the run's landing-day window and the settings' vars."""

    @dbt_assets(
        manifest=dbt_project.manifest_path,
        project=dbt_project,
        dagster_dbt_translator=translator,
        # Lets a range of landing days (a CLI --partition-range, a UI backfill) include the models in one run.
        backfill_policy=single_run,
        name="dbt_models",
    )
    def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource):
        # dbt runs in a subprocess that inherits this environment, and its profile can read nothing else: the
        # warehouse (and memory cap, Spark folder) reach it here.
        window = dbt_window_env(context.run.tags)
        for key in WINDOW_ENV:
            os.environ.pop(key, None)
        os.environ.update({**settings.dbt_environ(), **window})
        if window:
            context.log.info(f"dbt build for landing days {window[WINDOW_ENV[0]]} .. {window[WINDOW_ENV[1]]} "
                             "(exclusive)")
        else:
            context.log.info("dbt build over all landed data (no landing-day window in this run)")
        if is_spark_target(dbt.target):
            prepare_spark(context, warehouse)
        invocation = dbt.cli(["build", "--vars", json.dumps(settings.dbt_vars())], context=context)
        events = invocation.stream() if is_spark_target(dbt.target) else with_tables(context, warehouse,
                                                                                    invocation.stream())
        if context.run.tags.get(DBT_OUTPUT_TAG) != "file":
            yield from events
        else:
            # The command line keeps its console to progress and the summary: dbt's own output goes to a file.
            path = warehouse.reports_folder / f"dbt_output_{context.run_id[:8]}.log"
            path.parent.mkdir(parents=True, exist_ok=True)
            context.log.info(f"dbt's output: {path}")
            with path.open("w") as sink, contextlib.redirect_stdout(sink):
                yield from events
        keep_partial_parse(invocation, dbt_project.project_dir / dbt_project.target_path)
        prune_invocations(invocation)

    return dbt_models


def with_tables(context: dg.AssetExecutionContext, warehouse: WarehouseResource, events: Iterable[Any]
                ) -> Iterator[Any]:
    """dbt's events, each model's materialization with its table's column types (descriptions from the model's
    YAML kept) and, for tables, its row count, read from the warehouse once dbt has finished.

    dagster-dbt's own ``fetch_column_metadata()``/``fetch_row_counts()`` query while dbt runs, through a second
    connection: DuckDB's single writer refuses it while dbt's process holds the file. So the events wait for dbt
    to end (they reach the UI at the end of the step rather than model by model); one catalog query and one
    ``count(*)`` a table follow (views are not counted: that would run them). If dbt fails, the events so far
    pass on unchanged before the error."""
    held: list[Any] = []
    try:
        held.extend(events)
    except BaseException:
        yield from held
        raise
    keys = context.assets_def.keys_by_output_name
    con = warehouse.connect(read_only=True)
    try:
        for event in held:
            key = keys.get(event.output_name) if isinstance(event, dg.Output) else getattr(event, "asset_key", None)
            if key is None or not isinstance(event, (dg.Output, dg.AssetMaterialization)):
                yield event
                continue
            declared = context.assets_def.specs_by_key[key].metadata.get("dagster/column_schema") \
                if key in context.assets_def.specs_by_key else None
            descriptions = {c.name: c.description for c in declared.columns if c.description} if declared else {}
            yield event.with_metadata({**event.metadata, **table_metadata(con, key, row_count=True,
                                                                           descriptions=descriptions)})
    finally:
        con.close()


def prepare_spark(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> None:
    """Before dbt runs on Spark: the raw tables ingestion loaded into DuckDB go to the Parquet lake dbt's Spark
    sources read (the run's landing days, and any the lake lacks), and the profile learns the Spark folder. A Spark
    session this process still holds (a Python asset of an earlier run) is stopped: its JVM keeps the Derby
    metastore, which dbt's own session must open."""
    stop_spark_session()
    if provision_metastore(warehouse.spark_folder):
        context.log.info(f"A new Spark folder: its metastore copied from the machine's template "
                         f"({metastore_db(warehouse.spark_folder)})")
    con = warehouse.connect(read_only=True)
    try:
        export = export_raw_lake(con, warehouse.spark_folder, run_window(context.run.tags))
    finally:
        con.close()
    context.log.info(f"Raw tables to the Spark lake {warehouse.spark_folder / 'lake'}: "
                     f"{sum(export.rows_written.values()):,} rows over {sum(export.days_written.values())} table-days "
                     f"written, {sum(export.days_removed.values())} table-days removed")
