"""Load benchmark of the twin API at a million users: `dagster-twins bench --api --users 1000000`.

The serving copy is synthetic but made of real documents: a built serving copy's twin documents (and the state,
priors and users observe() needs) are replicated under new user ids (``<id>~<k>``) up to the population asked for,
into a copy of its own in the work folder. The API then runs as `dagster-twins serve` does (a child process,
uvicorn, one worker) on 127.0.0.1, and a small asyncio client (httpx, keep-alive connections, at most
``--concurrency`` requests in flight) sends requests at a fixed rate (an open loop: each request has a scheduled
time, and its latency counts from then, so a server that falls behind is not hidden by a client that waits):

1. reads: GET /users/{random user}/twin at ``--rate`` requests a second for ``--seconds``;
2. observe: POST /users/{random user}/events at ``--observe-rate`` a second (reads go on at the same time at
   ``--rate`` minus that), then reads of the users just observed (a refolded document each).

Client and server share the machine's 2 cores (and with whatever else runs), so the numbers are an upper bound on
the API's own latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np

from dagster_twins.settings import Settings
from dagster_twins.twins import store
from dagster_twins.twins.api import server_process
from dagster_twins.warehouse.tables import connect, table_exists

SUFFIX = "~"
DOCUMENT_BUCKET = 250_000  # users a documents query builds at once (as the asset's buckets, of this order)


def _replicate(con: duckdb.DuckDBPyConnection, table: str, copies: int, where: str = "true") -> None:
    """``src.<table>``'s rows once per copy k, each user ``<id>~k``."""
    con.execute(f"""create table {table} as select * replace (user_id || '{SUFFIX}' || k as user_id)
                    from src.{table}, range({copies}) as r(k) where {where}""")


def synthetic_copy(source: Path, target: Path, users: int) -> dict:
    """A serving copy of ``users`` users replicated from ``source``'s twins, beliefs, churn predictions, scenario
    effects, state and users (``<id>~k``: the k-th copy of user id), whose documents are then built as the daily
    asset builds them (``store.documents_query``, a bucket of users at a time): the build is measured at scale."""
    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    con = connect(target)
    try:
        con.execute(f"attach '{source}' as src (read_only)")
        base = con.execute("select count(*) from src.twins.user_twins").fetchone()[0]
        copies = math.ceil(users / base)
        as_of = con.execute("select max(as_of) from src.twins.user_documents").fetchone()[0]
        for schema in ("twins", "marts", "serving", "churn", "simulation"):
            con.execute(f"create schema {schema}")
        _replicate(con, "twins.user_twins", copies)
        _replicate(con, "twins.user_beliefs", copies)
        _replicate(con, "twins.belief_state", copies, f"as_of = '{as_of}'")
        _replicate(con, "marts.dim_users", copies)
        if table_exists(con, "churn", "churn_predictions"):
            _replicate(con, "churn.churn_predictions", copies)
        if table_exists(con, "simulation", "scenario_user_effects"):
            _replicate(con, "simulation.scenario_user_effects", copies)
            con.execute("create table simulation.scenario_results as select * from src.simulation.scenario_results")
        con.execute("create table twins.belief_priors as select * from src.twins.belief_priors where as_of = ?",
                    [as_of])
        con.execute("create table marts.fct_events as select * from src.marts.fct_events limit 1")
        con.execute("create table serving.publication as select * from src.serving.publication")
        con.execute("detach src")
        replicated = time.perf_counter() - started
        count = con.execute("select count(*) from twins.user_twins").fetchone()[0]
        buckets = max(1, math.ceil(count / DOCUMENT_BUCKET))
        built = time.perf_counter()
        for k in range(buckets):
            sql = store.documents_query(con, (k, buckets))
            con.execute(f"{'insert into' if k else 'create table'} twins.user_documents "
                        f"{'' if k else 'as '}{sql}")
            print(f"documents: bucket {k + 1}/{buckets} after {time.perf_counter() - built:.0f} s", flush=True)
        documents = time.perf_counter() - built
        size = con.execute("select median(strlen(document)), count(*) from twins.user_documents").fetchone()
        con.execute("checkpoint")
    finally:
        con.close()
    return {"users": int(size[1]), "replicated_from": int(base), "replicate_seconds": round(replicated, 1),
            "documents_seconds": round(documents, 1), "documents_us_per_user": round(1e6 * documents / size[1], 1),
            "median_document_bytes": int(size[0]), "seconds": round(time.perf_counter() - started, 1),
            "bytes": target.stat().st_size}


async def _load(url: str, plan: list[tuple[float, str, str, dict | None]], concurrency: int,
                token: str | None) -> list[tuple[str, float, int]]:
    """Send ``plan`` (offset in seconds, method, path, JSON body) on schedule; (kind, latency s, status) each."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    results: list[tuple[str, float, int]] = []
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client:
        start = time.perf_counter()

        async def one(offset: float, method: str, path: str, body: dict | None) -> None:
            await asyncio.sleep(max(0.0, start + offset - time.perf_counter()))
            async with gate:
                try:
                    status = (await client.request(method, path, json=body)).status_code
                except httpx.HTTPError:  # a dropped connection counts as an error, not a crash of the benchmark
                    status = -1
            results.append((method, time.perf_counter() - (start + offset), status))

        await asyncio.gather(*(one(*item) for item in plan))
    return results


def _summary(results: list[tuple[str, float, int]], kind: str, seconds: float) -> dict:
    lat = np.array([r[1] for r in results if r[0] == kind]) * 1000
    bad = sum(1 for r in results if r[0] == kind and not 200 <= r[2] < 400)
    if not len(lat):
        return {}
    return {"requests": int(len(lat)), "errors": bad, "per_second": round(len(lat) / seconds, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2), "p90_ms": round(float(np.percentile(lat, 90)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2), "max_ms": round(float(lat.max()), 2)}


def run(source: Path, workdir: Path, users: int, rate: float, seconds: float, observe_rate: float,
        concurrency: int, seed: int = 0) -> dict:
    serving = workdir / "serving" / "warehouse.duckdb"
    built = synthetic_copy(source, serving, users)
    print(f"synthetic serving copy: {built['users']:,} users from {built['replicated_from']:,} real twins, "
          f"{built['bytes'] / 1e9:.2f} GB in {built['seconds']} s; their documents built in "
          f"{built['documents_seconds']} s ({built['documents_us_per_user']} us a user, median "
          f"{built['median_document_bytes']:,} bytes)", flush=True)
    con = duckdb.connect(str(serving), read_only=True)
    ids = [r[0] for r in con.execute("select user_id from twins.user_documents using sample 20000 rows").fetchall()]
    con.close()
    rng = random.Random(seed)
    settings = replace(Settings.load(environ={}), warehouse_path=workdir / "warehouse.duckdb", serving_path=serving,
                       landing_dir=workdir / "landing", online_dir=workdir / "online", api_port=0)
    out = {"users": built, "rate": rate, "seconds": seconds, "observe_rate": observe_rate,
           "concurrency": concurrency}
    with server_process(settings, ready_within=3600) as url:
        warm = [(i / 200, "GET", f"/users/{rng.choice(ids)}/twin", None) for i in range(400)]
        asyncio.run(_load(url, warm, concurrency, None))
        reads = [(i / rate, "GET", f"/users/{rng.choice(ids)}/twin", None) for i in range(int(rate * seconds))]
        out["reads"] = _summary(asyncio.run(_load(url, reads, concurrency, None)), "GET", seconds)
        print(f"reads at {rate:g}/s: {out['reads']}", flush=True)
        observed = [rng.choice(ids) for _ in range(int(observe_rate * seconds))]
        mixed = [(i / observe_rate, "POST", f"/users/{u}/events",
                  {"event_type": "view", "topic": "travel", "channel": "web", "content_format": "video"})
                 for i, u in enumerate(observed)]
        read_rate = max(rate - observe_rate, 1.0)
        mixed += [(i / read_rate, "GET", f"/users/{rng.choice(ids)}/twin", None)
                  for i in range(int(read_rate * seconds))]
        results = asyncio.run(_load(url, sorted(mixed, key=lambda p: p[0]), concurrency, None))
        out["observe"] = _summary(results, "POST", seconds)
        out["reads_during_observe"] = _summary(results, "GET", seconds)
        print(f"observe at {observe_rate:g}/s: {out['observe']}; reads beside it: {out['reads_during_observe']}",
              flush=True)
        again = [(i / 100, "GET", f"/users/{u}/twin", None) for i, u in enumerate(sorted(set(observed))[:500])]
        out["reads_of_observed_users"] = _summary(asyncio.run(_load(url, again, concurrency, None)), "GET",
                                                  len(again) / 100)
        print(f"reads of observed users: {out['reads_of_observed_users']}", flush=True)
    return out


def main(args: argparse.Namespace) -> int:
    source = args.source or Settings.load().serving_file
    if not source.exists():
        print(f"no serving copy at {source}: build one first (`dagster-twins demo --users 2000 --days 180`)")
        return 1
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="twins-api-bench-"))
    try:
        out = run(source, workdir, args.users[0], args.rate, args.seconds, args.observe_rate, args.concurrency)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.output:
        args.output.write_text(json.dumps(out, indent=2))
        print(f"results: {args.output}")
    return 0
