"""The twin document: one JSON document a user, what a product or an AI agent reads about that user.

Built from a user's rows of ``twins.user_beliefs`` (every belief with its posterior, 90% interval, confidence and
evidence), their ``twins.user_twins`` row (the roll-up), their churn prediction and the scenarios that would help
them. Plain functions over frames and dicts, no Dagster: the daily asset and the read API's online update
(``dagster_twins.twins.online``) build documents with the same code.

The rule "no field without evidence" is kept by omission: a belief the user has no row of (no recommendation ever
shown, no campaign received) is absent, not null; a churn block is there only when the user has a prediction; the
optional ``value`` block only when ``twins.user_twins`` carries purchase/value columns (``VALUE_PREFIXES``). The
JSON schema is ``schema/twin-document.v1.json`` beside this file; field names are stable within a major version.

``context_block`` turns a document into a few plain sentences for a language model's prompt: deterministic (the
same document gives the same text, byte for byte) and built from the document alone.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from dagster_twins.twins.catalog import BELIEFS

SCHEMA_VERSION = "1"
SCHEMA_PATH = Path(__file__).with_name("schema") / "twin-document.v1.json"
KINDS = {"beta": "propensity", "gamma": "rate", "dirichlet": "share"}
# Optional predictive columns of twins.user_twins (purchases and value, from the value layer where it exists):
# every non-null column whose name starts with one of these goes into the document's ``value`` block as it is.
VALUE_PREFIXES = ("p_alive", "expected_purchases", "p_purchase_", "median_days_to_next_purchase", "expected_spend",
                  "value_")
_PREDICTION = re.compile(r"^p_(churn|return)_(\d+)d$")
TOP_CATEGORIES = 3  # categories of a share listed in the summary (goals, interests)
CONTEXT_BELIEFS = 4  # beliefs the context block names
# How the context block names a scalar belief (others: by their description).
CONTEXT_LABELS = {"rec_click": "Clicks a shown recommendation", "campaign_response": "Clicks a campaign email",
                  "activity_rate": "Interactions", "purchase_rate": "Purchases", "ticket_rate": "Support tickets"}
CONTEXT_HORIZON_DAYS = 30  # the context block states the risk at the horizon nearest this


def _num(value: Any, digits: int = 4) -> float | None:
    """A finite number rounded for JSON, or None (NaN, missing)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    number = float(value)
    return round(number, digits) if math.isfinite(number) else None


def _day(value: Any) -> str | None:
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return value[:10]
    return (value.date() if isinstance(value, datetime) else value).isoformat()


def _pruned(mapping: dict[str, Any]) -> dict[str, Any]:
    """The mapping without its missing values (no field without evidence)."""
    return {k: v for k, v in mapping.items() if v is not None and v != [] and v != {}}


def why(row: dict[str, Any]) -> str:
    """The evidence behind one belief row in words (the sentence of the view twins.belief_explanations)."""
    a, b, n = row["evidence_weighted"], row["exposure_weighted"], row["n_evidence"]
    p1, p2 = row["prior_1"], row["prior_2"]
    if row["family"] == "beta":
        return f"{a:.1f} successes in {b:.1f} trials (decayed; {n:.0f} raw); Beta({p1:.2f}, {p2:.2f}) prior"
    if row["family"] == "gamma":
        return f"{a:.1f} events in {b:.1f} days exposed (decayed; {n:.0f} raw); Gamma({p1:.2f}, {p2:.2f}) prior"
    return f"{a:.1f} of {b:.1f} observations here (decayed; {n:.0f} raw); Dirichlet prior {p1:.2f} of {p2:.2f}"


def _estimate(row: dict[str, Any], with_why: bool = True) -> dict[str, Any]:
    """One belief row's estimate; a share's category (``with_why`` False) leaves out ``exposure_weighted``, the
    share's total, which the share states once (it was a sixth of a document, repeated in every category)."""
    evidence = {"raw": _num(row["n_evidence"], 2), "weighted": _num(row["evidence_weighted"], 2)}
    if with_why:
        evidence["exposure_weighted"] = _num(row["exposure_weighted"], 2)
    out = {"mean": _num(row["mean"]), "lower_90": _num(row["lower_90"]), "upper_90": _num(row["upper_90"]),
           "confidence": _num(row["confidence"]), "evidence": _pruned(evidence)}
    last = _day(row.get("last_evidence_day"))
    if last:
        out["last_evidence_day"] = last
    if with_why:
        out["why"] = why(row)
    if row.get("updated_online_at"):
        out["updated_online_at"] = row["updated_online_at"]
    return out


def beliefs_block(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A user's belief rows (``user_beliefs`` columns) as the document's ``beliefs``: a scalar belief is one
    estimate; a share is its categories ranked by posterior mean (each with its estimate and evidence), with the
    belief's confidence (their mean) and one sentence of evidence for the whole share."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_name.setdefault(row["belief"], []).append(row)
    out: dict[str, Any] = {}
    for name, belief_rows in by_name.items():
        spec = BELIEFS.get(name)
        family = belief_rows[0]["family"]
        head = {"kind": KINDS[family], "description": spec.description if spec else name}
        if family == "gamma":
            head["unit"] = "per day"
        if family != "dirichlet":
            out[name] = {**head, **_estimate(belief_rows[0])}
            continue
        ranked = sorted(belief_rows, key=lambda r: (-float(r["mean"]), str(r["category"])))
        first = ranked[0]
        online = sorted({r.get("updated_online_at") for r in ranked if r.get("updated_online_at")})
        out[name] = _pruned({
            **head, "confidence": _num(sum(float(r["confidence"]) for r in ranked) / len(ranked)),
            "last_evidence_day": max((d for d in (_day(r.get("last_evidence_day")) for r in ranked) if d),
                                     default=None),
            "why": f"{first['exposure_weighted']:.1f} observations over {len(ranked)} categories (decayed; "
                   f"{sum(float(r['n_evidence']) for r in ranked):.0f} raw); Dirichlet prior of strength "
                   f"{first['prior_2']:.2f}",
            "updated_online_at": online[-1] if online else None,
            "evidence": _pruned({"exposure_weighted": _num(first["exposure_weighted"], 2),
                                 "raw": _num(sum(float(r["n_evidence"]) for r in ranked), 2)}) or None,
            "categories": [{"category": str(r["category"]), **_estimate(r, with_why=False)} for r in ranked],
        })
    return out


def _top(beliefs: dict[str, Any], name: str, k: int = TOP_CATEGORIES) -> list[dict[str, Any]]:
    categories = beliefs.get(name, {}).get("categories", [])
    return [{"name": c["category"], "share": c["mean"], "confidence": c["confidence"]} for c in categories[:k]]


def churn_block(prediction: dict[str, Any] | None) -> dict[str, Any] | None:
    """The user's ``churn.churn_predictions`` row as ``churn``: the question (churn for active users, return for
    lapsed ones), its probability at each horizon with a 90% interval, the tier and the drivers."""
    if not prediction:
        return None
    question = prediction.get("question") or "churn"
    horizons = []
    for column, value in prediction.items():
        match = _PREDICTION.match(column)
        if match and match.group(1) == question and _num(value) is not None:
            horizons.append(_pruned({"days": int(match.group(2)), "probability": _num(value),
                                     "lower_90": _num(prediction.get(f"{column}_lower_90")),
                                     "upper_90": _num(prediction.get(f"{column}_upper_90"))}))
    drivers = [d.strip() for d in str(prediction.get("top_drivers") or "").split(";") if d.strip()]
    return _pruned({"state": prediction.get("state"), "question": question,
                    "horizons": sorted(horizons, key=lambda h: h["days"]),
                    "risk_tier": prediction.get("risk_tier"), "drivers": drivers, "model": prediction.get("model"),
                    "as_of": _day(prediction.get("as_of")), "fitted_on": _day(prediction.get("fitted_on"))})


def helps_block(effects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The simulated scenarios whose segment holds the user, the largest expected churn reduction first."""
    rows = [_pruned({"scenario": e["scenario"], "intervention": e.get("intervention"),
                     "churn_reduction": _num(e.get("churn_reduction")),
                     "lower_90": _num(e.get("churn_reduction_lower_90")),
                     "upper_90": _num(e.get("churn_reduction_upper_90")), "basis": e.get("effect_basis")})
            for e in effects]
    return sorted((r for r in rows if "churn_reduction" in r), key=lambda r: (-r["churn_reduction"], r["scenario"]))


def value_block(twin: dict[str, Any]) -> dict[str, Any] | None:
    values = {k: _num(v) for k, v in twin.items() if k.startswith(VALUE_PREFIXES)}
    return _pruned(values) or None


def build_document(twin: dict[str, Any], beliefs: list[dict[str, Any]], prediction: dict[str, Any] | None = None,
                   effects: Iterable[dict[str, Any]] = (), updated_online_at: str | None = None) -> dict[str, Any]:
    """One user's document from their ``user_twins`` row, ``user_beliefs`` rows, churn prediction and scenario
    effects (each joined with its scenario's intervention and effect basis)."""
    block = beliefs_block(beliefs)
    summary = _pruned({
        "interests": _top(block, "topic_interest"), "goals": _top(block, "goal"),
        "preferred_channel": twin.get("preferred_channel"), "preferred_format": twin.get("preferred_format"),
    })
    document = _pruned({
        "schema_version": SCHEMA_VERSION, "user_id": str(twin["user_id"]),
        "as_of": _day(twin.get("last_updated")), "last_evidence_day": _day(twin.get("last_evidence_day")),
        "overall_confidence": _num(twin.get("overall_confidence"), 4), "updated_online_at": updated_online_at,
        "summary": summary, "beliefs": block, "churn": churn_block(prediction), "what_helps": helps_block(effects),
        "value": value_block(twin),
    })
    document.setdefault("beliefs", {})  # always there, empty when no belief has evidence (an old day's summary)
    return document


def _records_by_user(frame: pd.DataFrame | None) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    if frame is None or frame.empty:
        return out
    for row in frame.to_dict("records"):
        out.setdefault(str(row["user_id"]), []).append(row)
    return out


def build_documents(twins: pd.DataFrame, beliefs: pd.DataFrame, predictions: pd.DataFrame | None = None,
                    effects: pd.DataFrame | None = None) -> Iterator[dict[str, Any]]:
    """A document for every row of ``twins`` (a bucket of users' frames of the tables above)."""
    beliefs_of, effects_of = _records_by_user(beliefs), _records_by_user(effects)
    prediction_of = {u: rows[0] for u, rows in _records_by_user(predictions).items()}
    for twin in twins.to_dict("records"):
        user = str(twin["user_id"])
        yield build_document(twin, beliefs_of.get(user, []), prediction_of.get(user), effects_of.get(user, []))


def documents_frame(documents: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """``twins.user_documents`` rows: user_id, as_of, schema_version, document (JSON text)."""
    rows = [(d["user_id"], d.get("as_of"), d["schema_version"], to_json(d)) for d in documents]
    frame = pd.DataFrame(rows, columns=["user_id", "as_of", "schema_version", "document"])
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    return frame


def to_json(document: dict[str, Any]) -> str:
    """Compact JSON, keys in a fixed order, no NaN (the same document gives the same bytes)."""
    return json.dumps(document, separators=(",", ":"), sort_keys=True, allow_nan=False)


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _confidence_word(c: float | None) -> str:
    if c is None:
        return "unknown confidence"
    return "high confidence" if c >= 0.6 else "moderate confidence" if c >= 0.3 else "low confidence"


def context_block(document: dict[str, Any]) -> str:
    """A short plain-language summary of a document for a language model's prompt, from the document alone."""
    lines = [f"User {document['user_id']}, twin as of {document.get('as_of', 'unknown')}"
             + (f" (updated online at {document['updated_online_at']})" if document.get("updated_online_at") else "")
             + (f"; overall confidence {_pct(document['overall_confidence'])}."
                if document.get("overall_confidence") is not None else ".")]
    summary = document.get("summary", {})
    for key, label in (("interests", "Interests"), ("goals", "Goals")):
        if summary.get(key):
            lines.append(f"{label}: " + ", ".join(f"{t['name']} ({_pct(t['share'])} share, "
                                                  f"{_confidence_word(t.get('confidence'))})" for t in summary[key])
                         + ".")
    prefs = [f"{label} {summary[key]}" for key, label in (("preferred_channel", "channel"),
                                                          ("preferred_format", "format")) if summary.get(key)]
    if prefs:
        lines.append("Prefers " + " and ".join(prefs) + ".")
    scalars = [(name, b) for name, b in document.get("beliefs", {}).items() if b["kind"] != "share" and "mean" in b]
    scalars.sort(key=lambda nb: (-(nb[1].get("confidence") or 0.0), nb[0]))
    for name, belief in scalars[:CONTEXT_BELIEFS]:
        value = (f"{belief['mean'] * 7:.2f} a week" if belief["kind"] == "rate" else _pct(belief["mean"]))
        lines.append(f"{CONTEXT_LABELS.get(name, belief['description'])}: {value} (90% interval "
                     + (f"{belief['lower_90'] * 7:.2f}-{belief['upper_90'] * 7:.2f} a week"
                        if belief["kind"] == "rate" else f"{_pct(belief['lower_90'])}-{_pct(belief['upper_90'])}")
                     + f", {_confidence_word(belief.get('confidence'))}).")
    churn = document.get("churn")
    if churn and churn.get("horizons"):
        h = min(churn["horizons"], key=lambda x: (abs(x["days"] - CONTEXT_HORIZON_DAYS), x["days"]))
        lines.append(f"Risk: {_pct(h['probability'])} chance to {churn['question']} within {h['days']} days"
                     + (f" (tier {churn['risk_tier']})" if churn.get("risk_tier") else "") + ".")
        if churn.get("drivers"):
            lines.append("Why: " + "; ".join(churn["drivers"][:3]) + ".")
    helps = document.get("what_helps") or []
    if helps:
        lines.append("What helps: " + "; ".join(
            f"{h.get('intervention') or h['scenario']} (churn {100 * h['churn_reduction']:.1f} points lower)"
            for h in helps[:2]) + ".")
    if document.get("value"):
        lines.append("Value: " + ", ".join(f"{k} {v:g}" for k, v in sorted(document["value"].items())) + ".")
    return "\n".join(lines)


def as_of_day(value: Any) -> date | None:
    text = _day(value)
    return date.fromisoformat(text) if text else None
