"""The twin read API for products and AI agents (FastAPI on uvicorn): `dagster-twins serve`.

    GET  /users/{id}/twin                  the user's twin document (JSON; schema/twin-document.v1.json)
    GET  /users/{id}/twin/context          the document as a few plain sentences for a language model's prompt
    GET  /users/{id}/twin/as-of/{day}      the document as it was on an earlier as-of day
    GET  /segments/{scenario}/users        the users in a simulated scenario's segment, with the expected effect
    POST /users/{id}/events                observe(): fold one interaction in now, record it for the next run
    GET  /health                           the serving copy behind the answers (no user data)

Reads come from the read-only serving copy (``data/serving/warehouse.duckdb``), never the warehouse, so the API
never holds the pipeline's write lock. The copy is replaced by an atomic rename at the end of each run
(``serving/publish.py``); ``ServingCopy`` notices the new file (its inode) at the next request and opens it, while
requests already running finish on the old one, which the kernel keeps alive while it is open: a reader sees one
run's copy whole, never half of one. Events observed online live in a SQLite file under ``<data>/online/`` (see
``online.py``) until a published copy holds them.

Errors are answers with a reason: 400 a malformed id or body, 401 a missing or wrong token, 404 an unknown user,
day or scenario, 413 a body over 64 KiB, 422 an event the contract refuses, 503 no serving copy yet.
"""

from __future__ import annotations

import hmac
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from dagster_twins.settings import Settings
from dagster_twins.twins import readstore
from dagster_twins.twins.document import (
    build_document,
    context_block,
    to_json,
)
from dagster_twins.twins.online import (
    Batch,
    EventError,
    LandingWriter,
    OnlineStore,
    check_id,
    now_utc,
    online_twin,
    parse_event,
    priors_from_frame,
    stamp,
)
from dagster_twins.twins.online_fold import refold_document, state_from_rows
from dagster_twins.twins.state import STATE_COLUMNS
from dagster_twins.warehouse.tables import connect, relation_exists, table_exists

BODY_LIMIT = 64 * 1024
SEGMENT_PAGE = 1000  # most users a segment page returns
# The largest share of a core the background refolder takes. Past it, observed users stay dirty and their next
# read refolds them (a read refolds on demand), so a burst of events (500 a second: a refold is about 2 ms of CPU) never
# starves the event loop that records events and answers reads.
REFOLD_CPU_SHARE = 0.3


def refold_pause(cpu_seconds: float, share: float = REFOLD_CPU_SHARE) -> float:
    """Seconds to rest after a refold that took ``cpu_seconds``, so that refolding uses at most ``share`` of a core
    (work c, then rest c (1 - s) / s: c / (c + rest) = s)."""
    return max(cpu_seconds, 0.0) * (1.0 - share) / share


class NoServingCopy(RuntimeError):
    """No serving copy has been published yet (or it cannot be opened)."""


class Snapshot:
    """One published serving copy, open read-only, with a cursor per thread (DuckDB connections are not shared
    across threads; cursors of one database are cheap and run in parallel)."""

    def __init__(self, path: Path, identity: tuple[int, int], prebuilt: Path | None = None):
        self.path, self.identity = path, identity
        self.con = connect(path, read_only=True)
        self._local = threading.local()
        self._priors: dict[date, Any] = {}
        self.has_documents = relation_exists(self.con, "twins", "user_documents")  # a view
        self.as_of: date | None = None
        if self.has_documents:
            value = self.con.execute("select max(as_of) from twins.user_documents").fetchone()[0]
            self.as_of = value.date() if value is not None else None
        self.data_start = None
        if table_exists(self.con, "marts", "fct_events"):
            self.data_start = self.con.execute("select min(occurred_at) from marts.fct_events").fetchone()[0]
        self.publication = self._publication()
        if prebuilt is not None:  # a benchmark's read store (settings.api_read_store), not built from this copy
            self.read_build = {"prebuilt": str(prebuilt), "bytes": prebuilt.stat().st_size}
        else:
            self.read_build = readstore.build(self.con, self.as_of, self.data_start, path.parent / "read.sqlite")
        self.read = readstore.ReadStore(prebuilt or path.parent / "read.sqlite")

    def _publication(self) -> dict[str, Any]:
        if not table_exists(self.con, "serving", "publication"):
            return {}
        row = self.con.execute("select any_value(run_id), max(published_at) from serving.publication").fetchone()
        return {"run_id": row[0], "published_at": str(row[1])}

    def priors(self, day: date) -> tuple[Any, dict[str, list[str]]] | None:
        """The copy's priors and share categories of ``day`` (kept per day; a handful of rows each)."""
        if day not in self._priors:
            frame = self.frame("select * from twins.belief_priors where as_of = ? order by belief, category", [day])
            self._priors[day] = priors_from_frame(frame) if len(frame) else None
        return self._priors[day]

    def cursor(self) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._local.cursor = self.con.cursor()
        return cur

    def one(self, sql: str, params: list[Any]) -> tuple | None:
        return self.cursor().execute(sql, params).fetchone()

    def frame(self, sql: str, params: list[Any]) -> pd.DataFrame:
        return self.cursor().execute(sql, params).df()


class ServingCopy:
    """Follows the serving copy's atomic swaps: ``current()`` opens the new file when the path names another one.

    DuckDB keeps one database instance per path in a process, so a second ``connect`` to the serving path while the
    old copy is open would return the old copy. Each published file is therefore opened through a hard link of its
    own, ``<links>/<inode>-<mtime>/<file name>`` (the file name is kept: DuckDB names the catalog after it, and
    views refer to it); the link of a replaced copy is removed at once, and the kernel frees the file when its last
    reader closes it. The links folder must be on the serving copy's filesystem.
    """

    def __init__(self, path: Path, links: Path, on_new: Any = None, read_store: Path | None = None):
        self.path, self.links, self.on_new, self.read_store = path, links, on_new, read_store
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._retired: Snapshot | None = None
        self._opening: tuple[int, int] | None = None
        self._error = ""
        shutil.rmtree(links, ignore_errors=True)  # links a stopped server left

    @property
    def opened(self) -> Snapshot | None:
        """The copy open now (None before the first is)."""
        return self._snapshot

    def _link(self, identity: tuple[int, int]) -> Path:
        folder = self.links / f"{identity[0]}-{identity[1]}"
        folder.mkdir(parents=True, exist_ok=True)
        link = folder / self.path.name
        if not link.exists():
            try:
                os.link(self.path, link)
            except OSError as exc:
                raise NoServingCopy(f"cannot link the serving copy {self.path} into {self.links} ({exc}): the "
                                    "online folder (online_dir) must be on the serving copy's filesystem") from exc
        if os.stat(link).st_ino != identity[0]:  # replaced again between the stat and the link: try next time
            raise FileNotFoundError(link)
        return link

    def current(self) -> Snapshot:
        try:
            st = os.stat(self.path)
        except FileNotFoundError as exc:
            if self._snapshot is not None:  # replaced this instant: the open copy is still whole
                return self._snapshot
            raise NoServingCopy(f"no serving copy at {self.path} yet: run the pipeline (`dagster-twins run`), "
                                "which publishes it at the end") from exc
        identity = (st.st_ino, st.st_mtime_ns)
        snapshot = self._snapshot
        if snapshot is not None and snapshot.identity == identity:
            return snapshot
        if snapshot is None:  # the first copy: nothing to answer from until it is open
            with self._lock:
                if self._snapshot is None:
                    self._open(identity)
                if self._snapshot is None:
                    raise NoServingCopy(f"the serving copy at {self.path} cannot be opened: {self._error}")
                return self._snapshot
        with self._lock:  # a newer copy: opened beside, while the open one keeps answering
            if self._opening != identity:
                self._opening = identity
                threading.Thread(target=self._open, args=(identity,), daemon=True).start()
        return snapshot

    def _open(self, identity: tuple[int, int]) -> None:
        try:
            fresh = Snapshot(self._link(identity), identity, self.read_store)
        except (duckdb.Error, OSError, NoServingCopy) as exc:
            self._error, self._opening = str(exc), None
            return
        if self.on_new is not None:
            self.on_new(fresh)
        retired, self._retired, self._snapshot = self._retired, self._snapshot, fresh
        if retired is not None:  # two copies back: no request can still be opening it
            shutil.rmtree(retired.path.parent, ignore_errors=True)

    def wait_until_current(self) -> Snapshot:
        """The snapshot of the file the path names now, once it is open (for the CLI's observe() and the tests)."""
        snapshot = self.current()
        while self._opening is not None and self._opening != snapshot.identity:
            time.sleep(0.05)
            snapshot = self.current()
        return snapshot


@dataclass
class TwinService:
    """What the routes call: reads of the serving copy with the online events folded in, and observe()."""

    serving: ServingCopy
    store: OnlineStore
    landing: LandingWriter
    settings: Settings

    def __post_init__(self):
        self.serving.on_new = self._reconcile
        self._pending_users = set(self.store.users())
        # observe() answers once the event is recorded; the users observed since the last refold are refolded
        # together right after in one thread (one fold and summary for all of them: at 50 events a second, one per
        # user cost more than a core), so the next read usually finds the document ready (a read that comes
        # first refolds it itself).
        self._dirty: set[str] = set()
        self._wake = threading.Event()
        threading.Thread(target=self._refold_loop, name="refold", daemon=True).start()

    def _reconcile(self, snapshot: Snapshot) -> None:
        """A new copy was published: forget the online events it holds (they are in its batch state now)."""
        ids = self.store.event_ids()
        held: list[str] = []
        if ids and table_exists(snapshot.con, "marts", "fct_events"):
            cur = snapshot.con.cursor()
            cur.register("_online_ids", pd.DataFrame({"interaction_id": [f"events:{i}" for i in ids]}))
            held = [r[0][len("events:"):] for r in cur.execute(
                "select interaction_id from marts.fct_events where interaction_id in "
                "(select interaction_id from _online_ids)").fetchall()]
            cur.close()
        self.store.reconcile(held)
        self._pending_users = set(self.store.users())

    # Reads

    def batch_text(self, user_id: str) -> str | None:
        """The user's document when it is the batch's as published (no online events pending), else None (then
        ``document_text``: it refolds, or answers 404/503 with the reason)."""
        if user_id in self._pending_users or self.serving.opened is None:  # the first copy opens in the pool
            return None
        snapshot = self.serving.current()
        return snapshot.read.document(user_id) if snapshot.has_documents else None

    def document_text(self, user_id: str) -> str:
        snapshot = self.serving.current()
        if not snapshot.has_documents:
            raise NoServingCopy("the serving copy has no twins.user_documents yet: run the pipeline to the end")
        text = snapshot.read.document(user_id)
        if text is None:
            raise HTTPException(404, f"no twin for user {user_id!r} in the serving copy as of {snapshot.as_of}")
        if user_id not in self._pending_users:
            return text
        return self._refolded(snapshot, [user_id]).get(user_id, text)

    def batch_of(self, snapshot: Snapshot, user_id: str, day: date) -> Batch | None:
        """The user's saved state and the priors of ``day`` in the copy (None when that day's state is not kept)."""
        if day == snapshot.as_of:  # the latest state: from the read store
            state = snapshot.read.state(user_id)
        else:
            state = snapshot.frame(f"select {', '.join(STATE_COLUMNS)} from twins.belief_state where as_of = ? "
                                   "and user_id = ?", [day, user_id])
        priors = snapshot.priors(day)
        first = snapshot.read.first_day(user_id)
        if priors is None or first is None:
            return None
        return Batch(day, state, first, *priors, self.settings.half_life_days)

    def _refolded(self, snapshot: Snapshot, user_ids: list[str]) -> dict[str, str]:
        """The documents of ``user_ids`` with their pending events folded in (cached per user until their next
        event or the next copy); users without pending events or a batch state are left out. One user's refold is
        dict and small-array work (``online_fold``), a few milliseconds of CPU."""
        out: dict[str, str] = {}
        priors = snapshot.priors(snapshot.as_of) if snapshot.as_of is not None else None
        for user in user_ids:
            pending = self.store.pending(user)
            base = snapshot.read.document(user) if pending else None
            first = snapshot.read.first_day(user) if base is not None else None
            if base is None or first is None or priors is None:
                continue
            cached = self.store.cached(user, snapshot.as_of, len(pending))
            if cached is not None:
                out[user] = cached
                continue
            document = refold_document(json.loads(base), state_from_rows(snapshot.read.state_rows(user)),
                                       snapshot.as_of, first.date(), pending, *priors, self.settings.half_life_days,
                                       self.settings.purchase_event_types)
            text = to_json(document)
            self.store.cache(user, snapshot.as_of, len(pending), text)
            out[user] = text
        return out

    def _refold_loop(self) -> None:
        """The refolder: waits for observed users and refolds them one by one, resting after each refold so that
        it takes at most ``REFOLD_CPU_SHARE`` of a core (users observed meanwhile are gathered: one refold each)."""
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._dirty:
                users, self._dirty = self._dirty, set()
                for user in sorted(users):
                    started = time.thread_time()
                    with suppress(Exception):  # a read refolds it again and reports what fails
                        self._refolded(self.serving.current(), [user])
                    time.sleep(refold_pause(time.thread_time() - started))

    def as_of_document(self, user_id: str, day: date) -> dict[str, Any]:
        snapshot = self.serving.current()
        # The history has a row a user on each day they were summarized (a day with evidence): the latest on or
        # before ``day`` is the twin as of it.
        history = snapshot.one("select * from twins.user_twins_history where user_id = ? and as_of <= ? "
                               "order by as_of desc limit 1", [user_id, day]) \
            if table_exists(snapshot.con, "twins", "user_twins_history") else None
        if history is None:
            days = snapshot.one("select min(as_of), max(as_of), count(distinct as_of) from twins.user_twins_history "
                                "where user_id = ?", [user_id])
            known = f"; its history holds {days[2]} day(s), {days[0]:%Y-%m-%d} to {days[1]:%Y-%m-%d}" \
                if days and days[2] else ""
            raise HTTPException(404, f"no twin of user {user_id!r} as of {day}{known}")
        cur = snapshot.cursor()
        twin = dict(zip([d[0] for d in cur.description], history, strict=True))
        twin["last_updated"] = twin.pop("as_of")
        prediction = None
        if table_exists(snapshot.con, "churn", "churn_predictions_history"):
            frame = snapshot.frame("select * from churn.churn_predictions_history where user_id = ? and "
                                   "cast(as_of as date) = ?", [user_id, day])
            prediction = frame.iloc[0].to_dict() if len(frame) else None
        batch = self.batch_of(snapshot, user_id, day)
        if batch is None:  # the state of that day is no longer kept: the twin's summary and the prediction only
            return {**{k: v for k, v in build_document(twin, [], prediction).items() if k != "what_helps"},
                    "detail": "summary"}
        beliefs, _, _ = online_twin(batch, user_id, pd.DataFrame(columns=["user_id", "belief", "category", "stat_a",
                                                                          "stat_b", "day"]))
        return {**build_document(twin, beliefs.to_dict("records"), prediction), "detail": "full"}

    def segment(self, name: str, limit: int, offset: int) -> dict[str, Any]:
        snapshot = self.serving.current()
        if not table_exists(snapshot.con, "simulation", "scenario_results"):
            raise HTTPException(404, "no scenario has been simulated in the serving copy")
        info = snapshot.frame("select scenario, segment, segment_filter, status, status_reason, as_of from "
                              "simulation.scenario_results where scenario = ?", [name])
        if info.empty:
            names = [r[0] for r in snapshot.cursor().execute(
                "select scenario from simulation.scenario_results order by 1").fetchall()]
            raise HTTPException(404, f"no scenario {name!r}; the scenarios are {names}")
        total = snapshot.one("select count(*) from simulation.scenario_user_effects where scenario = ?", [name])[0]
        users = snapshot.frame("select user_id, baseline_churn_probability, scenario_churn_probability, "
                               "churn_reduction, churn_reduction_lower_90, churn_reduction_upper_90 "
                               "from simulation.scenario_user_effects where scenario = ? "
                               "order by churn_reduction desc, user_id limit ? offset ?", [name, limit, offset])
        head = info.iloc[0]
        return {"scenario": name, "segment": head["segment"], "segment_filter": head["segment_filter"],
                "status": head["status"], "as_of": str(head["as_of"])[:10], "total": int(total), "offset": offset,
                "users": json.loads(users.round(6).to_json(orient="records"))}

    # observe()

    def observe(self, user_id: str, body: Any, received_at: datetime | None = None,
                wait: bool = False) -> tuple[int, dict[str, Any]]:
        """Record one event and fold it in; ``received_at`` (UTC, default now) sets its landing day. With ``wait``
        the user's document is refolded before returning, else just after (the API's way)."""
        received = received_at or now_utc()
        row = parse_event(user_id, body, received)
        if self.store.has(row["event_id"]):
            return 200, {"event_id": row["event_id"], "duplicate": True}
        day = received.date()
        path = self.landing.append(row, day)  # first the landing file: the batch run is the record
        self.store.add(row, day, stamp(received))
        self._pending_users.add(row["user_id"])
        out: dict[str, Any] = {"event_id": row["event_id"], "landing_file": str(path), "duplicate": False,
                               "updated_online_at": stamp(received)}
        if not self.serving.current().read.has(row["user_id"]):
            out["twin"] = "no twin yet: the event is recorded and the next batch run builds the twin"
        elif wait:
            self.document_text(row["user_id"])
        else:
            self._dirty.add(row["user_id"])
            self._wake.set()
        return 201, out

    def health(self) -> dict[str, Any]:
        snapshot = self.serving.current()
        return {"status": "ok", "serving_copy": str(snapshot.path), "as_of": str(snapshot.as_of),
                **snapshot.publication, "users_with_online_events": len(self._pending_users)}


def observe(settings: Settings, user_id: str, event: dict[str, Any],
            received_at: datetime | None = None) -> dict[str, Any]:
    """observe() from Python: fold one event into ``user_id``'s twin now and record it for the next batch run
    (the same as POST /users/{id}/events). Raises ``EventError`` with the reason for an event it refuses."""
    service = build_service(settings)
    try:
        return service.observe(user_id, event, received_at, wait=True)[1]
    finally:
        service.store.close()


def online_dir(settings: Settings) -> Path:
    return settings.online_dir or settings.warehouse_path.parent / "online"


def build_service(settings: Settings) -> TwinService:
    folder = online_dir(settings)
    return TwinService(ServingCopy(settings.serving_file, folder / f"snapshots-{os.getpid()}",
                                   read_store=settings.api_read_store),
                       OnlineStore(folder / "online.sqlite"),
                       LandingWriter(settings.landing_dir), settings)


def _user(user_id: str) -> str:
    try:
        return check_id(user_id)
    except EventError as exc:
        raise HTTPException(400, str(exc)) from exc


class BearerToken:
    """Requires ``Authorization: Bearer <token>`` on every route but /health. A plain ASGI middleware: Starlette's
    ``BaseHTTPMiddleware`` (``@app.middleware``) runs each request through an extra task and stream, which cost more
    than the document lookup itself under load."""

    def __init__(self, app: ASGIApp, token: str):
        self.app, self.expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/health":
            given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            if not hmac.compare_digest(given, self.expected):
                response = JSONResponse({"detail": "missing or wrong bearer token (Authorization: Bearer <token>)"},
                                        status_code=401, headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class DocumentReads:
    """``GET /users/{id}/twin`` of a user without online events, answered with the stored text before FastAPI's
    routing; anything else (a bad id, an unknown user, pending events, no copy yet) goes on to the app, which answers
    it. Under uvicorn on the loaded benchmark machine a bare ASGI answer cost 0.36 ms of server CPU a request, the
    same read through the router about 1.0 ms."""

    def __init__(self, app: ASGIApp, service: TwinService):
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            parts = scope["path"].split("/")
            if len(parts) == 4 and parts[1] == "users" and parts[3] == "twin":
                text = None
                with suppress(EventError, NoServingCopy):  # the app answers these with their reasons
                    text = self.service.batch_text(check_id(parts[2]))
                if text is not None:
                    body = text.encode()
                    await send({"type": "http.response.start", "status": 200,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)


def create_app(settings: Settings) -> FastAPI:
    """The API over ``settings``' serving copy, online store and landing folder (bearer token: settings.api_token)."""
    service = build_service(settings)
    app = FastAPI(title="dagster-twins twin API", version="1",
                  description="Per-user twin documents from the serving copy, and observe() between runs.")
    app.state.service = service
    app.add_middleware(DocumentReads, service=service)  # inside the token check, added after it (outermost)
    if settings.api_token:
        app.add_middleware(BearerToken, token=settings.api_token)

    @app.exception_handler(NoServingCopy)
    async def no_copy(_request: Request, exc: NoServingCopy):
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(EventError)
    async def bad_event(_request: Request, exc: EventError):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return service.health()

    @app.get("/users/{user_id}/twin")
    async def twin(user_id: str) -> Response:
        # A document without pending events was answered by DocumentReads; here: a user with online events
        # (refolded in the pool), or the reason there is no document (400, 404, 503).
        return Response(await run_in_threadpool(service.document_text, _user(user_id)), media_type="application/json")

    @app.get("/users/{user_id}/twin/context", response_class=PlainTextResponse)
    def context(user_id: str) -> str:
        return context_block(json.loads(service.document_text(_user(user_id))))

    @app.get("/users/{user_id}/twin/as-of/{day}")
    def as_of(user_id: str, day: str) -> Response:
        try:
            parsed = date.fromisoformat(day)
        except ValueError as exc:
            raise HTTPException(400, f"day: {day!r} is not a date (YYYY-MM-DD)") from exc
        return Response(to_json(service.as_of_document(_user(user_id), parsed)), media_type="application/json")

    @app.get("/segments/{name}/users")
    def segment(name: str, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        if not 1 <= limit <= SEGMENT_PAGE or offset < 0:
            raise HTTPException(400, f"limit must be 1..{SEGMENT_PAGE} and offset >= 0")
        return service.segment(_user(name), limit, offset)

    @app.post("/users/{user_id}/events", status_code=201)
    async def events(user_id: str, request: Request) -> Response:
        raw = await request.body()
        if len(raw) > BODY_LIMIT:
            raise HTTPException(413, f"the body is {len(raw):,} bytes; an event is at most {BODY_LIMIT:,}")
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HTTPException(400, f"the body is not JSON: {exc}") from exc
        user = _user(user_id)
        status, out = await run_in_threadpool(service.observe, user, body)
        return JSONResponse(out, status_code=status)

    return app


def serve(settings: Settings) -> None:
    """Run the API with uvicorn on settings.api_host:api_port (127.0.0.1:8765 unless configured)."""
    import uvicorn

    started = time.perf_counter()
    app = create_app(settings)
    try:  # open the serving copy (and build its read store) before taking requests
        app.state.service.serving.current()
    except NoServingCopy as exc:
        print(f"no serving copy yet, answering 503 until one is published: {exc}", flush=True)
    print(f"twin API on http://{settings.api_host}:{settings.api_port} (serving copy {settings.serving_file}; "
          f"online store {online_dir(settings)}; token {'required' if settings.api_token else 'off'}); "
          f"ready in {time.perf_counter() - started:.1f} s", flush=True)
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, log_level="warning", access_log=False,
                timeout_keep_alive=30,  # clients keep connections; 5 s (the default) closed them under load
                proxy_headers=False)  # bound to a local address: no proxy's forwarded headers to read


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (the OS picks it)."""
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextmanager
def server_process(settings: Settings, ready_within: float = 900.0, pids: list[int] | None = None) -> Iterator[str]:
    """`dagster-twins serve` for ``settings`` in a child process, on a free port unless ``settings.api_port`` is
    set; yields its base URL once /health answers and stops it (by its own process id) on exit. For tests and the
    benchmark (which measures the server's CPU time: its process id is appended to ``pids``)."""
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    port = settings.api_port or free_port(settings.api_host)
    env = {**os.environ, **settings.dbt_environ(), "TWINS_SERVING_PATH": str(settings.serving_file),
           "TWINS_LANDING_DIR": str(settings.landing_dir), "TWINS_API_HOST": settings.api_host,
           "TWINS_API_PORT": str(port), "TWINS_ONLINE_DIR": str(online_dir(settings)),
           "TWINS_SETTINGS": str(settings.settings_file or os.devnull)}
    if settings.api_read_store:
        env["TWINS_API_READ_STORE"] = str(settings.api_read_store)
    env.pop("TWINS_API_TOKEN", None)
    if settings.api_token:
        env["TWINS_API_TOKEN"] = settings.api_token
    proc = subprocess.Popen([sys.executable, "-m", "dagster_twins.cli", "serve"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if pids is not None:
        pids.append(proc.pid)
    url = f"http://{settings.api_host}:{port}"
    try:
        deadline = time.monotonic() + ready_within
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the API exited with {proc.returncode}: {proc.stdout.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=2):
                    break
            except urllib.error.HTTPError:
                break  # it answers (503: no serving copy yet)
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the API did not answer on {url} within {ready_within:.0f} s") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
