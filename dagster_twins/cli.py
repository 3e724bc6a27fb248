"""Command line: `dagster-twins generate | run | demo | bench | serve`.

    dagster-twins generate --users 2000 --days 180     # demo landing files into data/landing
    dagster-twins run                                   # the whole pipeline over every landing day found
    dagster-twins demo                                  # both, then where to look
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import yaml

from dagster_twins.layers import LAYERS
from dagster_twins.settings import DEFAULT_DATA_DIR, FILE_KEYS, Settings, SettingsError, apply_offline_env


def _yesterday() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)


def _add_generate_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=2000, help="number of users (default 2000)")
    parser.add_argument("--days", type=int, default=180, help="days of history (default 180)")
    parser.add_argument("--end-date", type=date.fromisoformat, default=None, help="last day (default yesterday, UTC)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--dirty-rate", type=float, default=0.002, help="share of malformed rows to inject")
    parser.add_argument("--late-rate", type=float, default=0.02, help="share of rows that land 1-3 days late")
    parser.add_argument("--out", type=Path, default=DEFAULT_DATA_DIR, help="output folder (landing/ and truth/)")
    _add_chunk_args(parser)


DEFAULT_CHUNK_USERS = 100_000  # dagster_twins.demo.DEFAULT_CHUNK_USERS (not imported: it loads pandas)


def _add_chunk_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--chunk-users", type=int, default=DEFAULT_CHUNK_USERS,
                        help=f"users generated at a time; memory is bounded by one chunk "
                             f"(default {DEFAULT_CHUNK_USERS:,})")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes generating chunks at once (default 1; memory grows with each)")


def cmd_generate(args: argparse.Namespace) -> int:
    from dagster_twins.demo import generate_demo

    summary = generate_demo(
        args.out,
        n_users=args.users,
        n_days=args.days,
        end_date=args.end_date or _yesterday(),
        seed=args.seed,
        dirty_rate=args.dirty_rate,
        late_rate=args.late_rate,
        chunk_users=args.chunk_users,
        workers=args.workers,
    )
    chunks = f" in {summary.chunks} chunks" if summary.chunks > 1 else ""
    print(f"Demo data for {args.users:,} users{chunks}, {summary.start_date} .. {summary.end_date} "
          f"({summary.elapsed_seconds:,.0f} s):")
    for source, rows in summary.rows_written.items():
        print(f"  {source:<16} {rows:>12,} rows")
    print(f"Landing files: {summary.landing_dir}\nPlanted truth (tests and reports only): {summary.truth_dir}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from dagster_twins.launch import LocationLoadError, failure_cause, launch_pipeline, warehouse_lock
    from dagster_twins.pipeline import asset_seconds, ensure_dagster_home, landing_span, run_tags
    from dagster_twins.warehouse.summary import print_warehouse_summary
    from dagster_twins.warehouse.tables import WarehouseLocked

    settings = load_settings(args)
    span = landing_span(settings)
    if span is None and not (args.start and args.end):
        print(f"No landing files under {settings.landing_dir}. Generate demo data with "
              "`dagster-twins generate` or put your files there (see README).", file=sys.stderr)
        return 2
    start = args.start or span[0]
    end = args.end or span[1]
    if settings.partition_start is None:
        settings = replace(settings, partition_start=start, origin={**settings.origin,
                                                                   "partition_start": "the landing files"})
    elif start < settings.partition_start:
        print(f"Landing days start on {start}, before partition_start {settings.partition_start} "
              f"({settings.origin.get('partition_start', 'default')}): set it earlier, or leave it out to start at "
              "the earliest landing day.", file=sys.stderr)
        return 2
    ensure_dagster_home()
    locked = warehouse_lock(settings)
    if locked:
        print(locked, file=sys.stderr)
        return 3
    print(f"Running the pipeline for landing days {start} .. {end} into {settings.warehouse_path}")
    print(f"Settings: {settings.settings_file or 'defaults (no settings file)'}"
          + "".join(f"; {k} = {v}" for k, v in settings.described().items()
                    if not v.endswith("(default)") and k not in ("warehouse", "partition_start")))
    run_config = yaml.safe_load(args.run_config.read_text()) if args.run_config else {}
    run_config.setdefault("loggers", {"console": {"config": {"log_level": "DEBUG" if args.verbose else "INFO"}}})
    try:
        result = launch_pipeline(settings, DagsterInstance.get(), layers=args.only, run_config=run_config,
                                 tags=run_tags(settings, start, end, dbt_output_to_file=not args.verbose),
                                 on_launch=lambda run_id: print(f"Run {run_id} launched (the UI shows it under Runs)"))
    except LocationLoadError as exc:
        print(exc, file=sys.stderr)
        return 2
    if not result.success:
        causes = []
        for event in result.all_events:
            if event.is_failure and event.step_key:
                causes.append(failure_cause(event))
                print(f"FAILED step {event.step_key}: {event.message} {causes[-1]}".rstrip(), file=sys.stderr)
        print_check_tally(result.get_asset_check_evaluations(), file=sys.stderr)
        print("Nothing downstream of a failed step ran: the serving copy still holds the last good run.",
              file=sys.stderr)
        marker = f"{WarehouseLocked.__name__}: "
        locked = next((c for c in causes if marker in c), None)
        if locked:  # taken by a reader after the run began: the cause, in one line, last
            print(locked.split(marker, 1)[1], file=sys.stderr)
        return 1
    if args.timings:
        args.timings.write_text(json.dumps(asset_seconds(result)))
    print_warehouse_summary(settings.warehouse_path)
    print_scenarios(settings.warehouse_path)
    print_check_tally(result.get_asset_check_evaluations())
    print("\nOpen the UI with `make dev` (or `dagster dev` in the activated environment) at http://127.0.0.1:3000")
    return 0


def load_settings(args: argparse.Namespace) -> Settings:
    """The settings file (--settings, else TWINS_SETTINGS, else twins.yml), the environment, then --set flags."""
    overrides = {}
    for item in getattr(args, "set", None) or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SettingsError(f"--set {item!r}: write KEY=VALUE, e.g. --set half_life_days=120")
        overrides[SET_KEYS.get(key.strip(), key.strip())] = value.split(",") if "," in value else value.strip()
    unknown = sorted(set(overrides) - set(SET_KEYS.values()))
    if unknown:
        raise SettingsError(f"--set: unknown settings {unknown}; they are {sorted(SET_KEYS)}")
    return Settings.load(getattr(args, "settings", None), overrides=overrides)


def cmd_settings(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    print(f"Settings file: {settings.settings_file or 'none (defaults and environment)'}")
    for key, value in settings.described().items():
        print(f"  {key:<22} {value}")
    return 0


def print_scenarios(warehouse: Path) -> None:
    """Each scenario's outcome in a line: users affected and retention gained, or why it did not apply."""
    from dagster_twins.warehouse.tables import connect, table_exists

    con = connect(warehouse, read_only=True)
    try:
        if not table_exists(con, "simulation", "scenario_results"):
            return
        rows = con.execute("select scenario, status, status_reason, users_affected, expected_users_kept, "
                           "expected_users_kept_lower_90, expected_users_kept_upper_90 "
                           "from simulation.scenario_results order by scenario").fetchall()
    finally:
        con.close()
    print("\nScenarios:")
    for name, status, reason, users, kept, low, high in rows:
        if status != "simulated":
            print(f"  {name}: not simulated: {reason}")
        elif not users:
            print(f"  {name}: no user is in its segment in this data ({reason or 'the segment is empty'})")
        else:
            print(f"  {name}: {users:,.0f} users; {kept:,.1f} kept (90% interval {low:,.1f} to {high:,.1f})")


def print_check_tally(checks, file=None) -> None:
    """Passed, failed (errors) and warnings (failed checks of severity WARN), each failure by name."""
    from dagster import AssetCheckSeverity

    def name(c) -> str:
        return f"{c.asset_key.to_user_string()}: {c.check_name}"

    failed = [name(c) for c in checks if not c.passed and c.severity != AssetCheckSeverity.WARN]
    warned = [name(c) for c in checks if not c.passed and c.severity == AssetCheckSeverity.WARN]
    print(f"\nAsset checks: {len(checks) - len(failed) - len(warned)} passed, {len(failed)} failed, "
          f"{len(warned)} warnings" + "".join(f"\n  FAILED {n}" for n in failed)
          + "".join(f"\n  WARNING {n}" for n in warned), file=file)


def cmd_demo(args: argparse.Namespace) -> int:
    args.out = args.out or DEFAULT_DATA_DIR
    code = cmd_generate(args)
    # The run reads the files just generated, wherever --out put them.
    args.set = [*(args.set or []), f"landing_dir={args.out.resolve() / 'landing'}"]
    return code or cmd_run(args)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.uplift:
        from dagster_twins.tools.bench_uplift import main as uplift_main

        return uplift_main(args)
    if args.api:
        from dagster_twins.tools.bench_api import main as api_main

        return api_main(args)
    if args.churn:
        from dagster_twins.tools.bench_churn import main as churn_main

        return churn_main(args)
    if args.purchases:
        from dagster_twins.tools.bench_purchases import main as purchases_main

        return purchases_main(args)
    if args.daily:
        from dagster_twins.tools.bench_daily import main as daily_main

        return daily_main(args)
    from dagster_twins.tools.bench import main as bench_main

    return bench_main(args)


def cmd_purchases_quality(args: argparse.Namespace) -> int:
    from dagster_twins.tools.purchases_quality import main as purchases_main

    return purchases_main(args)


def cmd_serve(args: argparse.Namespace) -> int:
    from dagster_twins.twins.api import serve

    serve(load_settings(args))
    return 0


def cmd_model_quality(args: argparse.Namespace) -> int:
    from dagster_twins.tools.model_quality import main as quality_main

    return quality_main(args)


def cmd_uplift_quality(args: argparse.Namespace) -> int:
    from dagster_twins.tools.uplift_quality import main as uplift_main

    return uplift_main(args)


# --set keys: the settings file's keys (twins.example.yml), by the Settings field each sets (on the command line,
# sources is a path).
SET_KEYS = {**FILE_KEYS, "sources": "sources_config"}


def _add_settings_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--settings", type=Path, default=None,
                        help="the settings file (default: TWINS_SETTINGS, else twins.yml in the project)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override one setting of the file, e.g. --set half_life_days=120 --set horizons=30,90")
    parser.add_argument("--verbose", action="store_true", help="Dagster's debug log (every event) on the console")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dagster-twins", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write demo landing files and the planted truth")
    _add_generate_args(gen)
    gen.set_defaults(func=cmd_generate)
    run = sub.add_parser("run", help="run ingestion and dbt over the landing files")
    run.add_argument("--start", type=date.fromisoformat, default=None, help="first landing day (default: earliest)")
    run.add_argument("--end", type=date.fromisoformat, default=None, help="last landing day (default: latest)")
    run.add_argument("--only", choices=LAYERS, default=None, nargs="+",
                     help="run these layers only (the benchmark times them apart)")
    run.add_argument("--timings", type=Path, default=None,
                     help="write each asset's own seconds (from its metadata) to this JSON file")
    run.add_argument("--run-config", type=Path, default=None,
                     help="a YAML file of Dagster run config, e.g. ops: {churn_model: {config: {horizons: [30]}}}")
    _add_settings_args(run)
    run.set_defaults(func=cmd_run)
    shown = sub.add_parser("settings", help="print every setting and where its value came from")
    _add_settings_args(shown)
    shown.set_defaults(func=cmd_settings)
    demo = sub.add_parser("demo", help="generate demo data, then run the pipeline on it")
    _add_generate_args(demo)
    _add_settings_args(demo)
    demo.set_defaults(func=cmd_demo, start=None, end=None, only=None, timings=None, run_config=None)
    bench = sub.add_parser("bench", help="time and measure memory of each stage at a given scale")
    bench.add_argument("--users", type=int, nargs="+", default=[10_000])
    bench.add_argument("--days", type=int, default=180)
    bench.add_argument("--chunk-users", type=int, default=None,
                       help=f"users the generate stage generates at a time (default {DEFAULT_CHUNK_USERS:,})")
    bench.add_argument("--repeat", type=int, default=3)
    bench.add_argument("--workdir", type=Path, default=None)
    bench.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    bench.add_argument("--uplift", action="store_true",
                       help="time the per-user campaign effects (cross-fitted fit, scoring, Qini curves) instead")
    bench.add_argument("--no-million", action="store_true", help="with --uplift: skip scoring a million users")
    bench.add_argument("--simulation", action="store_true",
                       help="time one scenario over every active user instead (a warehouse is built first)")
    bench.add_argument("--draws", type=int, default=1000, help="draws of the simulation benchmark's scenario")
    bench.add_argument("--churn", action="store_true",
                       help="time the churn layer's phases (landmark frame, fit, scoring) on a built warehouse")
    bench.add_argument("--purchases", action="store_true",
                       help="time the purchase model's fit and scoring on synthetic statistics of --users users "
                            "(--output: the Markdown page whose purchases section it rewrites: docs/benchmarks.md)")
    bench.add_argument("--fit-max-users", type=int, default=200_000, help="with --purchases: the fit's sample")
    bench.add_argument("--api", action="store_true",
                       help="load-test the twin API on a read store of --users documents cloned from a built serving "
                            "copy, --repeat runs of each phase (docs/twin-api.md)")
    bench.add_argument("--source", type=Path, default=None,
                       help="with --api: the serving copy whose documents are cloned (default: the settings')")
    bench.add_argument("--rate", type=float, default=500, help="with --api: requests a second (default 500)")
    bench.add_argument("--seconds", type=float, default=30, help="with --api: seconds of each phase (default 30)")
    bench.add_argument("--observe-rate", type=float, default=50,
                       help="with --api: observe() requests a second in the mixed phase (default 50)")
    bench.add_argument("--concurrency", type=int, default=64, help="with --api: requests in flight at most")
    bench.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb",
                       help="where dbt builds the marts (spark: local PySpark, needs the spark extra)")
    bench.add_argument("--daily", action="store_true",
                       help="the daily run: a full build, then --repeat more landing days, each end to end (ingest to "
                            "serving), split by stage")
    bench.add_argument("--history-days", type=int, nargs="+", default=None,
                       help="with --daily: days of history to measure at (default: --days)")
    bench.add_argument("--floor", action="store_true",
                       help="with --daily: also time the by-hand DuckDB floor (tools/floor.py) on the same files")
    bench.add_argument("--keep", action="store_true", help="keep the work folder (to resume a long run)")
    bench.add_argument("--resume", type=Path, default=None,
                       help="continue in this kept work folder instead of a fresh one (with --from-stage)")
    bench.add_argument("--from-stage", default=None,
                       help="with --resume: the first stage to run (resuming at dbt drops what dbt and later built)")
    bench.add_argument("--to-stage", default=None, help="the last stage to run (default: all; a stage name as for "
                       "--from-stage: generate, ingest, dbt, twins_rebuild, ...)")
    bench.set_defaults(func=cmd_bench)
    served = sub.add_parser("serve", help="the twin read API (GET /users/{id}/twin, POST /users/{id}/events, ...) "
                                          "over the serving copy, on 127.0.0.1:8765 unless configured")
    _add_settings_args(served)
    served.set_defaults(func=cmd_serve)
    quality = sub.add_parser("model-quality", help="score the models against the demo's planted truth")
    quality.add_argument("--users", type=int, default=10_000)
    quality.add_argument("--days", type=int, default=180)
    quality.add_argument("--seed", type=int, default=42)
    quality.add_argument("--workdir", type=Path, default=None)
    quality.add_argument("--output", type=Path, default=Path("docs/model-quality.md"))
    quality.set_defaults(func=cmd_model_quality)
    purchases = sub.add_parser("purchases-quality", help="the purchase beliefs on CDNOW beside BG/NBD and Pareto/NBD, "
                               "and on a demo against its planted purchases (a section of docs/model-quality.md)")
    purchases.add_argument("--users", type=int, default=2000)
    purchases.add_argument("--days", type=int, default=180)
    purchases.add_argument("--seed", type=int, default=42)
    purchases.add_argument("--workdir", type=Path, default=None)
    purchases.add_argument("--output", type=Path, default=Path("docs/model-quality.md"))
    purchases.set_defaults(func=cmd_purchases_quality)
    uplift = sub.add_parser("uplift-quality", help="score the per-user campaign effects against the demo's planted "
                            "truth (a section of docs/model-quality.md)")
    uplift.add_argument("--users", type=int, default=20_000)
    uplift.add_argument("--days", type=int, default=180)
    uplift.add_argument("--seed", type=int, default=42)
    uplift.add_argument("--workdir", type=Path, default=None)
    uplift.add_argument("--warehouse", type=Path, default=None, help="an existing demo run's warehouse (with --truth)")
    uplift.add_argument("--truth", type=Path, default=None, help="that demo's truth folder")
    uplift.add_argument("--output", type=Path, default=Path("docs/model-quality.md"))
    uplift.add_argument("--null-experiments", type=int, default=30,
                        help="synthetic experiments with no effect that check the Qini interval's coverage (0: none)")
    uplift.set_defaults(func=cmd_uplift_quality)
    return parser


def main(argv: list[str] | None = None) -> int:
    apply_offline_env()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Dagster's own loggers already write to the console through the run's logger; not twice.
    logging.getLogger("dagster").propagate = False
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"Settings: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
