"""The per-user campaign effects timed at scale: the cross-fitted fit over N randomized users, scoring N active
users (and, in the first run, a million) with 90% intervals, and the Qini curves with their bootstrap; medians of
several runs, in wall-clock and process CPU seconds.

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


def synthetic_users(n: int, seed: int, ratios: tuple[float, float] = (0.3, 0.9)) -> pd.DataFrame:
    """Randomized users with landmark covariates and a churn time after the send; the campaign's hazard ratio is
    ``ratios[0]`` with a recent ticket, ``ratios[1]`` otherwise (0.3 and 0.9 as the demo plants it; 1 and 1: no
    effect for anyone)."""
    rng = np.random.default_rng(seed)
    events = rng.poisson(rng.gamma(2.0, 10.0, n))
    tickets = rng.poisson(0.25, n)
    treated = (rng.random(n) < 0.5).astype(int)
    rate = 0.01 * np.exp(-0.4 * np.log1p(events) + 0.6 * (tickets > 0))
    rate *= np.where(treated == 1, np.where(tickets > 0, ratios[0], ratios[1]), 1.0)
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


class _Clock:
    """Wall-clock and process CPU seconds of a block (on a shared machine the CPU time is the steadier measure:
    it leaves out the time other processes held the cores)."""

    def __init__(self, out: dict, name: str) -> None:
        self.out, self.name = out, name

    def __enter__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def __exit__(self, *_exc) -> None:
        self.out[f"{self.name}_seconds"] = time.perf_counter() - self.wall
        self.out[f"{self.name}_cpu_seconds"] = time.process_time() - self.cpu


def one_run(users: int, seed: int, million: bool) -> dict:
    config = UpliftConfig(seed=seed)
    frame = synthetic_users(users, seed)
    out: dict[str, float] = {}
    with _Clock(out, "fit"):
        fit = cross_fit(frame, config)
    with _Clock(out, "score"):
        score(fit.model, frame, config)
    with _Clock(out, "curves"):
        known = frame["days_followed"].to_numpy() >= 60
        known |= frame["churned"].to_numpy() == 1
        e = fit.effects[known]
        uplift_curves(policy_scores(e), frame["treated"].to_numpy()[known], (frame["days_followed"] > 60).to_numpy(
            float)[known], replicates=200, seed=seed, folds=e["fold"].to_numpy())
    if million:
        big = pd.concat([frame] * (1_000_000 // users + 1), ignore_index=True).iloc[:1_000_000]
        with _Clock(out, "score_1m"):
            score(fit.model, big, config)
    return out


def main(args) -> int:
    results = []
    for users in args.users:
        # a million users are scored in the first run only (the scoring is the same matrix product each time)
        runs = []
        for seed in range(args.repeat):
            runs.append(one_run(users, seed, million=not args.no_million and seed == 0))
            print(f"{users:,} users, run {seed + 1} of {args.repeat}: " + ", ".join(
                f"{k} {v:.1f}" for k, v in runs[-1].items()), flush=True)
        medians = {k: round(statistics.median(r[k] for r in runs if k in r), 2) for k in runs[0]}
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
