"""observe() between runs and the nightly reconcile.

The property: whatever part of a user's events was observed online before a batch run took them in, the twin
after the run that lands the rest equals the batch's twin from all of them; and the online twin before that run is
exactly what the batch would compute from the same state, priors and events. Then the real thing: events observed
through the Python function, a real pipeline run over their landing day while a real server is read, and the
batch's saved state equal to the online one.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import replace
from datetime import date, datetime, timedelta

import dagster as dg
import httpx
import jsonschema
import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dagster_twins.pipeline import run_pipeline
from dagster_twins.serving.publish import publish_serving_copy
from dagster_twins.twins.api import build_service, observe, server_process
from dagster_twins.twins.document import build_document, load_schema
from dagster_twins.twins.online import Batch, event_evidence, online_state, online_twin
from dagster_twins.twins.online_fold import (
    belief_rows,
    event_evidence_rows,
    fold_state,
    refold_document,
    state_from_rows,
    twin_fields,
)
from dagster_twins.twins.state import KEY, fold
from dagster_twins.twins.summarize import PriorInputs
from dagster_twins.twins.update import summarize_bucket
from dagster_twins.warehouse.tables import connect

D = date(2026, 3, 1)
HALF_LIFE = 30.0
CATEGORIES = {"topic_interest": ["music", "travel"], "channel_preference": ["ios", "web"],
              "format_preference": ["article", "video"], "goal": [], "rec_click": [], "campaign_response": [],
              "activity_rate": [], "purchase_rate": [], "ticket_rate": []}

event = st.fixed_dictionaries({
    "event_type": st.sampled_from(["view", "click", "purchase", "Search"]),
    "topic": st.sampled_from([None, "music", "Travel"]),
    "channel": st.sampled_from([None, "web", "ios"]),
    "content_format": st.sampled_from([None, "video", "article"]),
    "value": st.sampled_from([None, "9.99", "120.00"]),
    "day": st.integers(min_value=1, max_value=6),
})


def _rows(events: list[dict], first_id: int = 0) -> tuple[list[dict], dict[str, date]]:
    rows, landed = [], {}
    for i, e in enumerate(events, start=first_id):
        day = D + timedelta(days=e["day"])
        rows.append({"event_id": f"e{i}", "user_id": "u", "occurred_at": f"{day} 12:00:00+00:00", "text": None,
                     "item_id": None, **{k: e[k] for k in ("event_type", "topic", "channel", "content_format",
                                                           "value")}})
        landed[f"e{i}"] = day
    return rows, landed


def _evidence(events: list[dict], first_id: int = 0) -> pd.DataFrame:
    rows, landed = _rows(events, first_id)
    if not rows:
        return pd.DataFrame(columns=[*KEY, "stat_a", "stat_b", "day"])
    return event_evidence(rows, landed, ["purchase"])


def _sorted(state: pd.DataFrame) -> pd.DataFrame:
    return state.sort_values(KEY).reset_index(drop=True)[[*KEY, "stat_a", "stat_b", "n_evidence", "last_evidence_day"]]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=st.lists(event, max_size=6), events=st.lists(event, min_size=1, max_size=8), data=st.data())
def test_the_twin_after_the_run_is_the_batch_twin_whatever_was_observed_online_first(history, events, data):
    base_evidence = _evidence([{**e, "day": -e["day"]} for e in history], first_id=100)
    base = fold(pd.DataFrame(columns=[*KEY, "stat_a", "stat_b", "n_evidence", "last_evidence_day"])
                .astype({"stat_a": float, "stat_b": float, "n_evidence": float,
                         "last_evidence_day": "datetime64[ns]"}), None, base_evidence, D, HALF_LIFE)
    # The first k events landed before a batch run as of d1 took them in; the others were observed online after.
    k = data.draw(st.integers(min_value=0, max_value=len(events)))
    landed_first = sorted(events[:k], key=lambda e: e["day"])
    d1 = D + timedelta(days=max([e["day"] for e in landed_first], default=0))
    run1 = fold(base, D, _evidence(landed_first), d1, HALF_LIFE)
    pending = _evidence(events[k:], first_id=len(events))
    everything = _evidence(landed_first + events[k:])
    # Fixed priors, the same for both paths (the run's, from a population holding this user's evidence).
    users = pd.DataFrame({"user_id": ["u"], "first_day": [pd.Timestamp(D - timedelta(days=20))]})
    inputs = PriorInputs(users, CATEGORIES, D, HALF_LIFE)
    inputs.add(fold(base, D, everything, D + timedelta(days=7), HALF_LIFE))
    priors = inputs.estimate()
    batch = Batch(d1, run1, users["first_day"][0], priors, CATEGORIES, HALF_LIFE)
    online, as_of = online_state(batch, pending)
    straight = fold(base, D, everything, as_of, HALF_LIFE)
    # The nightly run folds the pending events onto its own state: the same as one batch over all of them.
    nightly = fold(run1, d1, pending, as_of, HALF_LIFE)
    for other in (nightly, straight):
        pd.testing.assert_frame_equal(_sorted(online), _sorted(other), check_dtype=False, rtol=1e-9)
    # The twin read online is the batch's summary of that state under the same priors.
    beliefs, twin, _ = online_twin(batch, "u", pending)
    expected_beliefs, expected_twin = summarize_bucket(straight, users, CATEGORIES, priors, as_of, HALF_LIFE)
    pd.testing.assert_frame_equal(beliefs.sort_values(["belief", "category"]).reset_index(drop=True),
                                  expected_beliefs.sort_values(["belief", "category"]).reset_index(drop=True),
                                  check_dtype=False, rtol=1e-9)
    assert len(twin) == len(expected_twin) == 1
    assert np.isclose(twin["overall_confidence"].iloc[0], expected_twin["overall_confidence"].iloc[0])


def test_observed_events_reconcile_with_the_nightly_run_while_reads_go_on(built_copy, tmp_path):
    settings_, demo = built_copy
    settings_ = replace(settings_, landing_dir=tmp_path / "landing", serving_path=tmp_path / "serving" /
                        "warehouse.duckdb", online_dir=tmp_path / "online", api_port=0, settings_file=None)
    shutil.copytree(demo.landing_dir, settings_.landing_dir)
    publish_serving_copy(settings_.warehouse_path, settings_.serving_file, "before")
    con = connect(settings_.serving_file, read_only=True)
    users = [r[0] for r in con.execute("select user_id from twins.user_documents order by user_id limit 3").fetchall()]
    con.close()
    observed, bystander = users[:2], users[2]
    next_day = demo.end_date + timedelta(days=1)
    received = datetime.combine(next_day, datetime.min.time()) + timedelta(hours=9)
    for user in observed:
        bodies = [{"event_type": "view", "topic": "travel", "channel": "web", "content_format": "video"},
                  {"event_type": "purchase", "value": 12.5, "channel": "ios"},
                  {"event_type": "click", "topic": "music"}]
        for i, body in enumerate(bodies):
            out = observe(settings_, user, {**body, "event_id": f"obs-{user}-{i}",
                                            "occurred_at": (received + timedelta(minutes=i)).isoformat()}, received)
            assert out["updated_online_at"] and not out["duplicate"]
    # What the online twin folded, to compare with what the batch will save.
    service = build_service(settings_)
    snapshot = service.serving.current()
    expected = {}
    for user in observed:
        pending = service.store.pending(user)
        evidence = event_evidence([p[0] for p in pending], {p[0]["event_id"]: p[1] for p in pending}, ["purchase"])
        expected[user] = online_state(service.batch_of(snapshot, user, snapshot.as_of), evidence)
    service.store.close()
    validator = jsonschema.Draft202012Validator(load_schema())

    with server_process(settings_) as url, httpx.Client(base_url=url, timeout=60) as client:
        before = client.get(f"/users/{observed[0]}/twin").json()
        assert before["online_events"] == 3 and before["as_of"] == str(next_day)
        answers: list[tuple[int, bool]] = []
        stop = threading.Event()

        def read() -> None:
            while not stop.is_set():
                for user in (*observed, bystander):
                    response = client.get(f"/users/{user}/twin")
                    answers.append((response.status_code, response.status_code == 200
                                    and validator.is_valid(response.json())))

        reader = threading.Thread(target=read)
        reader.start()
        try:
            result = run_pipeline(settings_, next_day, next_day, instance=dg.DagsterInstance.ephemeral())
        finally:
            stop.set()
            reader.join()
        assert result.success
        assert answers and all(status == 200 and valid for status, valid in answers), \
            sorted({a for a in answers if a != (200, True)})
        # The server opens the new copy beside the old one (and builds its read store), then switches.
        for _ in range(1200):
            health = client.get("/health").json()
            if health["run_id"] == result.run_id:
                break
            time.sleep(0.05)
        assert health["run_id"] == result.run_id and health["users_with_online_events"] == 0
        con = connect(settings_.serving_file, read_only=True)
        try:
            for user in observed:
                after = client.get(f"/users/{user}/twin").json()
                stored = json.loads(con.execute("select document from twins.user_documents where user_id = ?",
                                                [user]).fetchone()[0])
                assert after == stored and "updated_online_at" not in after and after["as_of"] == str(next_day)
                state, as_of = expected[user]
                assert as_of == next_day
                saved = con.execute("select user_id, belief, category, stat_a, stat_b, n_evidence, last_evidence_day "
                                    "from twins.belief_state where as_of = ? and user_id = ?", [next_day, user]).df()
                pd.testing.assert_frame_equal(_sorted(saved), _sorted(state), check_dtype=False, rtol=1e-9)
        finally:
            con.close()
    # The events landed as any landing file does, once each.
    rows = [json.loads(line) for line in (settings_.landing_dir / "events" / f"observed-{next_day}.jsonl")
            .read_text().splitlines()]
    assert sorted(r["event_id"] for r in rows) == sorted(f"obs-{u}-{i}" for u in observed for i in range(3))


def test_users_refolded_together_get_what_each_gets_alone():
    # The API's refolder folds every user observed since its last pass at once (online_twins); each must come out
    # as its own refold would (online_twin), whatever the others' events and as-of days.
    from dagster_twins.twins.online import online_twins

    history = [{"event_type": t, "topic": "music", "channel": c, "content_format": "video", "value": None, "day": -d}
               for d in (1, 3) for t in ("view", "click") for c in ("web", "ios")]
    evidence = _evidence(history, first_id=100)
    base = fold(evidence.iloc[:0].drop(columns="day").assign(n_evidence=0.0, last_evidence_day=pd.NaT),
                None, evidence, D, HALF_LIFE)
    states = pd.concat([base.assign(user_id=u) for u in ("a", "b", "c")], ignore_index=True)
    users = pd.DataFrame({"user_id": ["a", "b", "c"],
                          "first_day": pd.to_datetime(["2026-02-01", "2026-02-10", "2026-02-20"])})
    inputs = PriorInputs(users, CATEGORIES, D, HALF_LIFE)
    inputs.add(states)
    priors = inputs.estimate()
    pending = pd.concat([_evidence([{**history[0], "day": 1}], first_id=200).assign(user_id="a"),
                         _evidence([{**history[1], "day": 3, "topic": "travel"}], first_id=300).assign(user_id="b")])
    together = Batch(D, states, users["first_day"][0], priors, CATEGORIES, HALF_LIFE)
    results = list(online_twins(together, users, pending))
    assert sorted(d for _, _, d in results) == [D, D + timedelta(days=1), D + timedelta(days=3)]  # one per as-of
    beliefs = pd.concat([b for b, _, _ in results], ignore_index=True)
    for user, first in zip(users["user_id"], users["first_day"], strict=True):
        alone = Batch(D, states[states["user_id"] == user], first, priors, CATEGORIES, HALF_LIFE)
        expected, _, _ = online_twin(alone, user, pending[pending["user_id"] == user])
        got = beliefs[beliefs["user_id"] == user]
        pd.testing.assert_frame_equal(got.sort_values(["belief", "category"]).reset_index(drop=True),
                                      expected.sort_values(["belief", "category"]).reset_index(drop=True),
                                      check_dtype=False, rtol=1e-12)


# The one-user refold on dicts (online_fold): each step equal to its batch counterpart on frames.

def _as_frame(state: dict) -> pd.DataFrame:
    return pd.DataFrame([{"user_id": "u", "belief": b, "category": c, "stat_a": a, "stat_b": s, "n_evidence": n,
                          "last_evidence_day": pd.Timestamp(d) if d else pd.NaT}
                         for (b, c), (a, s, n, d) in state.items()],
                        columns=[*KEY, "stat_a", "stat_b", "n_evidence", "last_evidence_day"]) \
        .astype({"stat_a": float, "stat_b": float, "n_evidence": float, "last_evidence_day": "datetime64[ns]"})


def _close(got, expected, path="") -> None:
    """Two JSON-like values equal, numbers to 1e-9 relative (sums taken in another order differ in the last bit)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(expected), path
        for key in expected:
            _close(got[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), path
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            _close(g, e, f"{path}[{i}]")
    elif isinstance(expected, float) and not isinstance(expected, bool):
        assert np.isclose(got, expected, rtol=1e-9, atol=1e-4 if "." in path else 0), (path, got, expected)
    else:
        assert got == expected, (path, got, expected)


extra_event = st.fixed_dictionaries({
    "event_type": st.sampled_from(["view", "click", "purchase", "Search", "rec_shown", "rec_clicked",
                                   "campaign_sent", "ticket_opened", "refund"]),
    "topic": st.sampled_from([None, "music", "Travel", ""]),
    "channel": st.sampled_from([None, "web", "ios", "Email"]),
    "content_format": st.sampled_from([None, "video", "article"]),
    "value": st.sampled_from([None, "0.00", "9.99", "120.00"]),
    "day": st.integers(min_value=1, max_value=6),
})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=st.lists(event, max_size=6), events=st.lists(extra_event, min_size=1, max_size=8),
       late=st.integers(min_value=0, max_value=2))
def test_the_one_user_refold_equals_the_batch_functions(history, events, late):
    # Evidence: the same rows as the batch's query, a landing day earlier than an event's clipping it.
    rows, landed = _rows(events)
    landed = {k: v - timedelta(days=late) for k, v in landed.items()}
    expected = event_evidence(rows, landed, ["purchase", "refund"])
    got = event_evidence_rows(rows, landed, ["purchase", "refund"]).get("u", {})
    assert sorted((b, c, d, a, s) for (b, c, d), (a, s) in got.items()) == sorted(
        (r.belief, r.category, r.day.date(), r.stat_a, r.stat_b) for r in expected.itertuples())
    # The fold: equal to state.fold, and folding the events one at a time equals folding them all at once.
    base_evidence = _evidence([{**e, "day": -e["day"]} for e in history], first_id=100)
    base = fold(_as_frame({}), None, base_evidence, D, HALF_LIFE)
    state = state_from_rows(base.drop(columns="user_id").assign(
        last_evidence_day=base["last_evidence_day"].dt.strftime("%Y-%m-%d").where(base["last_evidence_day"].notna()))
        .to_numpy().tolist())
    as_of = max([D, *(d for _, _, d in got)])
    online = fold_state(state, D, got, as_of, HALF_LIFE)
    pd.testing.assert_frame_equal(_sorted(_as_frame(online)), _sorted(fold(base, D, expected, as_of, HALF_LIFE)),
                                  check_dtype=False, rtol=1e-12)
    # Events landed the day they happened (an early landing day clips against the user's latest landing day, which
    # one event alone does not know), one at a time, fold to the statistics all of them fold to at once (not the raw
    # count n_evidence: a day's row counts its trials if any, else its successes, so a day's rec_shown and
    # rec_clicked count 1 together and 2 apart, in the batch too; the refold takes a user's pending events together).
    on_time = {r["event_id"]: date.fromisoformat(r["occurred_at"][:10]) for r in rows}
    together = event_evidence_rows(rows, on_time, ["purchase", "refund"]).get("u", {})
    end = max([D, *(d for _, _, d in together)])
    one_by_one, day = state, D
    for row in rows:
        single = event_evidence_rows([row], on_time, ["purchase", "refund"]).get("u", {})
        next_day = max([day, *(d for _, _, d in single)])
        one_by_one, day = fold_state(one_by_one, day, single, next_day, HALF_LIFE), next_day
    pd.testing.assert_frame_equal(_sorted(_as_frame(fold_state(one_by_one, day, {}, end, HALF_LIFE))).drop(
        columns="n_evidence"), _sorted(_as_frame(fold_state(state, D, together, end, HALF_LIFE))).drop(
        columns="n_evidence"), check_dtype=False, rtol=1e-12)
    # The summary: the batch's beliefs and roll-up of that state under the same priors, and so the document.
    users = pd.DataFrame({"user_id": ["u"], "first_day": [pd.Timestamp(D - timedelta(days=20))]})
    inputs = PriorInputs(users, CATEGORIES, D, HALF_LIFE)
    inputs.add(fold(base, D, expected, D + timedelta(days=7), HALF_LIFE))
    priors = inputs.estimate()
    batch_beliefs, batch_twin = summarize_bucket(_as_frame(online), users, CATEGORIES, priors, as_of, HALF_LIFE)
    beliefs = belief_rows(online, "u", users["first_day"][0].date(), CATEGORIES, priors, as_of, HALF_LIFE)
    pd.testing.assert_frame_equal(
        pd.DataFrame(beliefs).astype({"last_evidence_day": "datetime64[ns]", "as_of": "datetime64[ns]"}),
        batch_beliefs, check_dtype=False, rtol=1e-12)
    twin = twin_fields(beliefs, "u", as_of)
    reference = batch_twin.iloc[0].to_dict()
    for field in ("preferred_channel", "preferred_format", "overall_confidence"):
        assert twin[field] == reference[field] or np.isclose(twin[field], reference[field], rtol=1e-12), field
    pending = [(r, landed[r["event_id"]], f"2026-03-0{1 + i % 8}T12:00:00.000Z") for i, r in enumerate(rows)]
    touched = set(expected["belief"])
    reference_document = build_document(
        reference, batch_beliefs.assign(updated_online_at=np.where(batch_beliefs["belief"].isin(touched),
                                                                   max(p[2] for p in pending), None))
        .to_dict("records"), updated_online_at=max(p[2] for p in pending))
    base_document = {"user_id": "u", "churn": {"question": "churn"}}
    document = refold_document(base_document, state, D, users["first_day"][0].date(), pending, priors,
                               CATEGORIES, HALF_LIFE, ["purchase", "refund"])
    _close(json.loads(json.dumps(document)), json.loads(json.dumps(
        {**reference_document, "churn": {"question": "churn"}, "online_events": len(pending)}, default=str)))
