"""Load benchmark of the twin API at a million users: `dagster-twins bench --api --users 1000000`.

The serving copy is synthetic but made of real twins: a built serving copy's twins, beliefs, churn predictions,
scenario effects, state and users are replicated under new user ids (``<id>~<k>``) up to the population asked for,
into a copy of its own in the work folder, and their documents are built there with the daily asset's query (the
build is timed). The API then runs as `dagster-twins serve` does (a child process, uvicorn, one worker) on
127.0.0.1, and a small asyncio client (HTTP/1.1 on kept-alive connections, at most ``--concurrency`` requests in
flight) sends requests at a fixed rate (an open loop: each request has a scheduled
time, and its latency counts from then, so a server that falls behind is not hidden by a client that waits):

1. reads: GET /users/{random user}/twin at ``--rate`` requests a second for ``--seconds``;
2. observe: POST /users/{random user}/events at ``--observe-rate`` a second (reads go on at the same time at
   ``--rate`` minus that), then reads of the users just observed (a refolded document each).

Client and server share the machine's 2 cores (and with whatever else runs), so the latencies are an upper bound on
the API's own; each phase also reports the CPU the server and the client spent a request, and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
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


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes, body: bytes) -> int:
    """One HTTP/1.1 request on a kept-alive connection; the status (the body is read and dropped)."""
    writer.write(head + body)
    status_line = await reader.readline()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(status_line.split()[1])


async def _load(url: str, plan: list[tuple[float, str, str, dict | None]], concurrency: int,
                token: str | None) -> list[tuple[str, float, int]]:
    """Send ``plan`` (offset in seconds, method, path, JSON body) on schedule; (kind, latency s, status) each.

    A dispatcher releases each request at its time into a queue that ``concurrency`` kept-alive connections
    drain; latency counts from the scheduled time. The client speaks HTTP/1.1 itself over asyncio streams: httpx's
    async client cost 7 to 14 ms of CPU a request here, more than the server, on the cores they share."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    queue: asyncio.Queue = asyncio.Queue()
    results: list[tuple[str, float, int]] = []
    start = time.perf_counter()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while (item := await queue.get()) is not None:
                offset, method, path, body = item
                data = json.dumps(body).encode() if body is not None else b""
                head = (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Length: {len(data)}\r\n"
                        + ("Content-Type: application/json\r\n" if body is not None else "") + "\r\n").encode()
                try:
                    status = await _request(reader, writer, head, data)
                except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                    status = -1  # a dropped connection counts as an error, then the worker reconnects
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
                results.append((method, time.perf_counter() - (start + offset), status))
        finally:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    for item in plan:
        delay = start + item[0] - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait(item)
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return results


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _phase(url: str, plan: list, concurrency: int, server: int) -> tuple[list[tuple[str, float, int]], dict]:
    """Run one phase of ``plan``; its results, and the CPU the server and the client spent a request (a measure
    that holds on a shared machine, where latency also counts the time waiting for a core)."""
    server_cpu, client_cpu, wall = _cpu_seconds(server), time.process_time(), time.perf_counter()
    results = asyncio.run(_load(url, plan, concurrency, None))
    n = max(len(results), 1)
    return results, {"server_cpu_ms_per_request": round(1000 * (_cpu_seconds(server) - server_cpu) / n, 3),
                     "client_cpu_ms_per_request": round(1000 * (time.process_time() - client_cpu) / n, 3),
                     "wall_seconds": round(time.perf_counter() - wall, 1),
                     "load_average": round(os.getloadavg()[0], 1)}


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
    marker = workdir / "synthetic.json"  # a kept work folder (--keep) is reused for the same population
    if serving.exists() and marker.exists() and json.loads(marker.read_text())["requested"] == users:
        built = json.loads(marker.read_text())
    else:
        built = synthetic_copy(source, serving, users)
        marker.write_text(json.dumps({**built, "requested": users}))
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
    pids: list[int] = []
    with server_process(settings, ready_within=3600, pids=pids) as url:
        server = pids[0]
        out["server_ready_cpu_seconds"] = round(_cpu_seconds(server), 1)  # opening the copy, building the read store
        warm = [(i / 200, "GET", f"/users/{rng.choice(ids)}/twin", None) for i in range(400)]
        asyncio.run(_load(url, warm, concurrency, None))
        reads = [(i / rate, "GET", f"/users/{rng.choice(ids)}/twin", None) for i in range(int(rate * seconds))]
        results, out["reads_cpu"] = _phase(url, reads, concurrency, server)
        out["reads"] = _summary(results, "GET", seconds)
        print(f"reads at {rate:g}/s: {out['reads']}; {out['reads_cpu']}", flush=True)
        observed = [rng.choice(ids) for _ in range(int(observe_rate * seconds))]
        mixed = [(i / observe_rate, "POST", f"/users/{u}/events",
                  {"event_type": "view", "topic": "travel", "channel": "web", "content_format": "video"})
                 for i, u in enumerate(observed)]
        read_rate = max(rate - observe_rate, 1.0)
        mixed += [(i / read_rate, "GET", f"/users/{rng.choice(ids)}/twin", None)
                  for i in range(int(read_rate * seconds))]
        results, out["mixed_cpu"] = _phase(url, sorted(mixed, key=lambda p: p[0]), concurrency, server)
        out["observe"] = _summary(results, "POST", seconds)
        out["reads_during_observe"] = _summary(results, "GET", seconds)
        print(f"observe at {observe_rate:g}/s: {out['observe']}; reads beside it: {out['reads_during_observe']}; "
              f"{out['mixed_cpu']}", flush=True)
        again = [(i / 100, "GET", f"/users/{u}/twin", None) for i, u in enumerate(sorted(set(observed))[:500])]
        results, out["reads_of_observed_cpu"] = _phase(url, again, concurrency, server)
        out["reads_of_observed_users"] = _summary(results, "GET", len(again) / 100)
        print(f"reads of observed users: {out['reads_of_observed_users']}; {out['reads_of_observed_cpu']}",
              flush=True)
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
