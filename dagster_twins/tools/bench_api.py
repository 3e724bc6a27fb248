"""Load benchmark of the twin API at a million users: `dagster-twins bench --api --users 1000000`.

The documents are cloned, not computed: a built serving copy's read store rows (document, latest belief state,
first day) are written again under new user ids (``<id>~<k>``, the document's user_id too) up to the population
asked for, into a read store of the API's own format (``readstore.write``: one transaction, key order). Building a
million real documents takes over an hour on this machine; what a lookup costs depends on the store's B-tree and the
documents' size, which the clones keep (the output says so). The API then runs as `dagster-twins serve` does (a
child process, uvicorn, one worker) over the source copy with ``api_read_store`` set to the clones, on 127.0.0.1,
and a small asyncio client (HTTP/1.1 on kept-alive connections, at most ``--concurrency`` requests in flight) sends
requests at a fixed rate (an open loop: each request has a scheduled time, and its latency counts from then, so a
server that falls behind is not hidden by a client that waits), ``--repeat`` times; medians are reported:

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
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np

from dagster_twins.settings import Settings
from dagster_twins.twins import readstore
from dagster_twins.twins.api import server_process

SUFFIX = "~"
CLONE_NOTE = ("{users:,} documents cloned from a {base:,}-user built serving copy; latency depends on the store's "
              "index and document size, not on how the documents were computed")


def _source_rows(source: Path, scratch: Path) -> tuple[list[tuple], dict]:
    """The read store rows (user_id, document, state, first_day) of the users with a document in the built
    serving copy ``source``, through the API's own read-store build."""
    con = duckdb.connect(str(source), read_only=True)
    try:
        value = con.execute("select max(as_of) from twins.user_documents").fetchone()[0]
        start = con.execute("select min(occurred_at) from marts.fct_events").fetchone()[0]
        built = readstore.build(con, value.date() if value is not None else None, start, scratch)
    finally:
        con.close()
    with closing(sqlite3.connect(str(scratch))) as lite:
        rows = lite.execute("select * from twins where document is not null order by user_id").fetchall()
    scratch.unlink()
    return rows, built


def cloned_read_store(source: Path, target: Path, users: int) -> dict:
    """A read store of ``users`` documents cloned from the built serving copy ``source``: each of its users'
    document, state and first day again under ``<id>~k`` (the document's user_id too), written in key order in one
    transaction (``readstore.write``, as the API writes its own). What a lookup costs depends on the B-tree and the
    documents' size, which the clones keep; building a million real documents takes an hour and more here."""
    started = time.perf_counter()
    rows, _ = _source_rows(source, target.with_name("source-read.sqlite"))
    if not rows:
        raise SystemExit(f"{source} has no twins.user_documents: run the pipeline to the end first")
    copies = math.ceil(users / len(rows))
    keys = sorted((f"{row[0]}{SUFFIX}{k}", i, k) for k in range(copies) for i, row in enumerate(rows)
                  if k * len(rows) + i < users)

    def clones() -> Iterator[tuple]:
        for key, i, _ in keys:
            user, document, state, first_day = rows[i]
            yield key, document.replace(f'"user_id":{json.dumps(user)}', f'"user_id":{json.dumps(key)}', 1), \
                state, first_day

    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    readstore.write(tmp, clones())
    os.replace(tmp, target)
    sizes = sorted(len(row[1]) for row in rows)
    return {"users": len(keys), "cloned_from": len(rows), "seconds": round(time.perf_counter() - started, 1),
            "bytes": target.stat().st_size, "median_document_bytes": sizes[len(sizes) // 2],
            "note": CLONE_NOTE.format(users=len(keys), base=len(rows))}


def refold_cpu(source: Path, scratch: Path, users: int = 100, half_life_days: float = 30.0) -> dict:
    """CPU of one observed event's refold into a document, per user of the built copy ``source`` (medians and p90
    over ``users`` users): ``online_fold`` (what observe() runs) beside the frame functions it replaced
    (``online.event_evidence``, ``online_twin``: evidence query, ``state.fold``, ``summarize_bucket``, roll-up)."""
    from dagster_twins.twins.document import build_document, to_json
    from dagster_twins.twins.online import Batch, event_evidence, online_twin, parse_event, priors_from_frame, stamp
    from dagster_twins.twins.online_fold import refold_document, state_from_rows

    con = duckdb.connect(str(source), read_only=True)
    try:
        as_of = con.execute("select max(as_of) from twins.user_documents").fetchone()[0].date()
        start = con.execute("select min(occurred_at) from marts.fct_events").fetchone()[0]
        readstore.build(con, as_of, start, scratch)
        priors, categories = priors_from_frame(con.execute(
            "select * from twins.belief_priors where as_of = ? order by belief, category", [as_of]).df())
        ids = [r[0] for r in con.execute("select user_id from twins.user_documents order by hash(user_id) limit ?",
                                         [users]).fetchall()]
    finally:
        con.close()
    read = readstore.ReadStore(scratch)
    received = datetime.combine(as_of, datetime.min.time()).replace(hour=12)
    times: dict[str, list[float]] = {"online_fold": [], "frames": []}
    for i, user in enumerate(ids):
        row = parse_event(user, {"event_type": "view", "topic": "travel", "channel": "web", "content_format": "video",
                                 "event_id": f"bench-{i}"}, received)
        pending, started = [(row, as_of, stamp(received))], time.process_time()
        to_json(refold_document(json.loads(read.document(user)), state_from_rows(read.state_rows(user)), as_of,
                                read.first_day(user).date(), pending, priors, categories, half_life_days, ["purchase"]))
        times["online_fold"].append(time.process_time() - started)
        started = time.process_time()
        evidence = event_evidence([row], {row["event_id"]: as_of}, ["purchase"])
        beliefs, twins, _ = online_twin(Batch(as_of, read.state(user), read.first_day(user), priors, categories,
                                              half_life_days), user, evidence)
        updated = pending[0][2]
        moved = beliefs.assign(updated_online_at=np.where(beliefs["belief"].isin(evidence["belief"]), updated, None))
        to_json(build_document(twins.iloc[0].to_dict(), moved.to_dict("records"), updated_online_at=updated))
        times["frames"].append(time.process_time() - started)
    scratch.unlink()
    return {f"{k}_ms_{q}": round(1000 * float(np.percentile(v, p)), 3) for k, v in times.items()
            for q, p in (("p50", 50), ("p90", 90))} | {"users": len(ids), "load_average": round(os.getloadavg()[0], 1)}


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


def _median(runs: list[dict]) -> dict:
    """Each number's median over repeated runs of a phase (the runs themselves are kept beside it)."""
    keys = [k for k in runs[0] if isinstance(runs[0][k], int | float)]
    return {k: round(float(np.median([r[k] for r in runs if k in r])), 3) for k in keys}


def _phases(url: str, ids: list[str], rng: random.Random, rate: float, seconds: float, observe_rate: float,
            concurrency: int, server: int) -> dict:
    """One run of the three phases: reads at ``rate``; observe() at ``observe_rate`` beside reads at the rest of
    ``rate``; reads of the users just observed (a refolded document each)."""
    out: dict = {}
    reads = [(i / rate, "GET", f"/users/{rng.choice(ids)}/twin", None) for i in range(int(rate * seconds))]
    results, cpu = _phase(url, reads, concurrency, server)
    out["reads"] = {**_summary(results, "GET", seconds), **cpu}
    print(f"  reads at {rate:g}/s: {out['reads']}", flush=True)
    observed = [rng.choice(ids) for _ in range(int(observe_rate * seconds))]
    mixed = [(i / observe_rate, "POST", f"/users/{u}/events",
              {"event_type": "view", "topic": "travel", "channel": "web", "content_format": "video"})
             for i, u in enumerate(observed)]
    read_rate = max(rate - observe_rate, 1.0)
    mixed += [(i / read_rate, "GET", f"/users/{rng.choice(ids)}/twin", None) for i in range(int(read_rate * seconds))]
    results, cpu = _phase(url, sorted(mixed, key=lambda p: p[0]), concurrency, server)
    out["observe"] = {**_summary(results, "POST", seconds), **cpu}
    out["reads_during_observe"] = _summary(results, "GET", seconds)
    print(f"  observe at {observe_rate:g}/s: {out['observe']}; reads beside it: {out['reads_during_observe']}",
          flush=True)
    again = [(i / 100, "GET", f"/users/{u}/twin", None) for i, u in enumerate(sorted(set(observed))[:500])]
    results, cpu = _phase(url, again, concurrency, server)
    out["reads_of_observed_users"] = {**_summary(results, "GET", len(again) / 100), **cpu}
    print(f"  reads of observed users: {out['reads_of_observed_users']}", flush=True)
    return out


def run(source: Path, workdir: Path, users: int, rate: float, seconds: float, observe_rate: float,
        concurrency: int, repeats: int = 3, seed: int = 0) -> dict:
    store_path = workdir / "read.sqlite"
    marker = workdir / "cloned.json"  # a kept work folder (--keep) is reused for the same population
    if store_path.exists() and marker.exists() and json.loads(marker.read_text())["requested"] == users:
        built = json.loads(marker.read_text())
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        built = cloned_read_store(source, store_path, users)
        marker.write_text(json.dumps({**built, "requested": users}))
    out_refold = refold_cpu(source, workdir / "refold-read.sqlite")
    print(f"refold CPU an event: {out_refold}", flush=True)
    print(f"read store: {built['note']}: {built['bytes'] / 1e9:.2f} GB written in {built['seconds']} s "
          f"(median document {built['median_document_bytes']:,} bytes)", flush=True)
    for folder in ("online", "landing"):  # a kept work folder's events of an earlier run: not pending in this one
        shutil.rmtree(workdir / folder, ignore_errors=True)
    serving = workdir / "serving" / source.name  # the source copy itself (priors, as-of day), beside the clones
    serving.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, serving)
    rng = random.Random(seed)
    with closing(sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)) as lite:
        everyone = [r[0] for r in lite.execute("select user_id from twins where document is not null")]
    ids = rng.sample(everyone, min(20_000, len(everyone)))
    del everyone
    settings = replace(Settings.load(environ={}), warehouse_path=workdir / "warehouse.duckdb", serving_path=serving,
                       landing_dir=workdir / "landing", online_dir=workdir / "online", api_port=0,
                       api_read_store=store_path)
    out = {"users": built, "rate": rate, "seconds": seconds, "observe_rate": observe_rate,
           "concurrency": concurrency, "repeats": repeats, "uptime_before": _uptime(), "refold_cpu": out_refold}
    pids: list[int] = []
    with server_process(settings, ready_within=3600, pids=pids) as url:
        server = pids[0]
        out["server_ready_cpu_seconds"] = round(_cpu_seconds(server), 1)
        warm = [(i / 200, "GET", f"/users/{rng.choice(ids)}/twin", None) for i in range(400)]
        asyncio.run(_load(url, warm, concurrency, None))
        runs = []
        for k in range(repeats):
            print(f"run {k + 1}/{repeats} (load average {os.getloadavg()[0]:.1f})", flush=True)
            runs.append(_phases(url, ids, rng, rate, seconds, observe_rate, concurrency, server))
    out["runs"] = runs
    out["median"] = {phase: _median([r[phase] for r in runs]) for phase in runs[0]}
    out["uptime_after"] = _uptime()
    return out


def _uptime() -> str:
    import subprocess

    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main(args: argparse.Namespace) -> int:
    source = args.source or Settings.load().serving_file
    if not source.exists():
        print(f"no serving copy at {source}: build one first (`dagster-twins demo --users 2000 --days 180`)")
        return 1
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="twins-api-bench-"))
    try:
        out = run(source, workdir, args.users[0], args.rate, args.seconds, args.observe_rate, args.concurrency,
                  args.repeat)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.output:
        args.output.write_text(json.dumps(out, indent=2))
        print(f"results: {args.output}")
    return 0
