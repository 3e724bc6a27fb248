"""The daily run as users meet it: after a full build, one more landing day through every stage, end to end.

    dagster-twins bench --daily --users 100000 --days 90 180 --repeat 3 --floor --output docs/benchmarks-daily.json

For each history length: demo data ending on a fixed day (``BENCH_END_DATE``), optionally the by-hand DuckDB
floor over the same landing files (``dagster_twins.tools.floor``, its own process), then one full build
(``dagster-twins run --end <day before the last repeat's days>``: every layer, ingestion to serving), then
``repeat`` daily runs, one per landing day in date order (``dagster-twins run --start D --end D``, every layer),
each in its own process as a user's scheduler would start it. A daily run is split by stage from the run's own
event log (each step's start to its end, summed by the layer its assets belong to; the executor runs steps one
after another); what the process took beyond its steps is ``start-up`` (imports, loading the code location,
Dagster's run bookkeeping). The full build's stages are split the same way, so its total can be set beside the
floor's. The medians are over the daily runs; the full build and the floor run once per history length.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from dagster_twins.layers import LAYERS, layer_of
from dagster_twins.pipeline import INSTANCE_YAML
from dagster_twins.tools.bench import BENCH_END_DATE, bench_env, run_stage, stage_commands, write_results

STARTUP = "start-up"  # the process beyond its steps: imports, the code location, Dagster's bookkeeping
GX = "gx checks"  # the Great Expectations suites' own steps (``<asset>_gx_<table>``), whichever layer they check
STAGE_NAMES = (*LAYERS, GX, "other", STARTUP)


def step_seconds_by_layer(dagster_home: Path, run_id: str | None = None) -> dict[str, float]:
    """The seconds of a finished run's steps (start to success or failure), summed by layer; ``run_id`` defaults to
    the instance's latest run. A step's layer is that of the first asset it materializes or checks, else the
    step's name if it is a layer's, else ``other``; the Great Expectations suites' steps are counted apart (``GX``)."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home)))
    try:
        run_id = run_id or instance.get_runs(limit=1)[0].run_id
        started: dict[str, float] = {}
        ended: dict[str, float] = {}
        layer: dict[str, str] = {}
        for entry in instance.all_logs(run_id):
            event, step = entry.dagster_event, entry.step_key
            if event is None or step is None:
                continue
            if event.event_type == dg.DagsterEventType.STEP_START:
                started.setdefault(step, entry.timestamp)
            elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                ended[step] = entry.timestamp
            elif step not in layer and event.asset_key is not None:
                layer[step] = layer_of(event.asset_key.path)
    finally:
        instance.dispose()
    out: dict[str, float] = {}
    for step, start in started.items():
        name = GX if "_gx_" in step else layer.get(step) or next((x for x in LAYERS if step.startswith(x)), "other")
        out[name] = out.get(name, 0.0) + ended.get(step, start) - start
    return out


def split_run(seconds: float, steps: dict[str, float]) -> dict[str, float]:
    """A process's wall time as its layers' step seconds (in pipeline order) plus start-up: the rest."""
    ordered = {name: round(steps[name], 2) for name in STAGE_NAMES if name in steps}
    return {**ordered, STARTUP: round(max(seconds - sum(steps.values()), 0.0), 2)}


def bench_history(users: int, days: int, repeat: int, root: Path, floor: bool, keep: bool,
                  chunk_users: int | None = None) -> dict:
    """One history length: generate, (floor,) full build up to the first daily day, then ``repeat`` daily runs."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench_daily_{users}_{days}_", dir=root))
    # As a deployment that runs daily sets it: the partitions start on the first landing day, not on the run's day.
    env = {**bench_env(workdir), "TWINS_PARTITION_START": (BENCH_END_DATE - timedelta(days=days - 1)).isoformat()}
    # The project's instance settings (the code server's start-up allowance; Dagster's 180 s ran out under load).
    (workdir / "dagster_home" / "dagster.yaml").write_text(INSTANCE_YAML)
    cli = [sys.executable, "-m", "dagster_twins.cli"]
    daily_days = [BENCH_END_DATE - timedelta(days=repeat - 1 - i) for i in range(repeat)]
    built_to = daily_days[0] - timedelta(days=1)
    out: dict = {"users": users, "days": days, "repeats": repeat, "built_to": built_to.isoformat(),
                 "daily_days": [d.isoformat() for d in daily_days]}
    if keep:
        print(f"  work folder (kept): {workdir}", flush=True)
    try:
        seconds, peak = run_stage(stage_commands(workdir, users, days, chunk_users)["generate"], env)
        out["generate"] = {"seconds": round(seconds, 2), "peak_rss_mb": round(peak)}
        print(f"  {users:>9,} users x {days} days  generate     {seconds:8.1f} s  {peak:8.0f} MB", flush=True)
        if floor:
            report = workdir / "floor.json"
            seconds, peak = run_stage([sys.executable, "-m", "dagster_twins.tools.floor", str(workdir / "landing"),
                                       "--end", built_to.isoformat(), "--output", str(report)], env)
            out["floor"] = {"seconds": round(seconds, 2), "peak_rss_mb": round(peak),
                            "report": json.loads(report.read_text())}  # its own "seconds" are by phase
            print(f"  {users:>9,} users x {days} days  floor        {seconds:8.1f} s  {peak:8.0f} MB", flush=True)
        seconds, peak = run_stage(cli + ["run", "--end", built_to.isoformat()], env)
        out["full_build"] = {"seconds": round(seconds, 2), "peak_rss_mb": round(peak),
                             "stages": split_run(seconds, step_seconds_by_layer(workdir / "dagster_home"))}
        print(f"  {users:>9,} users x {days} days  full build   {seconds:8.1f} s  {peak:8.0f} MB  "
              f"{out['full_build']['stages']}", flush=True)
        runs = []
        for day in daily_days:
            seconds, peak = run_stage(cli + ["run", "--start", day.isoformat(), "--end", day.isoformat()], env)
            stages = split_run(seconds, step_seconds_by_layer(workdir / "dagster_home"))
            runs.append({"day": day.isoformat(), "seconds": round(seconds, 2), "peak_rss_mb": round(peak),
                         "stages": stages})
            print(f"  {users:>9,} users x {days} days  daily {day}  {seconds:8.1f} s  {peak:8.0f} MB  {stages}",
                  flush=True)
        out["daily_runs"] = runs
        out["daily"] = summarize_daily(runs)
        return out
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def summarize_daily(runs: list[dict]) -> dict:
    """Medians over the daily runs: the whole process, peak memory, and each stage."""
    names = [n for n in STAGE_NAMES if any(n in r["stages"] for r in runs)]
    return {
        "median_seconds": round(statistics.median(r["seconds"] for r in runs), 2),
        "median_peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in runs)),
        "stages": {n: round(statistics.median(r["stages"].get(n, 0.0) for r in runs), 2) for n in names},
    }


def markdown_table(results: list[dict]) -> str:
    """One row per history length: the daily run's median and its stages; then the full build beside the floor."""
    names = [n for n in STAGE_NAMES if any(n in r["daily"]["stages"] for r in results)]
    lines = ["| users | days of history | daily runs | daily run s (median) | peak MB | "
             + " | ".join(f"{n} s" for n in names) + " |",
             "|---:|---:|---:|---:|---:|" + "---:|" * len(names)]
    for r in results:
        d = r["daily"]
        lines.append(f"| {r['users']:,} | {r['days']} | {len(r['daily_runs'])} | {d['median_seconds']:.1f} | "
                     f"{d['median_peak_rss_mb']:,} | " + " | ".join(f"{d['stages'].get(n, 0.0):.1f}" for n in names)
                     + " |")
    lines += ["", "| users | days built | full build s | peak MB | floor s | full build / floor |",
              "|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        full, fl = r["full_build"], r.get("floor")
        ratio = f"{full['seconds'] / fl['seconds']:.2f}" if fl else ""
        floor_s = f"{fl['seconds']:.1f}" if fl else "not run"
        lines.append(f"| {r['users']:,} | {r['days'] - len(r['daily_runs'])} | {full['seconds']:.1f} | "
                     f"{full['peak_rss_mb']:,} | {floor_s} | {ratio} |")
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    root = args.workdir or Path(tempfile.gettempdir())
    root.mkdir(parents=True, exist_ok=True)
    history = getattr(args, "history_days", None) or [args.days]
    results = [bench_history(users, days, args.repeat, root, args.floor, args.keep, args.chunk_users)
               for users in args.users for days in history]
    if args.output:
        write_results(args.output, results)
    print(markdown_table(results))
    return 0
