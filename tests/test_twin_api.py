"""The twin read API, over a real uvicorn server on 127.0.0.1 that each test module starts and stops: reads,
as-of, segments, the context block, observe() then read, 4xx with a reason (never a 500), the token."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import httpx
import jsonschema
import pytest

from dagster_twins.twins.api import REFOLD_CPU_SHARE, refold_pause, server_process
from dagster_twins.twins.document import load_schema
from dagster_twins.warehouse.tables import connect

VALIDATOR = jsonschema.Draft202012Validator(load_schema())


def api_settings(built_settings, root: Path, **changes):
    """Settings whose serving copy is a private copy of the built one, with their own landing and online folders."""
    serving = root / "serving" / "warehouse.duckdb"
    serving.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(built_settings.serving_file, serving)
    return replace(built_settings, warehouse_path=root / "warehouse.duckdb", serving_path=serving,
                   landing_dir=root / "landing", online_dir=root / "online", api_port=0, settings_file=None,
                   **changes)


@pytest.fixture(scope="module")
def api(built, tmp_path_factory):
    settings = api_settings(built[0], tmp_path_factory.mktemp("api"))
    with server_process(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client, settings


def _stored(settings, user_id: str | None = None) -> tuple[str, dict]:
    con = connect(settings.serving_file, read_only=True)
    try:
        sql = "select user_id, document from twins.user_documents "
        row = con.execute(sql + ("where user_id = ?" if user_id else "order by user_id limit 1"),
                          [user_id] if user_id else []).fetchone()
    finally:
        con.close()
    return row[0], json.loads(row[1])


def test_a_twin_reads_as_stored_and_validates(api):
    client, settings = api
    user, stored = _stored(settings)
    response = client.get(f"/users/{user}/twin")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.json() == stored and VALIDATOR.is_valid(response.json())
    context = client.get(f"/users/{user}/twin/context")
    assert context.status_code == 200 and context.text.startswith(f"User {user}, twin as of {stored['as_of']}")
    health = client.get("/health").json()
    assert health["as_of"] == stored["as_of"] and health["run_id"]


def test_as_of_recomputes_the_twin_from_the_state_of_that_day(api):
    client, settings = api
    user, stored = _stored(settings)
    response = client.get(f"/users/{user}/twin/as-of/{stored['as_of']}")
    assert response.status_code == 200
    doc = response.json()
    assert doc["detail"] == "full" and doc["beliefs"] == stored["beliefs"]
    # The prediction's history keeps every number but not the drivers.
    assert doc["churn"] == {k: v for k, v in stored["churn"].items() if k != "drivers"}
    missing = client.get(f"/users/{user}/twin/as-of/2001-01-01")
    assert missing.status_code == 404 and "history holds 1 day(s)" in missing.json()["detail"]


def test_a_segment_lists_its_users(api):
    client, settings = api
    con = connect(settings.serving_file, read_only=True)
    try:
        name, total = con.execute("select scenario, count(*) from simulation.scenario_user_effects group by 1 "
                                  "order by 2 desc limit 1").fetchone()
    finally:
        con.close()
    page = client.get(f"/segments/{name}/users", params={"limit": 5}).json()
    assert page["total"] == total and len(page["users"]) == min(5, total) and page["segment"]
    reductions = [u["churn_reduction"] for u in page["users"]]
    assert reductions == sorted(reductions, reverse=True)
    unknown = client.get("/segments/no_such_scenario/users")
    assert unknown.status_code == 404 and name in unknown.json()["detail"]


@pytest.mark.parametrize(("method", "path", "body", "status", "reason"), [
    ("GET", "/users/nobody/twin", None, 404, "no twin for user 'nobody'"),
    ("GET", "/users/%00bad/twin", None, 400, "control or invisible"),
    ("GET", "/users/" + "x" * 300 + "/twin", None, 400, "longer than 200"),
    ("GET", "/users/nobody/twin/as-of/yesterday", None, 400, "not a date"),
    ("GET", "/segments/x/users?limit=0", None, 400, "limit must be"),
    ("GET", "/segments/x/users?limit=abc", None, 422, "integer"),
    ("POST", "/users/u/events", b"not json", 400, "not JSON"),
    ("POST", "/users/u/events", b"[1, 2]", 422, "JSON object"),
    ("POST", "/users/u/events", b'{"event_type": "view", "colour": "red"}', 422, "unknown fields ['colour']"),
    ("POST", "/users/u/events", b'{"topic": "travel"}', 422, "event_type: required"),
    ("POST", "/users/u/events", b'{"event_type": "purchase", "value": -3}', 422, "outside 0"),
    ("POST", "/users/u/events", b'{"event_type": "purchase", "value": 1.234}', 422, "2 decimal places"),
    ("POST", "/users/u/events", b'{"event_type": "view", "occurred_at": "soon"}', 422, "not an ISO 8601"),
    ("POST", "/users/u/events", b'{"event_type": "view", "occurred_at": "2999-01-01T00:00:00Z"}', 422,
     "not plausible"),
    ("POST", "/users/u/events", b'{"event_type": "view", "user_id": "v"}', 422, "the body names 'v'"),
    ("POST", "/users/u/events", b'{"event_type": "' + b"v" * 70_000 + b'"}', 413, "at most"),
])
def test_bad_requests_get_a_4xx_with_a_reason(api, method, path, body, status, reason):
    client, _ = api
    response = client.request(method, path, content=body)
    assert response.status_code == status, response.text
    assert reason in json.dumps(response.json()["detail"])


def test_observe_then_read_reflects_the_event_and_records_it(api):
    client, settings = api
    user, stored = _stored(settings)
    event = {"event_id": "test-observe-1", "event_type": "View", "topic": "Travel", "channel": "web",
             "content_format": "video"}
    posted = client.post(f"/users/{user}/events", json=event)
    assert posted.status_code == 201, posted.text
    assert posted.json()["updated_online_at"] and not posted.json()["duplicate"]
    doc = client.get(f"/users/{user}/twin").json()
    assert VALIDATOR.is_valid(doc), next(VALIDATOR.iter_errors(doc)).message
    assert doc["online_events"] == 1 and doc["updated_online_at"] == posted.json()["updated_online_at"]
    touched = {name for name, b in doc["beliefs"].items() if "updated_online_at" in b}
    assert {"activity_rate", "channel_preference", "format_preference"} <= touched
    assert "rec_click" not in touched and doc["churn"] == stored["churn"]
    # One more user-initiated interaction, one more raw observation of activity than the batch had.
    raw = doc["beliefs"]["activity_rate"]["evidence"]["raw"]
    assert raw == stored["beliefs"]["activity_rate"]["evidence"]["raw"] + 1
    # A retry of the same event changes nothing.
    again = client.post(f"/users/{user}/events", json=event)
    assert again.status_code == 200 and again.json()["duplicate"]
    assert client.get(f"/users/{user}/twin").json()["online_events"] == 1
    # The event waits in the landing folder, in the contract's columns, for the next batch run.
    rows = [json.loads(line) for f in (settings.landing_dir / "events").glob("observed-*.jsonl")
            for line in f.read_text().splitlines()]
    assert [r["event_id"] for r in rows] == ["test-observe-1"] and rows[0]["user_id"] == user


def test_the_token_is_enforced_when_set(built, tmp_path):
    settings = api_settings(built[0], tmp_path, api_token="s3cret-token")
    user, _ = _stored(settings)
    with server_process(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.get(f"/users/{user}/twin").status_code == 401
        wrong = client.get(f"/users/{user}/twin", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "bearer token" in wrong.json()["detail"]
        assert client.post(f"/users/{user}/events", json={"event_type": "view"}).status_code == 401
        right = client.get(f"/users/{user}/twin", headers={"Authorization": "Bearer s3cret-token"})
        assert right.status_code == 200 and right.json()["user_id"] == user
        assert client.get("/health").status_code == 200  # no user data: open


def test_no_serving_copy_yet_is_a_503_with_the_way_out(built, tmp_path):
    settings = replace(api_settings(built[0], tmp_path), serving_path=tmp_path / "none" / "warehouse.duckdb")
    with server_process(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        response = client.get("/users/u/twin")
        assert response.status_code == 503 and "run the pipeline" in response.json()["detail"]


def test_the_benchmark_clones_documents_into_a_read_store_the_api_serves(built, tmp_path):
    # bench --api's clones: every source document again under <id>~k (its user_id too), in the API's read-store
    # format; the API answers from it (api_read_store) and folds an event into a clone's cloned state.
    import sqlite3

    from dagster_twins.tools.bench_api import cloned_read_store

    settings = api_settings(built[0], tmp_path)
    con = connect(settings.serving_file, read_only=True)
    try:
        sources = dict(con.execute("select user_id, document from twins.user_documents").fetchall())
    finally:
        con.close()
    users = 2 * len(sources) + 7
    out = cloned_read_store(settings.serving_file, tmp_path / "read.sqlite", users)
    assert out["users"] == users and out["cloned_from"] == len(sources)
    assert out["note"].startswith(f"{users:,} documents cloned from a {len(sources):,}-user built serving copy")
    with sqlite3.connect(tmp_path / "read.sqlite") as lite:
        rows = lite.execute("select user_id, document, state, first_day from twins").fetchall()
    assert len(rows) == users and [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert sorted(r[0] for r in rows if r[0].endswith("~2")) == [f"{u}~2" for u in sorted(sources)[:7]]
    for key, document, state, first_day in rows[:50]:
        source = key.rsplit("~", 1)[0]
        assert json.loads(document) == {**json.loads(sources[source]), "user_id": key}
        assert json.loads(state) and first_day
    clone = next(r[0] for r in rows if r[0].endswith("~1"))
    with server_process(replace(settings, api_read_store=tmp_path / "read.sqlite")) as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        doc = client.get(f"/users/{clone}/twin").json()
        assert doc["user_id"] == clone and VALIDATOR.is_valid(doc)
        posted = client.post(f"/users/{clone}/events", json={"event_type": "view", "channel": "web"})
        assert posted.status_code == 201, posted.text
        after = client.get(f"/users/{clone}/twin").json()
        assert after["online_events"] == 1 and VALIDATOR.is_valid(after)
        assert after["beliefs"]["activity_rate"]["evidence"]["raw"] == doc["beliefs"]["activity_rate"]["evidence"][
            "raw"] + 1
        assert client.get("/users/not-a-clone~99/twin").status_code == 404


@pytest.mark.parametrize("share", [REFOLD_CPU_SHARE, 0.5, 0.1, 1.0])
def test_the_refolder_rests_so_that_it_takes_its_share_of_a_core(share):
    """Work c, then rest: c / (c + rest) is the share, whatever the refold cost (a share of 1 never rests)."""
    for cpu in (0.0005, 0.002, 0.04):
        rest = refold_pause(cpu, share)
        assert cpu / (cpu + rest) == pytest.approx(share)
    assert refold_pause(-1e-6, share) == 0.0  # a clock's rounding never asks for a negative rest
