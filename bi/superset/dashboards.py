"""The dagster-twins dashboards as code: datasets (bi/datasets/*.sql), their metrics, charts and five dashboards,
written as a Superset import bundle (a ZIP of YAML) that `superset import-dashboards` loads.

Runs in the BI environment (bi/.venv, bi/requirements.lock), never in the pipeline's:

    bi/.venv/bin/python bi/superset/dashboards.py --serving data/serving/warehouse.duckdb --out bi/build/twins.zip

Every dataset is a Superset *virtual* dataset: the SQL in bi/datasets/<name>.sql over the serving copy. Its columns
are read from the serving copy (DESCRIBE), so a column the SQL no longer returns fails here, not in a chart.
"""

from __future__ import annotations

import argparse
import json
import uuid
import zipfile
from pathlib import Path

import duckdb
import yaml

BI = Path(__file__).resolve().parents[1]
DATASETS_DIR = BI / "datasets"
NAMESPACE = uuid.UUID("6f1b7c2e-3d4a-4b5c-9e8f-2a1b0c9d8e7f")  # stable uuids: re-importing replaces, not duplicates
DATABASE_NAME = "dagster-twins serving copy"


def uid(kind: str, name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{kind}:{name}"))


# The documented metrics (docs/bi.md): a chart picks one by name instead of writing SQL.
# dataset -> metric -> (SQL expression, label, d3 format)
METRICS: dict[str, dict[str, tuple[str, str, str]]] = {
    "twins": {
        "users": ("count(*)", "Users", ",d"),
        "mean_confidence": ("avg(overall_confidence)", "Mean twin confidence", ".0%"),
        "mean_interactions_per_week": ("avg(interactions_per_week)", "Interactions per week (mean)", ".2f"),
    },
    "twin_history": {
        "users": ("count(*)", "Users", ",d"),
        "mean_confidence": ("avg(overall_confidence)", "Mean twin confidence", ".0%"),
    },
    "beliefs": {
        "mean": ("avg(mean)", "Posterior mean", ".3f"),
        "lower_90": ("avg(lower_90)", "90% interval, lower", ".3f"),
        "upper_90": ("avg(upper_90)", "90% interval, upper", ".3f"),
    },
    "predictions": {
        "users": ("count(*)", "Users", ",d"),
        "mean_p_churn_30d": ("avg(p_churn_30d)", "Mean P(churn within 30 days)", ".1%"),
        "expected_churners_30d": ("sum(p_churn_30d)", "Expected churners within 30 days", ",.0f"),
        "expected_returns_30d": ("sum(p_return_30d)", "Expected returns within 30 days", ",.0f"),
    },
    "prediction_history": {
        "mean_p_churn_30d": ("avg(p_churn_30d)", "P(churn within 30 days)", ".1%"),
        "lower_90": ("avg(p_churn_30d_lower_90)", "90% interval, lower", ".1%"),
        "upper_90": ("avg(p_churn_30d_upper_90)", "90% interval, upper", ".1%"),
    },
    "risk_tiers": {"users": ("sum(users)", "Users", ",d")},
    "calibration": {
        "predicted": ("sum(predicted * users) / sum(users)", "Predicted rate", ".1%"),
        "observed": ("sum(observed * users) / sum(users)", "Observed rate", ".1%"),
    },
    "model_metrics": {
        "auc": ("avg(auc)", "AUC, model", ".3f"),
        "auc_recency": ("avg(auc_recency)", "AUC, recency alone", ".3f"),
        "auc_events_per_day": ("avg(auc_events_per_day)", "AUC, events per day alone", ".3f"),
        "calibration_error": ("avg(calibration_error)", "Calibration error", ".3f"),
    },
    "drivers": {"users": ("count(distinct user_id)", "Users", ",d")},
    "scenarios": {
        "users_kept": ("sum(expected_users_kept)", "Users kept (expected)", ",.1f"),
        "users_kept_lower_90": ("sum(expected_users_kept_lower_90)", "Users kept, 90% lower", ",.1f"),
        "users_kept_upper_90": ("sum(expected_users_kept_upper_90)", "Users kept, 90% upper", ",.1f"),
        "value_kept": ("sum(expected_value_kept)", "Value kept (expected)", ",.2f"),
        "retention_difference": ("avg(retention_difference)", "Retention gain", ".2%"),
        "placebo_difference": ("avg(placebo_difference)", "Placebo gain (should be ~0)", ".2%"),
    },
    "dq_results": {
        "checks": ("count(*)", "Checks", ",d"),
        "failed_checks": ("sum(failed)", "Failed checks", ",d"),
        "pass_rate": ("avg(case when passed then 1.0 else 0.0 end)", "Pass rate", ".1%"),
    },
    "publication": {
        "tables": ("max(tables)", "Tables published", ",d"),
        "rows": ("max(table_rows)", "Rows published", ",d"),
    },
}
TEMPORAL = {"twin_history": "as_of", "prediction_history": "as_of", "dq_results": "checked_at"}


def big_number(metric: str, subheader: str = "") -> dict:
    return {"viz_type": "big_number_total", "metric": metric, "subheader": subheader, "header_font_size": 0.4,
            "subheader_font_size": 0.15, "y_axis_format": "SMART_NUMBER"}


def bars(x: str, metrics: list[str], groupby: list[str] | None = None, horizontal: bool = False,
         sort: str | None = None, limit: int | None = None, stack: bool = False) -> dict:
    params = {"viz_type": "echarts_timeseries_bar", "x_axis": x, "metrics": metrics, "groupby": groupby or [],
              "orientation": "horizontal" if horizontal else "vertical", "show_legend": True,
              "x_axis_sort_asc": True, "row_limit": 10000, "truncate_metric": True, "show_value": True,
              "rich_tooltip": True, "stack": "Stack" if stack else None}
    if sort:
        params.update(x_axis_sort=sort, x_axis_sort_asc=sort == x)
    if limit:
        params.update(series_limit=limit, row_limit=limit)
    return params


def lines(x: str, metrics: list[str], groupby: list[str] | None = None, temporal: bool = True) -> dict:
    params = {"viz_type": "echarts_timeseries_line", "x_axis": x, "metrics": metrics, "groupby": groupby or [],
              "show_legend": True, "markerEnabled": True, "markerSize": 6, "rich_tooltip": True,
              "row_limit": 10000, "truncate_metric": True}
    if temporal:
        params.update(time_grain_sqla="P1D", x_axis_time_format="%Y-%m-%d")
    return params


def pie(groupby: str, metric: str) -> dict:
    return {"viz_type": "pie", "groupby": [groupby], "metric": metric, "show_labels": True, "label_type": "key_percent",
            "show_legend": True, "row_limit": 100, "sort_by_metric": True, "donut": True}


PERCENT = ("p_", "retention", "placebo", "probability", "pass_rate")
DECIMAL = ("mean", "lower_90", "upper_90", "confidence", "users_kept", "per_user")


def number_format(column: str) -> str | None:
    """How a table shows a column: probabilities and rates as percentages, estimates with three decimals."""
    if column.startswith(PERCENT[0]) or any(p in column for p in PERCENT[1:]):
        return ".1%"
    return ".3f" if any(p in column for p in DECIMAL) else None


def table(columns: list[str], order: str | None = None, desc: bool = True, limit: int = 100) -> dict:
    params = {"viz_type": "table", "query_mode": "raw", "all_columns": columns, "row_limit": limit,
              "server_page_length": 25, "include_search": True, "order_by_cols": [],
              "column_config": {c: {"d3NumberFormat": f} for c in columns if (f := number_format(c))}}
    if order:
        params["order_by_cols"] = [json.dumps([order, not desc])]
    return params


def agg_table(groupby: list[str], metrics: list[str], order: str | None = None, limit: int = 100) -> dict:
    params = {"viz_type": "table", "query_mode": "aggregate", "groupby": groupby, "metrics": metrics,
              "row_limit": limit, "include_search": True, "order_desc": True}
    if order:
        params["timeseries_limit_metric"] = order
    return params


def where(sql: str) -> dict:
    return {"adhoc_filters": [{"clause": "WHERE", "expressionType": "SQL", "sqlExpression": sql}]}


LAST_RUN = "is_last_run"

# (dashboard slug, title, [(chart title, dataset, params, width 1-12)])
DASHBOARDS: list[tuple[str, str, str, list[tuple[str, str, dict, int]]]] = [
    ("twins-overview", "Twins overview", "How many twins, how sure they are, what users are into, and how that "
     "drifts.", [
        ("Users with a twin", "twins", big_number("users", "twins in the serving copy"), 3),
        ("Mean twin confidence", "twins", big_number("mean_confidence", "0 = prior only, 1 = certain"), 3),
        ("Rows published", "publication", big_number("rows", "in the serving copy"), 3),
        ("Tables published", "publication", big_number("tables", "in the serving copy"), 3),
        ("Top interests", "twins", bars("top_interest", ["users"], sort="users"), 6),
        ("Primary goals", "twins", bars("primary_goal", ["users"], sort="users"), 6),
        ("Twin confidence", "twins", pie("confidence_band", "users"), 4),
        ("Preferred channel", "twins", pie("preferred_channel", "users"), 4),
        ("Preferred format", "twins", pie("preferred_format", "users"), 4),
        ("Drift: users per top interest, per snapshot", "twin_history", lines("as_of", ["users"], ["top_interest"]), 6),
        ("Drift: mean confidence per snapshot", "twin_history", lines("as_of", ["mean_confidence"]), 6),
    ]),
    ("user-twin", "One user's twin", "Pick a user id in the filter bar (type to search): beliefs with 90% intervals, "
     "why, predictions and history.", [
        ("Twin summary", "twins", table(["user_id", "top_interests", "primary_goal", "preferred_channel",
                                         "preferred_format", "overall_confidence", "risk_tier", "last_evidence_day"]),
         12),
        ("Beliefs: posterior mean with 90% interval", "beliefs",
         bars("belief_label", ["lower_90", "mean", "upper_90"], horizontal=True)
         | where("family <> 'gamma'") | {"show_value": False}, 6),
        ("Beliefs explained", "beliefs", table(["belief_label", "mean", "lower_90", "upper_90", "confidence",
                                               "raw_events", "why"], order="mean"), 6),
        ("Churn and return predictions", "predictions", table(["state", "question", "risk_tier", "p_churn_30d",
                                                               "p_churn_30d_lower_90", "p_churn_30d_upper_90",
                                                               "p_return_30d", "top_drivers"]), 12),
        ("History: P(churn within 30 days) per run", "prediction_history",
         lines("as_of", ["mean_p_churn_30d", "lower_90", "upper_90"]), 6),
        ("History: twin per run", "twin_history", table(["as_of", "top_interest", "primary_goal", "overall_confidence"],
                                                        order="as_of"), 6),
    ]),
    ("churn-risk", "Churn and return risk", "Who may leave, who may come back, how well the model is calibrated, "
     "and why.", [
        ("Expected churners within 30 days", "predictions", big_number("expected_churners_30d", "sum of P(churn)"), 4),
        ("Expected returns within 30 days", "predictions", big_number("expected_returns_30d", "lapsed users"), 4),
        ("Mean P(churn within 30 days)", "predictions", big_number("mean_p_churn_30d", "active users"), 4),
        ("Users per risk tier (every tier, even when empty)", "risk_tiers", bars("tier", ["users"]), 6),
        ("Risk tiers defined", "risk_tiers", table(["tier", "definition", "users"], order="tier", desc=False), 6),
        ("Calibration: churn, predicted vs observed per decile of risk", "calibration",
         lines("decile", ["predicted", "observed"], ["horizon"], temporal=False) | where("is_headline"), 6),
        ("Predicted vs observed rate per horizon", "calibration", agg_table(["horizon"], ["predicted", "observed"]), 6),
        ("Model vs one-variable baselines (AUC)", "model_metrics",
         bars("horizon", ["auc", "auc_recency", "auc_events_per_day"]), 6),
        ("Strongest churn drivers (plain words)", "drivers",
         bars("driver", ["users"], ["effect"], horizontal=True, sort="users", limit=15, stack=True), 6),
        ("Riskiest users", "predictions", table(["user_id", "risk_tier", "p_churn_30d", "p_churn_30d_lower_90",
                                                 "p_churn_30d_upper_90", "top_drivers"], order="p_churn_30d")
         | where("question = 'churn'"), 12),
    ]),
    ("scenarios", "Scenarios and policies", "What-if interventions: users kept with 90% intervals, ranked, beside "
     "a placebo that should show no effect.", [
        ("Users kept per scenario, with 90% interval", "scenarios",
         bars("scenario", ["users_kept_lower_90", "users_kept", "users_kept_upper_90"]), 6),
        ("Retention gain vs placebo", "scenarios", bars("scenario", ["retention_difference", "placebo_difference"]), 6),
        ("Policy ranking", "scenarios", table(["policy_rank", "scenario", "segment", "users_affected",
                                              "expected_users_kept", "expected_users_kept_lower_90",
                                              "expected_users_kept_upper_90", "users_kept_per_user_treated",
                                              "probability_difference_positive", "expected_value_kept",
                                              "expected_value_kept_lower_90", "expected_value_kept_upper_90"],
                                             order="policy_rank", desc=False),
         12),
        ("Scenario details and placebo", "scenarios", table(["scenario", "status", "status_reason", "effect_kind",
                                                             "retention_difference", "retention_difference_lower_90",
                                                             "retention_difference_upper_90", "placebo_difference",
                                                             "placebo_difference_lower_90",
                                                             "placebo_difference_upper_90"]), 12),
    ]),
    ("data-quality", "Data quality", "The verdict of the last run's checks and the trend over runs "
     "(quality.dq_results).", [
        ("Checks in the last run", "dq_results", big_number("checks") | where(LAST_RUN), 4),
        ("Failed checks in the last run", "dq_results", big_number("failed_checks", "0 means a clean run")
         | where(LAST_RUN), 4),
        ("Pass rate, last run", "dq_results", big_number("pass_rate") | where(LAST_RUN), 4),
        ("Trend: checks and failures per run", "dq_results", lines("checked_at", ["checks", "failed_checks"]), 6),
        ("Checks per layer and severity, last run", "dq_results",
         bars("layer", ["checks"], ["severity"], stack=True) | where(LAST_RUN), 6),
        ("Verdict per run", "dq_results", agg_table(["run_id", "checked_at"], ["checks", "failed_checks", "pass_rate"],
                                                    order="checked_at"), 12),
        ("Every check of the last run", "dq_results", table(["layer", "asset", "check_name", "severity", "passed",
                                                            "observed"], limit=500) | where(LAST_RUN), 12),
    ]),
]
USER_FILTER_DATASETS = ("twins", "beliefs", "predictions", "prediction_history", "twin_history")


def _columns(con: duckdb.DuckDBPyConnection, sql: str, dttm: str | None) -> list[dict]:
    return [{"column_name": name, "type": str(kind), "is_dttm": name == dttm or "TIMESTAMP" in str(kind)
             or str(kind) == "DATE", "groupby": True, "filterable": True, "is_active": True,
             "expression": None, "verbose_name": None, "description": None, "python_date_format": None,
             "extra": None, "advanced_data_type": None}
            for name, kind, *_ in con.execute(f"describe {sql}").fetchall()]


def default_user(con: duckdb.DuckDBPyConnection) -> str | None:
    """The user the user page opens on: of the active users whose twin has a top interest, the one most likely to
    churn (any user can be picked after)."""
    row = con.execute("select p.user_id from churn.churn_predictions as p join twins.user_twins as t using (user_id) "
                      "order by p.question = 'churn' and t.top_interest is not null desc, "
                      "p.p_churn_30d desc nulls last, p.user_id limit 1").fetchone()
    return row[0] if row else None


def user_filter(dataset: str, user: str | None) -> dict:
    """The user page's filter: one user id, searchable, set to ``user`` when the page opens."""
    chosen = {"filterState": {"value": [user]}, "extraFormData": {"filters": [
        {"col": "user_id", "op": "IN", "val": [user]}]}} if user else {"filterState": {}, "extraFormData": {}}
    return {"id": "NATIVE_FILTER-user-id", "name": "User id", "type": "NATIVE_FILTER",
            "filterType": "filter_select", "description": "Type to search a user id",
            "targets": [{"datasetUuid": uid("dataset", dataset), "column": {"name": "user_id"}}],
            "controlValues": {"enableEmptyFilter": True, "defaultToFirstItem": False, "multiSelect": False,
                              "searchAllOptions": True, "inverseSelection": False},
            "defaultDataMask": {**chosen, "ownState": {}}, "cascadeParentIds": [],
            "scope": {"rootPath": ["ROOT_ID"], "excluded": []}}


def bundle(serving: Path) -> dict[str, dict]:
    """Every YAML file of the import bundle by its path in the ZIP."""
    database = uid("database", DATABASE_NAME)
    files: dict[str, dict] = {
        # No "type": the dataset, chart and dashboard importers each accept the bundle (bi/superset/load.py).
        "metadata.yaml": {"version": "1.0.0", "timestamp": "2026-01-01T00:00:00+00:00"},
        "databases/twins_serving.yaml": {
            "database_name": DATABASE_NAME, "sqlalchemy_uri": f"duckdb:///{serving.resolve()}",
            "expose_in_sqllab": True, "allow_run_async": False, "allow_ctas": False, "allow_cvas": False,
            "allow_dml": False, "allow_file_upload": False, "cache_timeout": None,
            "extra": {"engine_params": {"connect_args": {"read_only": True}}, "allows_virtual_table_explore": True,
                      "metadata_params": {}, "schemas_allowed_for_file_upload": []},
            "uuid": database, "version": "1.0.0"},
    }
    con = duckdb.connect(str(serving), read_only=True)
    try:
        user = default_user(con)
        for path in sorted(DATASETS_DIR.glob("*.sql")):
            name, sql = path.stem, path.read_text().strip()
            dttm = TEMPORAL.get(name)
            files[f"datasets/twins_serving/{name}.yaml"] = {
                "table_name": name, "schema": None, "catalog": None, "sql": sql, "main_dttm_col": dttm,
                "description": sql.splitlines()[0].removeprefix("-- "), "default_endpoint": None, "offset": 0,
                "cache_timeout": None, "filter_select_enabled": True, "fetch_values_predicate": None,
                "extra": None, "normalize_columns": False, "always_filter_main_dttm": False,
                "uuid": uid("dataset", name), "database_uuid": database, "version": "1.0.0",
                "columns": _columns(con, f"({sql})", dttm),
                "metrics": [{"metric_name": m, "verbose_name": label, "metric_type": None, "expression": expr,
                             "description": label, "d3format": fmt, "currency": None, "extra": None,
                             "warning_text": None} for m, (expr, label, fmt) in METRICS.get(name, {}).items()],
            }
    finally:
        con.close()
    for slug, title, description, charts in DASHBOARDS:
        position: dict = {"DASHBOARD_VERSION_KEY": "v2",
                          "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
                          "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
                          "HEADER_ID": {"type": "HEADER", "id": "HEADER_ID", "meta": {"text": title}}}
        row, used = None, 12
        for i, (name, dataset, params, width) in enumerate(charts):
            chart = uid("chart", f"{slug}:{name}")
            files[f"charts/{slug}_{i:02d}.yaml"] = {
                "slice_name": name, "description": None, "certified_by": None, "certification_details": None,
                "viz_type": params["viz_type"], "params": {**params, "datasource": "", "adhoc_filters":
                                                           params.get("adhoc_filters", [])},
                "query_context": None, "cache_timeout": None, "uuid": chart,
                "dataset_uuid": uid("dataset", dataset), "version": "1.0.0"}
            if used + width > 12:
                row, used = f"ROW-{i}", 0
                position[row] = {"type": "ROW", "id": row, "children": [], "parents": ["ROOT_ID", "GRID_ID"],
                                 "meta": {"background": "BACKGROUND_TRANSPARENT"}}
                position["GRID_ID"]["children"].append(row)
            used += width
            height = 30 if params["viz_type"] == "big_number_total" else 60
            key = f"CHART-{i}"
            position[row]["children"].append(key)
            position[key] = {"type": "CHART", "id": key, "children": [], "parents": ["ROOT_ID", "GRID_ID", row],
                             "meta": {"width": width, "height": height, "uuid": chart, "sliceName": name,
                                      "chartId": i + 1}}
        metadata: dict = {"color_scheme": "supersetColors", "refresh_frequency": 0, "expanded_slices": {},
                          "timed_refresh_immune_slices": [], "cross_filters_enabled": False,
                          "native_filter_configuration": []}
        if slug == "user-twin":
            metadata["native_filter_configuration"] = [user_filter("twins", user)]
        files[f"dashboards/{slug}.yaml"] = {
            "dashboard_title": title, "description": description, "css": "", "slug": slug, "published": True,
            "certified_by": None, "certification_details": None, "uuid": uid("dashboard", slug),
            "position": position, "metadata": metadata, "version": "1.0.0"}
    return files


def write_bundle(serving: Path, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in bundle(serving).items():
            archive.writestr(f"twins_bundle/{name}", yaml.safe_dump(content, sort_keys=False))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serving", type=Path, required=True, help="the serving copy the dashboards read")
    parser.add_argument("--out", type=Path, required=True, help="the ZIP bundle to write")
    args = parser.parse_args()
    if not args.serving.exists():
        raise SystemExit(f"No serving copy at {args.serving}: run the pipeline first (`make demo` or `make run`).")
    path = write_bundle(args.serving, args.out)
    print(f"Dashboards bundle: {path} ({len(DASHBOARDS)} dashboards, "
          f"{sum(len(c) for *_, c in DASHBOARDS)} charts, {len(list(DATASETS_DIR.glob('*.sql')))} datasets)")


if __name__ == "__main__":
    main()
