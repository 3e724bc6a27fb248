"""The data-quality report: every check of a run (dbt tests, Great Expectations suites, Dagster asset checks) as
rows of ``quality.dq_results``, and one static HTML page a person can open: the summary, what failed, the trend
over runs, and the way to GX Data Docs."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from dagster_twins.layers import DBT_SCHEMAS, layer_of  # noqa: E402


def check_source(asset_path: list[str], check_name: str) -> str:
    """Which tool a check comes from: a GX suite, a dbt test (checks on dbt models), or a Dagster asset check."""
    if check_name.startswith("gx_"):
        return "great_expectations"
    return "dbt" if asset_path[0] in DBT_SCHEMAS else "dagster"


def report_layer(asset_path: list[str]) -> str:
    """The layer a check is reported under (the transform layer's checks under "dbt", the tool that runs them)."""
    layer = layer_of(asset_path)
    return "dbt" if layer == "transform" else layer


def _observed(metadata: dict) -> str:
    """A short text of what a check measured, from its metadata (numbers and short texts only)."""
    parts = []
    for key, value in metadata.items():
        raw = getattr(value, "value", value)
        if isinstance(raw, float):
            parts.append(f"{key}={raw:.4g}")
        elif isinstance(raw, bool | int) or (isinstance(raw, str) and len(raw) <= 80):
            parts.append(f"{key}={raw}")
    return "; ".join(parts)[:500]


def results_frame(evaluations: list, run_id: str, checked_at: pd.Timestamp) -> pd.DataFrame:
    """``dq_results`` rows from Dagster's asset check evaluations (AssetCheckEvaluation objects)."""
    rows = []
    for e in evaluations:
        path = list(e.asset_key.path)
        rows.append({
            "run_id": run_id, "checked_at": checked_at, "source": check_source(path, e.check_name),
            "layer": report_layer(path), "asset": "/".join(path), "check_name": e.check_name, "passed": bool(e.passed),
            "severity": "warn" if e.severity.value == "WARN" else "error", "observed": _observed(e.metadata),
        })
    columns = ["run_id", "checked_at", "source", "layer", "asset", "check_name", "passed", "severity", "observed"]
    # Typed even when empty (a run of the report alone has no checks): an empty object column used as a mask
    # would select columns instead of rows.
    return pd.DataFrame(rows, columns=columns).astype({"passed": bool})


def status_of(frame: pd.DataFrame) -> pd.Series:
    return frame["passed"].map({True: "passed"}).fillna(frame["severity"].map({"warn": "warning", "error": "failed"}))


def summary_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Checks by source and layer: how many passed, warned, failed."""
    status = frame.assign(status=status_of(frame))
    table = status.pivot_table(index=["source", "layer"], columns="status", values="check_name", aggfunc="count",
                               fill_value=0)
    for column in ("passed", "warning", "failed"):
        if column not in table:
            table[column] = 0
    return table[["passed", "warning", "failed"]].rename_axis(columns=None).reset_index()


def trend_frame(history: pd.DataFrame, runs: int = 30) -> pd.DataFrame:
    """Per run (latest ``runs``): checks passed, warned and failed."""
    if history.empty:
        return pd.DataFrame(columns=["run_id", "checked_at", "passed", "warning", "failed"])
    per_run = history.assign(status=status_of(history)).pivot_table(
        index=["run_id", "checked_at"], columns="status", values="check_name", aggfunc="count", fill_value=0)
    for column in ("passed", "warning", "failed"):
        if column not in per_run:
            per_run[column] = 0
    per_run = per_run[["passed", "warning", "failed"]].rename_axis(columns=None).reset_index()
    return per_run.sort_values("checked_at").tail(runs)


def trend_png(trend: pd.DataFrame) -> bytes:
    fig, ax = plt.subplots(figsize=(8, 2.8), dpi=100)
    x = range(len(trend))
    ax.bar(x, trend["passed"], color="#2e7d32", label="passed")
    ax.bar(x, trend["warning"], bottom=trend["passed"], color="#f9a825", label="warning")
    ax.bar(x, trend["failed"], bottom=trend["passed"] + trend["warning"], color="#c62828", label="failed")
    ax.set_xticks(list(x), [pd.Timestamp(t).strftime("%m-%d %H:%M") for t in trend["checked_at"]], rotation=45,
                  ha="right", fontsize=7)
    ax.set_xlim(-0.5, max(len(trend), 10) - 0.5)  # a first run is one bar, not the whole width
    ax.set(ylabel="checks", title="Checks per run")
    ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _table_html(frame: pd.DataFrame, css_class: str = "") -> str:
    return frame.to_html(index=False, classes=css_class, border=0, escape=True, na_rep="")


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }
h1 { margin-bottom: 0.2em; } .meta { color: #666; }
.verdict { font-size: 1.4em; padding: 0.5em 0.8em; border-radius: 6px; display: inline-block; margin: 0.6em 0; }
.ok { background: #e8f5e9; color: #1b5e20; } .bad { background: #ffebee; color: #b71c1c; }
.warnbox { background: #fff8e1; color: #8d6e00; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: left; }
th { background: #f5f5f5; }
"""


def render_html(current: pd.DataFrame, history: pd.DataFrame, run_id: str, checked_at: pd.Timestamp,
                data_docs: Path | None, report_path: Path) -> str:
    counts = status_of(current).value_counts()
    passed, warned, failed = (int(counts.get(k, 0)) for k in ("passed", "warning", "failed"))
    verdict_class = "bad" if failed else ("warnbox" if warned or current.empty else "ok")
    verdict = (f"{failed} failed" if failed else "passed with warnings" if warned
               # Checks run in the run of the assets they check; a report materialized alone has none of its own.
               else "no checks in this run: run the report with the assets it checks" if current.empty
               else "all checks passed")
    problems = current[~current["passed"]].assign(status=status_of(current[~current["passed"]]))
    problems = problems[["status", "source", "asset", "check_name", "observed"]]
    trend = trend_frame(history)
    trend_img = base64.b64encode(trend_png(trend)).decode() if len(trend) else ""
    docs_link = ""
    if data_docs is not None and data_docs.exists():
        relative = (data_docs.relative_to(report_path.parent) if data_docs.is_relative_to(report_path.parent)
                    else data_docs)
        docs_link = (f'<p>Great Expectations Data Docs (every suite, every expectation, every run): '
                     f'<a href="{html.escape(str(relative))}">{html.escape(str(relative))}</a></p>')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Data quality - dagster-twins</title>
<style>{STYLE}</style></head>
<body>
<h1>Data quality</h1>
<p class="meta">Run <code>{html.escape(run_id)}</code> at {checked_at:%Y-%m-%d %H:%M:%S} UTC.
dbt tests, Great Expectations suites and Dagster asset checks, all from the same run.</p>
<section id="summary">
<div class="verdict {verdict_class}" id="verdict">{verdict}</div>
<p id="counts"><strong>{passed}</strong> passed, <strong>{warned}</strong> warnings, <strong>{failed}</strong> failed,
of {len(current)} checks.</p>
{_table_html(summary_table(current), "summary")}
</section>
<section id="problems">
<h2>Failures and warnings</h2>
{_table_html(problems) if len(problems) else "<p>None.</p>"}
</section>
<section id="trend">
<h2>Trend over runs</h2>
{f'<img alt="checks per run" src="data:image/png;base64,{trend_img}">' if trend_img else "<p>First run.</p>"}
{_table_html(trend.tail(10).iloc[::-1]) if len(trend) else ""}
</section>
<section id="links">
<h2>More</h2>
{docs_link}
<p>Every check of every run is in the table <code>quality.dq_results</code> (chart it in your BI tool).</p>
</section>
<section id="all">
<h2>All checks of this run</h2>
{_table_html(current.assign(status=status_of(current))[["status", "source", "layer", "asset", "check_name",
                                                          "observed"]])}
</section>
</body></html>
"""
