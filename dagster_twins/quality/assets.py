"""The data-quality report asset: gathers every check of the run, appends them to quality.dq_results and writes
the HTML report."""

import time

import dagster as dg
import pandas as pd

from dagster_twins.metadata import md_table
from dagster_twins.quality.checks import SCHEMA, gx_store_dir
from dagster_twins.quality.report import render_html, results_frame, status_of, summary_table
from dagster_twins.warehouse.resources import WarehouseResource
from dagster_twins.warehouse.tables import replace_rows, table_exists

REPORT_KEY = dg.AssetKey([SCHEMA, "dq_report"])


def _run_check_evaluations(instance: dg.DagsterInstance, run_id: str) -> list:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    return [r.event_log_entry.dagster_event.event_specific_data for r in records]


def build_report_asset(upstream: list[dg.AssetKey]) -> dg.AssetsDefinition:
    @dg.asset(
        key=REPORT_KEY, group_name="quality", kinds={"python", "duckdb", "html"}, deps=upstream,
        # Among steps ready at once, run after the checks of the last assets, so the report sees them.
        op_tags={"dagster/priority": "-10"},
        description="The data-quality report of the run: every dbt test, Great Expectations suite and Dagster asset "
                    "check with pass/fail and what it measured, appended to quality.dq_results (one row per check "
                    "and run, for BI), and a static HTML page (data/reports/dq_report.html) with the summary, the "
                    "failures, the trend over runs and a link to GX Data Docs.",
    )
    def dq_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        started = time.perf_counter()
        run_id = context.run.run_id
        checked_at = pd.Timestamp.now(tz="UTC").tz_localize(None)
        current = results_frame(_run_check_evaluations(context.instance, run_id), run_id, checked_at)
        con = warehouse.connect()
        try:
            replace_rows(con, SCHEMA, "dq_results", current, {"run_id": run_id})
            history = (con.execute(f"select * from {SCHEMA}.dq_results").df()
                       if table_exists(con, SCHEMA, "dq_results") else current)
        finally:
            con.close()
        reports = warehouse.reports_folder
        reports.mkdir(parents=True, exist_ok=True)
        path = reports / "dq_report.html"
        data_docs = gx_store_dir(warehouse) / "data_docs" / "index.html"
        path.write_text(render_html(current, history, run_id, checked_at, data_docs, path))
        counts = status_of(current).value_counts().to_dict() if len(current) else {}
        context.log.info(f"data-quality report: {counts} -> {path}")
        return dg.MaterializeResult(metadata={
            "report": dg.MetadataValue.path(str(path)), "data_docs": dg.MetadataValue.path(str(data_docs)),
            "checks": len(current), "passed": int(counts.get("passed", 0)), "warnings": int(counts.get("warning", 0)),
            "failed": int(counts.get("failed", 0)), "dagster/row_count": len(current),
            "summary": md_table(summary_table(current), floatfmt="g") if len(current) else "",
            "seconds": round(time.perf_counter() - started, 2),
        })

    return dq_report
