"""Benchmark: wall time and peak memory of each stage (generate, ingest, dbt) at a given scale.

Each stage runs in its own process, so its peak resident memory (including dbt's subprocess) is
measured by the kernel (``wait4``'s ``ru_maxrss``), not estimated. Results are medians over repeats.

    dagster-twins bench --users 10000 100000 --days 180 --repeat 3 --output docs/benchmarks.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

STAGES = ("generate", "ingest", "dbt", "twins_rebuild", "twins_increment", "churn_refit", "churn_score",
          "simulation", "quality", "serving")
# The asset whose own working time (without process start-up) each Dagster stage reports.
STAGE_ASSETS = {"twins_rebuild": "twins/user_beliefs", "twins_increment": "twins/user_beliefs",
                "churn_refit": "churn/churn_model_metrics", "churn_score": "churn/churn_model_metrics"}
BENCH_END_DATE = date(2026, 6, 30)  # fixed, so every run sees the same data
STAGE_RECORD = "stage_runs.json"  # in a kept work folder: every stage's last run, for a resumed run's results


@dataclass(frozen=True)
class StageRun:
    stage: str
    seconds: float
    peak_rss_mb: float
    asset_seconds: float | None = None  # the stage's main asset's own time, from its metadata


def run_stage(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run one stage as a child process; return (wall seconds, peak RSS in MB of it and its children)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"stage failed ({' '.join(cmd)}):\n{output.decode(errors='replace')[-4000:]}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def stage_commands(workdir: Path, users: int, days: int, chunk_users: int | None = None) -> dict[str, list[str]]:
    cli = [sys.executable, "-m", "dagster_twins.cli"]
    chunking = ["--chunk-users", str(chunk_users)] if chunk_users else []
    return {
        "generate": cli + ["generate", "--users", str(users), "--days", str(days), "--end-date",
                           BENCH_END_DATE.isoformat(), "--out", str(workdir), *chunking],
        "ingest": cli + ["run", "--only", "ingestion"],
        "dbt": cli + ["run", "--only", "transform"],
        # Twins over every landing day but the last (a full rebuild: no state yet), then the last day alone
        # (an incremental update from that state).
        "twins_rebuild": cli + ["run", "--only", "twins", "--end", (BENCH_END_DATE - timedelta(days=1)).isoformat()],
        "twins_increment": cli + ["run", "--only", "twins", "--start", BENCH_END_DATE.isoformat()],
        # No stored fit yet: backtest per horizon, fit as of the day, score. Then the same day again: the
        # stored fit is recent, so only scoring runs (the daily path between weekly refits).
        "churn_refit": cli + ["run", "--only", "churn"],
        "churn_score": cli + ["run", "--only", "churn"],
        # The rest of the graph: every scenario, the data-quality report, the serving copy for BI.
        "simulation": cli + ["run", "--only", "simulation"],
        "quality": cli + ["run", "--only", "quality"],
        "serving": cli + ["run", "--only", "serving"],
    }


# One scenario over every active user: the simulation benchmark's workload.
BENCH_SCENARIO = "bench_all_active_users"
BENCH_SCENARIO_SPEC = """description: Benchmark - the retention campaign's measured effect on every active user.
segment: {description: every active user}
intervention: {description: retention campaign, effect: {kind: estimated, campaign_id: retention_q}}
horizon_days: 30
draws: %d
seed: 1
"""


def bench_simulation(users: int, days: int, draws: int, repeat: int, root: Path,
                     chunk_users: int | None = None) -> dict:
    """Build a warehouse once (every stage of the pipeline), then run one scenario over every active user
    ``repeat`` times, each in its own process; medians of its process time and of the asset's own time."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench_sim_{users}_", dir=root))
    env = bench_env(workdir)
    scenarios = workdir / "scenarios"
    scenarios.mkdir()
    (scenarios / f"{BENCH_SCENARIO}.yaml").write_text(BENCH_SCENARIO_SPEC % draws)
    env["TWINS_SCENARIOS_DIR"] = str(scenarios)
    cli = [sys.executable, "-m", "dagster_twins.cli"]
    try:
        for stage, cmd in stage_commands(workdir, users, days, chunk_users).items():
            if stage not in ("twins_increment", "churn_score"):
                seconds, _ = run_stage(cmd, env)
                print(f"  build {stage:<15} {seconds:8.1f} s", flush=True)
        timings = workdir / "timings.json"
        runs = []
        for _ in range(repeat):
            seconds, peak = run_stage(cli + ["run", "--only", "simulation", "--timings", str(timings)], env)
            own = json.loads(timings.read_text())[f"simulation/scenario_{BENCH_SCENARIO}"]
            runs.append(StageRun("scenario", seconds, peak, own))
            print(f"  {users:>9,} users  scenario x {draws} draws {seconds:8.1f} s  {peak:8.0f} MB  "
                  f"({own:.1f} s in the asset)", flush=True)
        simulated = scenario_users(workdir / "warehouse.duckdb")
        engine = engine_seconds(workdir / "warehouse.duckdb", users, draws, repeat)
        print(f"  engine alone, {users:,} users (active users resampled) x {draws} draws: median "
              f"{statistics.median(engine):.1f} s", flush=True)
        return {
            "users": users, "days": days, "draws": draws, "repeats": repeat, "active_users_simulated": simulated,
            "engine_users": users, "engine_seconds_all": [round(x, 2) for x in engine],
            "median_engine_seconds": round(statistics.median(engine), 2),
            "asset_seconds_last_run": json.loads(timings.read_text()),
            "median_asset_seconds": round(statistics.median(r.asset_seconds for r in runs), 2),
            "median_process_seconds": round(statistics.median(r.seconds for r in runs), 2),
            "median_peak_rss_mb": round(statistics.median(r.peak_rss_mb for r in runs), 0),
            "asset_seconds_all": [round(r.asset_seconds, 2) for r in runs],
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def bench_env(workdir: Path, engine: str = "duckdb") -> dict[str, str]:
    (workdir / "dagster_home").mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "TWINS_WAREHOUSE": str(workdir / "warehouse.duckdb"),
        "TWINS_LANDING_DIR": str(workdir / "landing"),
        "DAGSTER_HOME": str(workdir / "dagster_home"),
        "TWINS_DBT_TARGET": engine,
        "TWINS_SPARK_DIR": str(workdir / "spark"),
    }


def reset_for_stage(warehouse: Path, stage: str) -> None:
    """Before resuming at ``ingest``, remove the warehouse; at ``dbt``, drop everything a killed run may have
    built after ingestion (every schema but ``raw``): each then starts from what an uninterrupted run would
    give it. Later stages replace their own outputs."""
    if stage == "ingest":
        for path in (warehouse, warehouse.with_name(warehouse.name + ".wal")):
            path.unlink(missing_ok=True)
        shutil.rmtree(warehouse.with_name(warehouse.name + ".tmp"), ignore_errors=True)
        print(f"  reset for {stage}: removed {warehouse}", flush=True)
        return
    if stage != "dbt" or not warehouse.exists():
        return
    from dagster_twins.contract import RAW_SCHEMA
    from dagster_twins.warehouse.tables import connect

    con = connect(warehouse)
    try:
        schemas = [s for (s,) in con.execute(
            "select schema_name from duckdb_schemas() where database_name = current_database() "
            "and not internal and schema_name not in (?, 'main')", [RAW_SCHEMA]).fetchall()]
        for schema in schemas:
            con.execute(f'drop schema "{schema}" cascade')
        print(f"  reset for {stage}: dropped schemas {', '.join(schemas) or '(none)'}", flush=True)
    finally:
        con.close()


def bench_once(users: int, days: int, root: Path, engine: str = "duckdb", chunk_users: int | None = None,
               resume: Path | None = None, from_stage: str | None = None, keep: bool = False,
               to_stage: str | None = None) -> list[StageRun]:
    """Every stage once over a fresh work folder; or, with ``resume``, the stages from ``from_stage`` on over
    the work folder a kept run left (``keep``: a long run can be continued after a stop); up to ``to_stage``.
    A kept folder records each stage as it ends, so a resumed run returns the earlier runs' stages with its own."""
    workdir = resume or Path(tempfile.mkdtemp(prefix=f"bench_{engine}_{users}_", dir=root))
    env = bench_env(workdir, engine)
    first = STAGES.index(from_stage) if from_stage else 0
    last = STAGES.index(to_stage) if to_stage else len(STAGES) - 1
    record = workdir / STAGE_RECORD
    recorded = {r["stage"]: StageRun(**r) for r in json.loads(record.read_text())} if resume and record.exists() else {}
    if keep or resume:
        print(f"  work folder (kept): {workdir}", flush=True)
    try:
        timings = workdir / "timings.json"
        for stage, cmd in list(stage_commands(workdir, users, days, chunk_users).items())[first:last + 1]:
            if stage == from_stage:
                reset_for_stage(workdir / "warehouse.duckdb", stage)
            if stage in STAGE_ASSETS:
                cmd = cmd + ["--timings", str(timings)]
            seconds, peak = run_stage(cmd, env)
            own = json.loads(timings.read_text()).get(STAGE_ASSETS[stage]) if stage in STAGE_ASSETS else None
            recorded[stage] = StageRun(stage, seconds, peak, own)
            if keep or resume:
                record.write_text(json.dumps([asdict(r) for r in recorded.values()], indent=1))
            inside = f"  ({own:.1f} s in the asset)" if own is not None else ""
            print(f"  {users:>9,} users  {stage:<15} {seconds:8.1f} s  {peak:8.0f} MB{inside}", flush=True)
        return [recorded[stage] for stage in STAGES if stage in recorded]
    finally:
        if not (keep or resume):
            shutil.rmtree(workdir, ignore_errors=True)


def summarize(users: int, days: int, repeats: list[list[StageRun]]) -> dict:
    stages = {}
    for stage in STAGES:
        runs = [r for rep in repeats for r in rep if r.stage == stage]
        if not runs:  # a stage no run of the work folder has reached
            continue
        stages[stage] = {
            "median_seconds": round(statistics.median(r.seconds for r in runs), 2),
            "median_peak_rss_mb": round(statistics.median(r.peak_rss_mb for r in runs), 0),
            "seconds_all": [round(r.seconds, 2) for r in runs],
        }
        if stage in STAGE_ASSETS:
            stages[stage]["median_asset_seconds"] = round(statistics.median(r.asset_seconds or 0.0 for r in runs), 2)
    ingest_dbt = [sum(r.seconds for r in rep if r.stage in ("ingest", "dbt")) for rep in repeats]
    totals = [sum(r.seconds for r in rep) for rep in repeats]
    return {
        "users": users,
        "days": days,
        "repeats": len(repeats),
        "stages": stages,
        "median_ingest_plus_dbt_seconds": round(statistics.median(ingest_dbt), 2),
        "median_total_seconds": round(statistics.median(totals), 2),
        "peak_rss_mb": max(r.peak_rss_mb for rep in repeats for r in rep),
        "peak_rss_ingest_dbt_mb": max((r.peak_rss_mb for rep in repeats for r in rep if r.stage in ("ingest", "dbt")),
                                      default=0),
    }


def markdown_table(results: list[dict]) -> str:
    """The medians as Markdown tables, as docs/benchmarks.md shows them: a summary line per scale, then one
    row per stage (process wall time, the main asset's own time where there is one, peak memory)."""
    lines = [
        "| users | days | repeats | ingest + dbt s | peak MB (ingest, dbt) | total s | peak MB (any stage) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def label(r: dict) -> str:
        return f"{r['users']:,}" + (f" ({r['engine']})" if r.get("engine", "duckdb") != "duckdb" else "")

    for r in results:
        lines.append(f"| {label(r)} | {r['days']} | {r['repeats']} | "
                     f"{r['median_ingest_plus_dbt_seconds']:.1f} | {r['peak_rss_ingest_dbt_mb']:,.0f} | "
                     f"{r['median_total_seconds']:.1f} | {r['peak_rss_mb']:,.0f} |")
    lines += ["", "| users | stage | process s (median) | in the asset s (median) | peak MB (median) | all runs s |",
              "|---:|---|---:|---:|---:|---|"]
    for r in results:
        for stage, st in r["stages"].items():
            own = f"{st['median_asset_seconds']:.1f}" if "median_asset_seconds" in st else ""
            runs = ", ".join(f"{x:.1f}" for x in st["seconds_all"])
            lines.append(f"| {label(r)} | {stage} | {st['median_seconds']:.1f} | {own} | "
                         f"{st['median_peak_rss_mb']:,.0f} | {runs} |")
    return "\n".join(lines) + "\n"


def scenario_users(warehouse: Path) -> int:
    from dagster_twins.warehouse.tables import connect

    con = connect(warehouse, read_only=True)
    try:
        return int(con.execute("select users_affected from simulation.scenario_results where scenario = ?",
                               [BENCH_SCENARIO]).fetchone()[0])
    finally:
        con.close()


def engine_seconds(warehouse: Path, users: int, draws: int, repeat: int) -> list[float]:
    """The simulation engine alone on exactly ``users`` users: the stored model, and the active users' covariates
    resampled (with replacement) to that many rows; effect and parameter draws as a scenario makes them."""
    import numpy as np

    from dagster_twins.churn.store import latest_forecast
    from dagster_twins.simulation.effects import HazardRatioDistribution
    from dagster_twins.simulation.engine import draw_parameters, simulate
    from dagster_twins.warehouse.tables import connect

    con = connect(warehouse, read_only=True)
    try:
        forecast, _, _ = latest_forecast(con)  # the benchmark's warehouse has churn predictions
        alive = con.execute("select * from churn.scored_user_covariates where state = 'active'").df()
    finally:
        con.close()
    model = forecast.churn_model
    rows = alive.sample(n=users, replace=True, random_state=0)
    x = forecast.churn_matrix(rows)
    tenure = np.zeros(len(rows))  # the churn model's clock starts on the as-of day
    effect = HazardRatioDistribution.from_interval(0.7, 0.6, 0.8, "benchmark")
    seconds = []
    for i in range(repeat):
        started = time.perf_counter()
        rng = np.random.default_rng(i)
        params = draw_parameters(model, rng, draws)
        simulate(model, params, x, tenure, 30, hazard_ratio=effect.draw(rng, draws),
                 placebo_ratio=effect.placebo().draw(rng, draws))
        seconds.append(time.perf_counter() - started)
    return seconds


def main(args: argparse.Namespace) -> int:
    for flag, stage in (("--from-stage", args.from_stage), ("--to-stage", args.to_stage)):
        if stage is not None and stage not in STAGES:
            raise SystemExit(f"{flag}: {stage!r} is not a stage; the stages are {', '.join(STAGES)}")
    root = args.workdir or Path(tempfile.gettempdir())
    root.mkdir(parents=True, exist_ok=True)
    if args.simulation:
        result = bench_simulation(args.users[0], args.days, args.draws, args.repeat, root,
                                  getattr(args, "chunk_users", None))
        print(json.dumps(result, indent=2))
        if args.output:
            args.output.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    results = []
    for users in args.users:
        repeats = [bench_once(users, args.days, root, args.engine, getattr(args, "chunk_users", None),
                              args.resume, args.from_stage, args.keep, args.to_stage)
                   for _ in range(args.repeat)]
        # A resumed run's stages before its first come from earlier runs of the same folder.
        resumed = {"resumed_from_stage": args.from_stage} if args.resume else {}
        if args.to_stage:
            resumed["stopped_after_stage"] = args.to_stage
        results.append({"engine": args.engine, **resumed, **summarize(users, args.days, repeats)})
        print(json.dumps(results[-1], indent=2))
    if args.output:
        write_results(args.output, results)
    print(markdown_table(results))
    return 0


def write_results(output: Path, results: list[dict]) -> None:
    """The results as JSON with the machine they ran on (and its load average as they ended: a shared machine)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
               "load_average_1_5_15_min": [round(x, 1) for x in os.getloadavg()]}
    output.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")



