"""The per-user campaign effects timed at scale: the cross-fitted fit over N randomized users, scoring N active
users (and a million) with 90% intervals, and the Qini curves with their bootstrap; medians of several runs.

    dagster-twins bench --uplift --users 100000 --repeat 3 --output docs/benchmarks-uplift.json

The users are synthetic (covariates in the landmark columns the model reads, a randomized treatment with a
heterogeneous effect): this times the modelling the asset runs (``simulation.uplift``), not the reading of
covariates as of the send, which is the churn layer's landmark build (timed by ``bench --churn``).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dagster_twins.simulation.uplift import UpliftConfig, cross_fit, policy_scores, score, uplift_curves


def synthetic_users(n: int, seed: int) -> pd.DataFrame:
    """Randomized users with landmark covariates and a churn time after the send; the campaign's hazard ratio is
    0.3 with a recent ticket, 0.9 otherwise (as the demo plants it)."""
    rng = np.random.default_rng(seed)
    events = rng.poisson(rng.gamma(2.0, 10.0, n))
    tickets = rng.poisson(0.25, n)
    treated = (rng.random(n) < 0.5).astype(int)
    rate = 0.01 * np.exp(-0.4 * np.log1p(events) + 0.6 * (tickets > 0))
    rate *= np.where(treated == 1, np.where(tickets > 0, 0.3, 0.9), 1.0)
    time_ = rng.exponential(1 / rate)
    return pd.DataFrame({
        "user_id": np.char.add("u", np.arange(n).astype(str)), "treated": treated,
        "days_followed": np.minimum(time_, 120.0), "churned": (time_ <= 120).astype(int),
        "tenure_days": rng.uniform(14, 700, n), "days_since_last_active": rng.integers(1, 30, n),
        "events_in_window": events, "active_days_in_window": np.minimum(events, 28),
        "purchases": rng.poisson(1.0, n), "tickets_in_window": tickets, "open_tickets": rng.poisson(0.05, n),
        "days_since_last_ticket": np.where(tickets > 0, rng.integers(1, 28, n), np.nan),
        "has_subscription": rng.integers(0, 2, n),
    })


def one_run(users: int, seed: int, million: bool) -> dict:
    config = UpliftConfig(seed=seed)
    frame = synthetic_users(users, seed)
    started = time.perf_counter()
    fit = cross_fit(frame, config)
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    score(fit.model, frame, config)
    score_seconds = time.perf_counter() - started
    started = time.perf_counter()
    known = frame["days_followed"].to_numpy() >= 60
    known |= frame["churned"].to_numpy() == 1
    e = fit.effects[known]
    uplift_curves(policy_scores(e), frame["treated"].to_numpy()[known], (frame["days_followed"] > 60).to_numpy(
        float)[known], replicates=200, seed=seed, folds=e["fold"].to_numpy())
    curves_seconds = time.perf_counter() - started
    out = {"fit_seconds": fit_seconds, "score_seconds": score_seconds, "curves_seconds": curves_seconds}
    if million:
        big = pd.concat([frame] * (1_000_000 // users + 1), ignore_index=True).iloc[:1_000_000]
        started = time.perf_counter()
        score(fit.model, big, config)
        out["score_1m_seconds"] = time.perf_counter() - started
    return out


def main(args) -> int:
    results = []
    for users in args.users:
        runs = [one_run(users, seed, million=not args.no_million) for seed in range(args.repeat)]
        medians = {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}
        results.append({"users": users, "repeat": args.repeat, "median": medians,
                        "runs": [{k: round(v, 2) for k, v in r.items()} for r in runs]})
        print(f"{users:,} randomized users, median of {args.repeat}: " + ", ".join(
            f"{k} {v}" for k, v in medians.items()))
    peak_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # kilobytes on Linux
    print(f"peak memory of the process: {peak_mb:,} MB")
    if args.output:
        Path(args.output).write_text(json.dumps({"machine": platform.machine(), "python": platform.python_version(),
                                                 "cpus": os.cpu_count(), "load_average_at_end": os.getloadavg(),
                                                 "peak_memory_mb": peak_mb, "results": results}, indent=2) + "\n")
    return 0
