"""The churn layer's phases timed apart at a given scale: landmark frame build, fit (backtests and final fit) and
scoring of every user, each repeat in its own process (medians of several, peak memory per process).

    dagster-twins bench --churn --users 100000 --days 180 --repeat 3

A warehouse is built once (generate, ingest, dbt); then ``python -m dagster_twins.tools.bench_churn <warehouse>`` runs
the three phases the churn asset runs, in the same order with the same functions, and prints their seconds.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from dagster_twins.tools.bench import bench_env, run_stage, stage_commands

PHASES = ("frame_seconds", "fit_seconds", "score_seconds")


def phases(warehouse: Path) -> dict:
    """One pass of the churn layer over ``warehouse`` (read-only), timed by phase."""
    from dagster_twins.churn.backtest import ForecastConfig, run_forecast
    from dagster_twins.churn.history import bucket_histories, last_landing_day
    from dagster_twins.churn.landmarks import day_number
    from dagster_twins.churn.pipeline import Forecast, as_of_moment, fit_sample, score_history
    from dagster_twins.warehouse.buckets import DuckDBReader, bucket_count
    from dagster_twins.warehouse.tables import connect

    config = ForecastConfig()
    con = connect(warehouse, read_only=True)
    try:
        reader = DuckDBReader(con)
        known_at = as_of_moment(last_landing_day(reader))
        started = time.perf_counter()
        sample = fit_sample(reader, known_at, config)
        frame_seconds = time.perf_counter() - started
        started = time.perf_counter()
        run = run_forecast(sample.features, sample.history, int(day_number([known_at])[0]), config)
        fit_seconds = time.perf_counter() - started
        started = time.perf_counter()
        forecast = Forecast(run.models, config, sample.data_start)
        scored = 0
        buckets = bucket_count(sample.population)
        for history in bucket_histories(reader, known_at, buckets):
            predictions, _ = score_history(forecast, history, known_at)
            scored += len(predictions)
        score_seconds = time.perf_counter() - started
    finally:
        con.close()
    features = sample.features
    population = sample.population
    grid = features["landmark_day"].unique()
    return {"frame_seconds": frame_seconds, "fit_seconds": fit_seconds, "score_seconds": score_seconds,
            "population": population, "sampled_users": int(features["user_id"].nunique()),
            "landmark_rows": len(features), "landmarks": len(grid), "scored_users": scored, "score_buckets": buckets,
            "horizons": list(config.horizons)}


def bench_churn(users: int, days: int, repeat: int, root: Path) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench_churn_{users}_", dir=root))
    env = bench_env(workdir)
    try:
        for stage, cmd in stage_commands(workdir, users, days).items():
            if stage in ("generate", "ingest", "dbt"):
                seconds, _ = run_stage(cmd, env)
                print(f"  build {stage:<15} {seconds:8.1f} s", flush=True)
        runs = []
        out = workdir / "phases.json"
        for _ in range(repeat):
            seconds, peak = run_stage([sys.executable, "-m", "dagster_twins.tools.bench_churn",
                                       str(workdir / "warehouse.duckdb"), str(out)], env)
            result = json.loads(out.read_text())
            runs.append({**result, "process_seconds": seconds, "peak_rss_mb": peak})
            print(f"  {users:>9,} users  frame {result['frame_seconds']:.1f} s  fit {result['fit_seconds']:.1f} s  "
                  f"score {result['score_seconds']:.1f} s  ({peak:,.0f} MB)", flush=True)
        summary = {f"median_{name}": round(statistics.median(r[name] for r in runs), 2)
                   for name in (*PHASES, "process_seconds", "peak_rss_mb")}
        keep = ("population", "sampled_users", "landmark_rows", "landmarks", "scored_users", "score_buckets",
                "horizons")
        return {"users": users, "days": days, "repeats": repeat, **{k: runs[-1][k] for k in keep}, **summary,
                "runs": [{k: round(v, 2) if isinstance(v, float) else v for k, v in r.items() if k not in keep}
                         for r in runs]}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(args) -> int:
    """``dagster-twins bench --churn``: build, time, print and (``--output``) write the result."""
    root = args.workdir or Path(tempfile.gettempdir())
    root.mkdir(parents=True, exist_ok=True)
    result = bench_churn(args.users[0], args.days, args.repeat, root)
    print(json.dumps(result, indent=2))
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    Path(sys.argv[2]).write_text(json.dumps(phases(Path(sys.argv[1]))))
