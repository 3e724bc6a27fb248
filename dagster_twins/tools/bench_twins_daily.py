"""The twins' daily summary step at scale, before and after "a day costs a day", on synthetic state (no ingest,
no dbt): the full pass summarizes every user; the increment carries the quiet users' state in SQL, reads every
state once for the priors and summarizes only the users with evidence that day.

    python -m dagster_twins.tools.bench_twins_daily --users 100000 --touched 0.25 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd

from dagster_twins.twins import store
from dagster_twins.twins.summarize import PriorInputs
from dagster_twins.twins.update import TwinWriter, summarize_bucket

DAY = date(2026, 6, 30)
TOPICS = [f"topic_{i}" for i in range(8)]
CHANNELS = ["app", "web", "email"]
CATEGORIES = {"rec_click": [], "campaign_response": [], "activity_rate": [], "purchase_rate": [], "ticket_rate": [],
              "topic_interest": TOPICS, "channel_preference": CHANNELS, "format_preference": [], "goal": []}


def synthetic_state(users: int, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A state as of the day before DAY: a rec_click, three rates, three topics and two channels a user."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"user_{i:07d}" for i in range(users)], dtype=object)
    last = pd.Timestamp(DAY - timedelta(days=1)) - pd.to_timedelta(rng.integers(0, 60, users), unit="D")
    parts = []

    def rows(belief: str, category, a, b) -> None:
        parts.append(pd.DataFrame({"user_id": ids, "belief": belief, "category": category, "stat_a": a, "stat_b": b,
                                   "n_evidence": np.maximum(a, b), "last_evidence_day": last}))
    trials = rng.gamma(2, 5, users)
    rows("rec_click", "", trials * rng.beta(2, 8, users), trials)
    for name, scale in (("activity_rate", 30.0), ("purchase_rate", 2.0), ("ticket_rate", 0.5)):
        rows(name, "", rng.gamma(1.5, scale, users), np.zeros(users))
    for _ in range(3):
        rows("topic_interest", np.array(TOPICS, dtype=object)[rng.integers(0, 8, users)], rng.gamma(2, 3, users),
             np.zeros(users))
    for k in range(2):
        rows("channel_preference", np.array(CHANNELS, dtype=object)[(rng.integers(0, 2, users) + k) % 3],
             rng.gamma(2, 3, users), np.zeros(users))
    state = pd.concat(parts, ignore_index=True).groupby(["user_id", "belief", "category"], as_index=False).agg(
        stat_a=("stat_a", "sum"), stat_b=("stat_b", "sum"), n_evidence=("n_evidence", "sum"),
        last_evidence_day=("last_evidence_day", "max"))
    known = pd.DataFrame({"user_id": ids, "first_day": pd.Timestamp(DAY - timedelta(days=179))})
    return state, known


def _warehouse(state: pd.DataFrame, known: pd.DataFrame, half_life: float) -> duckdb.DuckDBPyConnection:
    """An in-memory warehouse with the state of the day before, and its summaries and priors (a full pass)."""
    con = duckdb.connect()
    day_before = DAY - timedelta(days=1)
    writer = TwinWriter(con, day_before, day_before, half_life)
    writer.write_state(state)
    inputs = PriorInputs(known, CATEGORIES, day_before, half_life)
    inputs.add(state)
    priors = inputs.estimate()
    writer.write_priors(priors.frame.assign(half_life_days=half_life))
    writer.write_summary(*summarize_bucket(state, known, CATEGORIES, priors, day_before, half_life))
    writer.finish(35)
    return con


def run_day(con: duckdb.DuckDBPyConnection, known: pd.DataFrame, touched: pd.Series, half_life: float,
            touched_only: bool) -> float:
    """The summary step of DAY's run (the day's evidence is taken as folded: the touched users' state is their
    decayed state); seconds."""
    started = time.perf_counter()
    day_before = DAY - timedelta(days=1)
    writer = TwinWriter(con, DAY, DAY, half_life)
    if touched_only:
        writer.write_state(store.state_of(con, day_before, touched).assign(as_of=pd.Timestamp(DAY)))
        store.carry_state(con, day_before, DAY, half_life)
        state = store.state_of(con, DAY)
    else:
        state = store.state_of(con, day_before)
        writer.write_state(state)
    inputs = PriorInputs(known, CATEGORIES, DAY, half_life)
    inputs.add(state)
    priors = inputs.estimate()
    writer.write_priors(priors.frame.assign(half_life_days=half_life), touched_only)
    users = known[known["user_id"].isin(touched)] if touched_only else known
    mine = state[state["user_id"].isin(users["user_id"])]
    writer.write_summary(*summarize_bucket(mine, users.reset_index(drop=True), CATEGORIES, priors, DAY, half_life))
    writer.finish(35)
    con.sql("select count(*), sum(mean) from twins.user_beliefs").fetchall()  # the view reads
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--touched", type=float, default=0.25, help="share of users with evidence that day")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--half-life", type=float, default=60.0)
    args = parser.parse_args()
    state, known = synthetic_state(args.users)
    touched = known["user_id"].sample(frac=args.touched, random_state=1)
    print(f"{args.users:,} users, {len(state):,} state rows, {len(touched):,} touched", flush=True)
    for label, only in (("full pass (before)", False), ("touched only (after)", True)):
        runs = []
        for _ in range(args.repeat):
            con = _warehouse(state, known, args.half_life)
            runs.append(run_day(con, known, touched, args.half_life, only))
            con.close()
        print(f"{label}: median {statistics.median(runs):.2f} s; runs {', '.join(f'{r:.2f}' for r in runs)}",
              flush=True)


if __name__ == "__main__":
    main()
