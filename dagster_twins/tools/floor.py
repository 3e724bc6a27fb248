"""The floor: the pipeline's essential work done by hand in one DuckDB script, to set the full build beside.

    python -m dagster_twins.tools.floor data/landing --end 2026-06-27 --output floor.json

What the issue counts as essential, and nothing else (no Dagster, no dbt, no checks, no metadata, no serving copy):
a typed load of every landing file up to ``--end`` with its duplicates removed (the first landing of a key wins,
malformed values become nulls and rows without a user or time are dropped), the interaction stream (every source's
user actions in one table), the daily features and the daily per-topic dimension counts, the survival frame (one row
per user: tenure, churned after 30 quiet days), decayed conjugate posteriors for every user (Gamma activity rate,
Beta recommendation click-through, Dirichlet topic shares, each with its 90% interval, half-life 30 days), a
lifelines Cox fit and every user's 30-day churn probability. Each phase is timed; the JSON report has the seconds
and row counts. The work goes into a scratch DuckDB file, removed at the end unless ``--keep``.

It is a yardstick, not a model: it computes what the pipeline computes at the same scale, so the ratio of the two
times says how much the pipeline's bookkeeping (materializations, dbt, checks, metadata) costs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
from scipy import special

HALF_LIFE_DAYS = 30.0
CHURN_QUIET_DAYS = 30
FIT_ROWS = 100_000  # the Cox fit's sample (the pipeline's fit is bounded the same way)
# source -> (key for the dedupe, time column, typed columns beyond user_id and the time column)
SOURCES = {
    "users": ("user_id", "signed_up_at", "plan, country, acquisition_channel"),
    "events": ("event_id", "occurred_at", "event_type, topic, item_id, channel, content_format, "
                                          "try_cast(value as decimal(18, 2)) as value, text"),
    "conversations": ("message_id", "sent_at", "role, text"),
    "recommendations": ("rec_id", "shown_at", "item_id, topic, response, "
                                              "try_cast(responded_at as timestamptz) as responded_at"),
    "support_tickets": ("ticket_id", "opened_at", "category, try_cast(closed_at as timestamptz) as closed_at, "
                                                  "try_cast(satisfaction as double) as satisfaction"),
    "subscriptions": (None, "occurred_at", "action, plan, try_cast(mrr as decimal(18, 2)) as mrr"),
    "campaigns": ("send_id", "sent_at", "campaign_id, \"group\", topic"),
}


def _reader(files: list[Path]) -> str:
    """A scan of literal paths (one list, no globbing: the names are dates), with the file name; malformed lines are
    skipped (the pipeline quarantines them)."""
    paths = "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"
    suffix = files[0].suffix
    if suffix == ".parquet":
        return f"read_parquet({paths}, filename = true, union_by_name = true)"
    if suffix == ".jsonl":
        return (f"read_json({paths}, format = 'newline_delimited', filename = true, union_by_name = true, "
                "ignore_errors = true)")
    return (f"read_csv({paths}, all_varchar = true, header = true, filename = true, union_by_name = true, "
            "ignore_errors = true)")


def day_files(folder: Path, end: date) -> list[Path]:
    """A source's landing files up to ``end``, in landing order: a day is a file named by its date
    (``2026-04-02.csv``) or a folder of parts named so (``2026-04-02/part-00001.csv``, as a chunked demo writes)."""
    files = []
    for entry in folder.iterdir() if folder.is_dir() else []:
        if entry.name.startswith("."):
            continue
        if date.fromisoformat(entry.name if entry.is_dir() else entry.stem) > end:
            continue
        files += sorted(p for p in entry.iterdir() if p.is_file()) if entry.is_dir() else [entry]
    return sorted(files)


def load(con: duckdb.DuckDBPyConnection, landing: Path, end: date) -> dict[str, int]:
    """Typed, deduplicated raw tables, one per source; returns their row counts."""
    rows = {}
    for source, (key, ts, columns) in SOURCES.items():
        files = day_files(landing / source, end)
        if not files:
            continue
        dedupe = f"qualify row_number() over (partition by {key} order by filename) = 1" if key else ""
        key_col = f"{key}, " if key and key != "user_id" else ""
        con.execute(f"""
            create or replace table {source} as
            select {key_col}user_id, try_cast({ts} as timestamptz) as {ts}, {columns}
            from {_reader(files)}
            where user_id is not null and try_cast({ts} as timestamptz) is not null
            {dedupe}""")
        if not key:
            con.execute(f"create or replace table {source} as select distinct * from {source}")
        rows[source] = con.execute(f"select count(*) from {source}").fetchone()[0]
    return rows


def transform(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """The interaction stream, daily features, daily dimension counts and the survival frame."""
    con.execute("""
        create or replace table interactions as
        select user_id, occurred_at as ts, 'event:' || event_type as kind, topic, value from events
        union all select user_id, sent_at, 'message', null, null from conversations where role = 'user'
        union all select user_id, shown_at, 'rec:' || coalesce(response, 'ignored'), topic, null from recommendations
        union all select user_id, opened_at, 'ticket', category, null from support_tickets
        union all select user_id, occurred_at, 'subscription:' || action, null, mrr from subscriptions""")
    con.execute("""
        create or replace table user_daily as
        select user_id, cast(ts as date) as day, count(*) as interactions,
               count(*) filter (where kind like 'event:%') as events,
               count(*) filter (where kind = 'message') as messages,
               count(*) filter (where kind like 'rec:%') as recs_shown,
               count(*) filter (where kind = 'rec:clicked') as recs_clicked,
               count(*) filter (where kind = 'ticket') as tickets,
               coalesce(sum(value) filter (where kind like 'event:%'), 0) as spend
        from interactions group by all""")
    con.execute("""
        create or replace table user_daily_topics as
        select user_id, cast(ts as date) as day, topic, count(*) as n
        from interactions where topic is not null group by all""")
    con.execute(f"""
        create or replace table survival as
        with last_day as (select max(day) as today from user_daily),
        activity as (select user_id, max(day) as last_active, count(*) as active_days, sum(spend) as spend
                     from user_daily group by user_id)
        select u.user_id, u.plan, u.country, u.acquisition_channel,
               cast(u.signed_up_at as date) as signup_day,
               coalesce(a.active_days, 0) as active_days, coalesce(a.spend, 0) as spend,
               coalesce(a.last_active, cast(u.signed_up_at as date)) as last_active,
               (l.today - coalesce(a.last_active, cast(u.signed_up_at as date))) >= {CHURN_QUIET_DAYS} as churned,
               greatest(1, case when (l.today - coalesce(a.last_active, cast(u.signed_up_at as date)))
                                     >= {CHURN_QUIET_DAYS}
                                then coalesce(a.last_active, cast(u.signed_up_at as date)) + {CHURN_QUIET_DAYS}
                                     - cast(u.signed_up_at as date)
                                else l.today - cast(u.signed_up_at as date) end) as duration_days
        from (select * from users qualify row_number() over (partition by user_id order by signed_up_at) = 1) u
        cross join last_day l left join activity a using (user_id)""")
    return {t: con.execute(f"select count(*) from {t}").fetchone()[0]
            for t in ("interactions", "user_daily", "user_daily_topics", "survival")}


def posteriors(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Decayed Gamma (interactions a day), Beta (clicks per shown recommendation) and Dirichlet (topic shares)
    posteriors for every user, with 90% intervals, into one long table."""
    weight = f"pow(0.5, (today - day) / {HALF_LIFE_DAYS})"
    stats = con.sql(f"""
        with t as (select max(day) as today from user_daily), s as (select user_id, signup_day from survival)
        select s.user_id,
               coalesce(sum(d.interactions * {weight}), 0) as n,
               -- exposure: the decayed days since sign-up (a geometric sum, closed form)
               any_value((1 - pow(0.5, (t.today - s.signup_day + 1) / {HALF_LIFE_DAYS}))
                         / (1 - pow(0.5, 1 / {HALF_LIFE_DAYS}))) as exposure,
               coalesce(sum(d.recs_clicked * {weight}), 0) as clicks,
               coalesce(sum(d.recs_shown * {weight}), 0) as shown
        from s cross join t left join user_daily d using (user_id)
        group by s.user_id""").df()
    topics = con.sql(f"""
        with t as (select max(day) as today from user_daily)
        select user_id, topic, sum(n * {weight}) as k, sum(sum(n * {weight})) over (partition by user_id) as total
        from user_daily_topics cross join t group by user_id, topic""").df()
    n_topics = max(topics["topic"].nunique(), 1)
    parts = []
    for belief, p1, p2, family in (
        ("activity_rate", 1.0 + stats["n"], 1.0 + stats["exposure"], "gamma"),
        ("rec_click_rate", 1.0 + stats["clicks"], 1.0 + stats["shown"] - stats["clicks"], "beta"),
    ):
        parts.append(_summaries(stats["user_id"], belief, p1.to_numpy(), p2.to_numpy(), family))
    alpha = 1.0 + topics["k"].to_numpy()
    parts.append(_summaries(topics["user_id"], "topic:" + topics["topic"], alpha,
                            n_topics + topics["total"].to_numpy() - alpha, "beta"))
    import pandas as pd

    beliefs = pd.concat(parts, ignore_index=True)
    con.register("beliefs_frame", beliefs)
    con.execute("create or replace table beliefs as select * from beliefs_frame")
    con.unregister("beliefs_frame")
    return {"beliefs": len(beliefs)}


def _summaries(users, belief, p1: np.ndarray, p2: np.ndarray, family: str):
    import pandas as pd

    if family == "gamma":
        mean, lo, hi = p1 / p2, special.gammaincinv(p1, 0.05) / p2, special.gammaincinv(p1, 0.95) / p2
    else:
        mean, lo, hi = p1 / (p1 + p2), special.betaincinv(p1, p2, 0.05), special.betaincinv(p1, p2, 0.95)
    return pd.DataFrame({"user_id": users, "belief": belief, "p1": p1, "p2": p2, "mean": mean, "lo": lo, "hi": hi})


def churn(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """A Cox fit on a sample of the survival frame, then every active user's 30-day churn probability."""
    from lifelines import CoxPHFitter

    frame = con.sql("select user_id, duration_days, churned, active_days, spend, plan from survival").df()
    x = frame[["active_days"]].astype(float).assign(
        log_spend=np.log1p(frame["spend"].astype(float)), pro=(frame["plan"] == "pro").astype(float))
    data = x.assign(duration=frame["duration_days"].astype(float), event=frame["churned"].astype(int))
    fit = CoxPHFitter(penalizer=0.01).fit(data.sample(n=min(FIT_ROWS, len(data)), random_state=0),
                                          duration_col="duration", event_col="event")
    active = ~frame["churned"].to_numpy()
    now = frame.loc[active, "duration_days"].to_numpy(dtype=float)
    # P(churn within 30 days | survived to now) = 1 - S(now + 30) / S(now), from the baseline and each user's hazard.
    base = fit.baseline_cumulative_hazard_.iloc[:, 0]
    h = np.interp(now + 30, base.index.to_numpy(), base.to_numpy()) - np.interp(now, base.index.to_numpy(),
                                                                               base.to_numpy())
    risk = np.exp(fit.predict_log_partial_hazard(x[active]).to_numpy())
    prob = 1 - np.exp(-h * risk)
    import pandas as pd

    con.register("p", pd.DataFrame({"user_id": frame.loc[active, "user_id"].to_numpy(), "p_churn_30d": prob}))
    con.execute("create or replace table churn_30d as select * from p")
    return {"cox_rows": int(min(FIT_ROWS, len(data))), "scored_users": int(active.sum())}


def run(landing: Path, end: date, workdir: Path) -> dict:
    """Every phase over ``landing`` up to ``end`` into ``workdir/floor.duckdb``; seconds and row counts."""
    con = duckdb.connect(str(workdir / "floor.duckdb"))
    report: dict = {"end": end.isoformat(), "seconds": {}, "rows": {}}
    started = time.perf_counter()
    try:
        for phase in (load, transform, posteriors, churn):
            t0 = time.perf_counter()
            rows = phase(con) if phase is not load else load(con, landing, end)
            report["seconds"][phase.__name__] = round(time.perf_counter() - t0, 2)
            report["rows"].update({k: int(v) for k, v in rows.items()})
            print(f"  floor {phase.__name__:<11} {report['seconds'][phase.__name__]:8.1f} s", flush=True)
    finally:
        con.close()
    report["total_seconds"] = round(time.perf_counter() - started, 2)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("landing", type=Path, help="the landing folder (one sub-folder per source)")
    parser.add_argument("--end", type=date.fromisoformat, default=date.max, help="the last landing day to load")
    parser.add_argument("--output", type=Path, default=None, help="write the report as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch warehouse (its path is printed)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="floor_"))
    try:
        report = run(args.landing, args.end, workdir)
    finally:
        if args.keep:
            print(f"  scratch warehouse: {workdir / 'floor.duckdb'}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report, indent=2))
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
