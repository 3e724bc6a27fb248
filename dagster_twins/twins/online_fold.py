"""The online refold of one user on dicts and small arrays: what observe() and a read of an observed user run.

The batch path (``online.event_evidence`` -> ``state.fold`` -> ``update.summarize_bucket``) works on frames; for one
user and a few events its fixed costs (a DuckDB query, pandas group-bys and frame building) came to about 37 ms of
CPU an event. Here the same steps run on a user's handful of rows:

- ``event_evidence_rows``: the daily evidence of landing rows of ``events``, as ``catalog.evidence_sql`` counts it
  over the columns ``marts.fct_events`` gives an ``events`` row (codes lower-cased, spend the value of a purchase
  type, a day clipped to the user's latest landing day);
- ``fold_state``: the closed-form update of the decayed sufficient statistics: each (belief, category) of the state
  decays by ``0.5 ** (days elapsed / half-life)`` and each evidence row adds its counts times the weight of its own
  day's age; ``n_evidence`` adds the raw count and ``last_evidence_day`` the latest day with evidence;
- ``belief_rows``: each belief summarized through ``summarize.belief_columns``, the function the batch's
  ``posteriors`` calls, on (1 x categories) arrays;
- ``twin_fields``: what the document reads of the ``roll_up`` row.

``tests/test_twin_online.py`` holds each equal to its batch counterpart on random histories and events (and a
fold of the events one at a time equal to the batch's fold of all of them), so the online twin stays the batch's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

import numpy as np

from dagster_twins.twins.catalog import BELIEFS
from dagster_twins.twins.document import build_document
from dagster_twins.twins.families import decay_factor
from dagster_twins.twins.state import decayed_days
from dagster_twins.twins.summarize import Priors, belief_columns, summarized_beliefs

# (belief, category) -> [stat_a, stat_b, n_evidence, last_evidence_day or None]
State = dict[tuple[str, str], list[Any]]
# (belief, category, day) -> [stat_a, stat_b]: undecayed daily sums
Evidence = dict[tuple[str, str, date], list[float]]
# The share beliefs and the event field whose values are their categories (catalog: dimension).
SHARE_FIELDS = {b.name: b.dimension for b in BELIEFS.values() if b.family == "dirichlet"}


def _code(value: Any) -> str | None:
    """A code as staging keeps it: lower-cased, empty as missing."""
    return (value or "").lower() or None


def _counts(row: Mapping[str, Any], purchases: set[str]) -> Iterable[tuple[str, str, int, int]]:
    """(belief, category, stat_a, stat_b) of one ``events`` landing row, as ``evidence_sql``'s branches count it
    (an events row is user-initiated; it carries no goal: goals come from text, matched in dbt)."""
    kind = row["event_type"].lower()
    fields = {"topic": _code(row.get("topic")), "channel": _code(row.get("channel")),
              "content_format": _code(row.get("content_format")), "goal": None}
    if kind in ("rec_clicked", "rec_shown"):
        yield "rec_click", "", int(kind == "rec_clicked"), int(kind == "rec_shown")
    if kind in ("campaign_sent", "click"):
        yield "campaign_response", "", int(kind == "click" and fields["channel"] == "email"), \
            int(kind == "campaign_sent")
    yield "activity_rate", "", 1, 0
    spend = float(row.get("value") or 0) if kind in purchases else 0.0
    if spend > 0 or kind == "purchase":
        yield "purchase_rate", "", 1, 0
    if kind == "ticket_opened":
        yield "ticket_rate", "", 1, 0
    for name, field in SHARE_FIELDS.items():
        if fields[field] is not None:
            yield name, fields[field], 1, 0


def event_evidence_rows(rows: Iterable[Mapping[str, Any]], landed_on: Mapping[str, date],
                        purchase_event_types: Iterable[str]) -> dict[str, Evidence]:
    """Each user's daily evidence of landing rows of ``events`` (``online.event_evidence`` on dicts)."""
    purchases = {t.lower() for t in purchase_event_types}
    rows = list(rows)
    latest: dict[str, date] = {}
    for row in rows:
        day = landed_on[row["event_id"]]
        latest[row["user_id"]] = max(latest.get(row["user_id"], day), day)
    out: dict[str, Evidence] = {}
    for row in rows:
        user = row["user_id"]
        day = min(date.fromisoformat(row["occurred_at"][:10]), latest[user])
        evidence = out.setdefault(user, {})
        for name, category, a, b in _counts(row, purchases):
            sums = evidence.setdefault((name, category, day), [0.0, 0.0])
            sums[0] += a
            sums[1] += b
    return {user: {k: v for k, v in evidence.items() if v[0] > 0 or v[1] > 0} for user, evidence in out.items()}


def state_from_rows(rows: Iterable[Iterable[Any]]) -> State:
    """A state from the read store's rows [belief, category, stat_a, stat_b, n_evidence, last_evidence_day]."""
    return {(str(b), str(c)): [float(a), float(s), float(n), date.fromisoformat(str(d)[:10]) if d else None]
            for b, c, a, s, n, d in rows}


def fold_state(state: State, state_as_of: date, evidence: Evidence, as_of: date, half_life_days: float) -> State:
    """``state.fold`` for one user: the state decayed from ``state_as_of`` to ``as_of``, plus each evidence row
    weighted by the age of its own day (decay weights compose, so folding events one at a time, or all at once,
    or in the batch, gives the same statistics)."""
    if as_of < state_as_of:
        raise ValueError(f"cannot advance a state as of {state_as_of} back to {as_of}")
    w = float(decay_factor(float((as_of - state_as_of).days), half_life_days))
    out = {key: [a * w, b * w, n, last] for key, (a, b, n, last) in state.items()}
    for (name, category, day), (a, b) in evidence.items():
        if day > as_of:
            raise ValueError(f"evidence after {as_of} cannot be folded into a state as of {as_of}")
        wd = float(decay_factor(float((as_of - day).days), half_life_days))
        row = out.setdefault((name, category), [0.0, 0.0, 0.0, None])
        row[0] += a * wd
        row[1] += b * wd
        row[2] += b if b > 0 else a
        if a * wd > 0 or b * wd > 0:
            row[3] = day if row[3] is None else max(row[3], day)
    return out


def belief_rows(state: State, user_id: str, first_day: date, categories: dict[str, list[str]], priors: Priors,
                as_of: date, half_life_days: float) -> list[dict[str, Any]]:
    """The user's ``user_beliefs`` rows (as dicts, in the batch's order), through the batch's own summary of each
    belief (``summarize.belief_columns``)."""
    exposure = decayed_days(np.array([max((as_of - first_day).days + 1, 0)]), half_life_days)  # exposure_days
    out = []
    for name, cats in summarized_beliefs(categories):
        if name not in priors.params:
            continue
        m = {"stat_a": np.zeros((1, len(cats))), "stat_b": np.zeros((1, len(cats))),
             "n_evidence": np.zeros((1, len(cats))), "last_evidence_day": np.full((1, len(cats)), None, dtype=object)}
        for j, category in enumerate(cats):
            if (name, category) in state:
                a, b, n, last = state[(name, category)]
                m["stat_a"][0, j], m["stat_b"][0, j], m["n_evidence"][0, j] = a, b, n
                m["last_evidence_day"][0, j] = last
        columns, keep = belief_columns(name, m, exposure, priors.params[name])
        family = BELIEFS[name].family
        for j, category in enumerate(cats):
            if keep[j]:
                out.append({"user_id": user_id, "belief": name, "category": category, "family": family,
                            **{k: v[j].item() if isinstance(v[j], np.generic) else v[j] for k, v in columns.items()},
                            "as_of": as_of})
    return out


def twin_fields(rows: list[dict[str, Any]], user_id: str, as_of: date) -> dict[str, Any]:
    """What ``build_document`` reads of the user's ``roll_up`` row, from their belief rows: the top channel and
    format (highest posterior mean, the first category on a tie), the overall confidence (each belief's mean
    confidence, averaged over the beliefs with a row) and the last day with evidence."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_name.setdefault(row["belief"], []).append(row)

    def top(name: str) -> str | None:
        ranked = by_name.get(name, [])
        return max(ranked, key=lambda r: r["mean"])["category"] if ranked else None  # max keeps the first on a tie

    confidences = [float(np.mean([r["confidence"] for r in group])) for group in by_name.values()]
    days = [r["last_evidence_day"] for r in rows if r["last_evidence_day"] is not None]
    return {"user_id": user_id, "last_updated": as_of, "last_evidence_day": max(days, default=None),
            "overall_confidence": float(np.nanmean(confidences)) if confidences else None,
            "preferred_channel": top("channel_preference"), "preferred_format": top("format_preference")}


def refold_document(base: dict[str, Any], state: State, state_as_of: date, first_day: date,
                    pending: list[tuple[dict[str, Any], date, str]], priors: Priors,
                    categories: dict[str, list[str]], half_life_days: float,
                    purchase_event_types: Iterable[str]) -> dict[str, Any]:
    """The user's document with their ``pending`` events (landing row, landing day, received at) folded onto
    their batch ``state``; churn, what helps and value stay the batch's (``base``'s), which the next run updates."""
    user_id = str(base["user_id"])
    evidence = event_evidence_rows([p[0] for p in pending], {p[0]["event_id"]: p[1] for p in pending},
                                   purchase_event_types).get(user_id, {})
    as_of = max([state_as_of, *(day for _, _, day in evidence)])
    rows = belief_rows(fold_state(state, state_as_of, evidence, as_of, half_life_days), user_id, first_day,
                       categories, priors, as_of, half_life_days)
    updated = max(p[2] for p in pending)
    touched = {name for name, _, _ in evidence}
    for row in rows:
        row["updated_online_at"] = updated if row["belief"] in touched else None
    document = build_document(twin_fields(rows, user_id, as_of), rows, updated_online_at=updated)
    for block in ("churn", "what_helps", "value"):  # not updated online: the batch's, as they were
        if block in base:
            document[block] = base[block]
    document["online_events"] = len(pending)
    return document
