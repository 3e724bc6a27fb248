"""Where Spark spends its time on small data: a profile of a Spark folder dbt has built, and of dbt's own run.

    python -m dagster_twins.tools.spark_profile --spark-dir data/spark [--run-results dbt/target/.../run_results.json]

Measured, each on its own, in one local session configured as dbt's (``warehouse.spark.spark_session``):

- **session**: starting the JVM and the SparkSession (``getOrCreate``);
- **metastore**: the first catalog call (``show databases``), which boots the embedded Derby metastore and Hive's
  client;
- per mart query: **planning** (parse, analysis, optimization, physical plan: ``queryExecution().executedPlan()``,
  which lists the table's files) against **execution** (``count(*)`` of the planned query, run on the executors);
- per table: its Parquet **files**, partitions and mean file size (small files cost a task and a footer read each).

From ``run_results.json`` (dbt's record of a build): the time per node kind (model, test, seed) and what the
build spent outside any node (connection, on-run-start: the raw lake's tables declared over their files).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

# The tables read by the Python layers and BI (the marts), and the raw events every staging model starts from.
PROFILED_TABLES = ("raw.events", "marts.fct_events", "marts.fct_user_daily_features", "marts.dim_users",
                   "marts.fct_user_churn_survival", "marts.fct_user_daily_dimension_counts")


def table_files(spark_dir: Path) -> dict[str, dict[str, float]]:
    """Parquet files per table folder under the Spark folder (warehouse/<db>.db/<table>, lake/raw/<table>): count,
    partitions (``col=value`` folders), mean size in KB."""
    out = {}
    folders = [*sorted((spark_dir / "warehouse").glob("*.db/*")), *sorted((spark_dir / "lake" / "raw").glob("*"))]
    for folder in folders:
        if not folder.is_dir():
            continue
        files = [p for p in folder.rglob("*.parquet")] + [p for p in folder.rglob("part-*") if p.suffix != ".crc"
                                                            and not p.name.endswith(".parquet")]
        if not files:
            continue
        name = (f"{folder.parent.name.removesuffix('.db')}.{folder.name}" if folder.parent.name.endswith(".db")
                else f"raw.{folder.name}")
        partitions = {p.parent for p in files if "=" in p.parent.name}
        out[name] = {"files": len(files), "partitions": len(partitions),
                     "mean_kb": round(sum(p.stat().st_size for p in files) / len(files) / 1024, 1)}
    return out


def dbt_run_profile(run_results: dict[str, Any], threads: int | None = None) -> dict[str, Any]:
    """dbt's build time by node kind (count, total and median seconds) and the part outside every node.
    ``threads``: the profile's thread count (run_results.json records it only when given on the command line)."""
    kinds: dict[str, list[float]] = {}
    for node in run_results["results"]:
        kinds.setdefault(node["unique_id"].split(".")[0], []).append(float(node["execution_time"]))
    elapsed = float(run_results["elapsed_time"])
    threads = threads or int(run_results.get("args", {}).get("threads") or 1)
    in_nodes = sum(sum(v) for v in kinds.values())
    return {"elapsed_seconds": round(elapsed, 1), "threads": threads,
            "kinds": {k: {"nodes": len(v), "total_seconds": round(sum(v), 1),
                          "median_seconds": round(statistics.median(v), 2)} for k, v in sorted(kinds.items())},
            # With several threads the nodes overlap: the part outside them is elapsed - in_nodes / threads at most.
            "outside_nodes_seconds": round(max(elapsed - in_nodes / threads, 0.0), 1)}


def _timed(fn) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def session_profile(spark_dir: Path, overrides: dict[str, str] | None = None, repeat: int = 3) -> dict[str, Any]:
    """Session start, metastore boot, then per table the median planning and execution seconds of
    ``select count(*)`` over it (``repeat`` times each; the first of each is included in the median)."""
    from dagster_twins.warehouse.spark import spark_session, stop_spark_session

    stop_spark_session()
    spark, start = _timed(lambda: spark_session(spark_dir, overrides=overrides))
    _, metastore = _timed(lambda: spark.sql("show databases").collect())
    tables = {}
    try:
        for table in PROFILED_TABLES:
            if not spark.catalog.tableExists(table):
                continue
            plans, runs = [], []
            for _ in range(repeat):
                frame = spark.sql(f"select count(*) from {table}")
                _, planned = _timed(lambda f=frame: f._jdf.queryExecution().executedPlan())
                rows, ran = _timed(lambda f=frame: f.collect())
                plans.append(planned)
                runs.append(ran)
            tables[table] = {"rows": rows[0][0], "plan_seconds": round(statistics.median(plans), 3),
                             "execute_seconds": round(statistics.median(runs), 3)}
    finally:
        stop_spark_session()
    return {"session_seconds": round(start, 1), "metastore_seconds": round(metastore, 1), "tables": tables}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spark-dir", type=Path, required=True, help="a Spark folder dbt has built (spark_dir)")
    parser.add_argument("--run-results", type=Path, help="dbt's run_results.json of the build, to break down")
    parser.add_argument("--threads", type=int, help="dbt's threads in that build (the profile's; default 1)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, help="write the profile here as JSON")
    args = parser.parse_args(argv)
    profile: dict[str, Any] = {"files": table_files(args.spark_dir.resolve())}
    if args.run_results:
        profile["dbt"] = dbt_run_profile(json.loads(args.run_results.read_text()), args.threads)
    profile["session"] = session_profile(args.spark_dir.resolve(), repeat=args.repeat)
    text = json.dumps(profile, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
