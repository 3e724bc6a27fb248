"""The twin document: schema, no field without evidence, the optional value block, the context block."""

from __future__ import annotations

import json
import re
from datetime import date

import jsonschema
import numpy as np
import pandas as pd
import pytest

from dagster_twins.twins.document import (
    SCHEMA_VERSION,
    VALUE_PREFIXES,
    build_document,
    context_block,
    load_schema,
    to_json,
)
from dagster_twins.warehouse.tables import connect

VALIDATOR = jsonschema.Draft202012Validator(load_schema())


def _belief(belief: str, family: str, category: str = "", mean: float = 0.3, n: float = 4.0) -> dict:
    return {"user_id": "u1", "belief": belief, "category": category, "family": family, "mean": mean,
            "lower_90": mean / 2, "upper_90": min(1.0, mean * 2), "confidence": 0.4, "n_evidence": n,
            "evidence_weighted": n / 2, "exposure_weighted": n, "last_evidence_day": pd.Timestamp("2026-03-30"),
            "prior_1": 1.0, "prior_2": 3.0, "param_1": 2.0, "param_2": 5.0}


TWIN = {"user_id": "u1", "last_updated": pd.Timestamp("2026-03-31"), "last_evidence_day": pd.Timestamp("2026-03-30"),
        "overall_confidence": 0.4, "preferred_channel": "web", "preferred_format": None}


def _nulls(node, path="") -> list[str]:
    if node is None or (isinstance(node, float) and not np.isfinite(node)):
        return [path]
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _nulls(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _nulls(v, f"{path}[{i}]")]
    return []


def test_a_document_has_only_what_has_evidence_and_validates():
    beliefs = [_belief("rec_click", "beta"), _belief("activity_rate", "gamma", mean=0.2),
               _belief("topic_interest", "dirichlet", "travel", 0.6),
               _belief("topic_interest", "dirichlet", "music", 0.4)]
    doc = build_document(TWIN, beliefs)
    assert VALIDATOR.is_valid(doc), list(VALIDATOR.iter_errors(doc))
    assert set(doc["beliefs"]) == {"rec_click", "activity_rate", "topic_interest"}  # no campaign row: no belief
    assert "churn" not in doc and "what_helps" not in doc and "value" not in doc
    assert "preferred_format" not in doc["summary"] and _nulls(doc) == []
    assert [c["category"] for c in doc["beliefs"]["topic_interest"]["categories"]] == ["travel", "music"]
    assert doc["summary"]["interests"][0] == {"name": "travel", "share": 0.6, "confidence": 0.4}
    assert doc["beliefs"]["rec_click"]["why"].startswith("2.0 successes in 4.0 trials (decayed; 4 raw)")


def test_the_schema_refuses_what_it_does_not_describe():
    doc = build_document(TWIN, [_belief("rec_click", "beta")])
    assert not VALIDATOR.is_valid({**doc, "surprise": 1})
    assert not VALIDATOR.is_valid({**doc, "schema_version": "2"})
    broken = json.loads(to_json(doc))
    broken["beliefs"]["rec_click"]["confidence"] = 1.5
    assert not VALIDATOR.is_valid(broken)


def test_the_value_block_appears_when_the_value_columns_exist():
    # The purchase layer's columns of twins.user_twins (docs/purchases.md); a missing one is left out.
    with_value = {**TWIN, "p_alive": 0.8, "expected_purchases_90d": 1.25, "expected_spend_per_purchase": 40.5,
                  "value_90d": 48.2, "value_365d": float("nan"), "unrelated": 3}
    doc = build_document(with_value, [_belief("rec_click", "beta")])
    assert doc["value"] == {"p_alive": 0.8, "expected_purchases_90d": 1.25, "expected_spend_per_purchase": 40.5,
                            "value_90d": 48.2}
    assert VALIDATOR.is_valid(doc)
    assert all(k.startswith(VALUE_PREFIXES) for k in doc["value"])


def test_churn_and_what_helps_blocks():
    prediction = {"question": "churn", "state": "active", "p_churn_30d": 0.2, "p_churn_30d_lower_90": 0.1,
                  "p_churn_30d_upper_90": 0.3, "p_churn_7d": 0.05, "p_return_7d": float("nan"),
                  "top_drivers": "a; b", "risk_tier": "high", "as_of": pd.Timestamp("2026-03-31")}
    effects = [{"scenario": "s1", "churn_reduction": 0.01, "intervention": "x"},
               {"scenario": "s2", "churn_reduction": 0.03, "intervention": "y"}]
    doc = build_document(TWIN, [_belief("rec_click", "beta")], prediction, effects)
    assert [h["days"] for h in doc["churn"]["horizons"]] == [7, 30]
    assert doc["churn"]["drivers"] == ["a", "b"] and [h["scenario"] for h in doc["what_helps"]] == ["s2", "s1"]
    text = context_block(doc)
    assert "20% chance to churn within 30 days (tier high)" in text and "y (churn 3.0 points lower)" in text
    assert context_block(json.loads(to_json(doc))) == text  # from the document alone, the same bytes


def test_the_built_warehouse_has_one_valid_document_per_twin(built):
    settings, result, _ = built
    con = connect(settings.warehouse_path, read_only=True)
    try:
        docs = con.sql("select user_id, as_of, schema_version, document from twins.user_documents").df()
        twins = con.sql("select user_id from twins.user_twins").df()
        beliefs = con.sql("select user_id, belief from twins.user_beliefs").df()
        horizons = con.sql("select * from churn.churn_predictions limit 0").df().columns
    finally:
        con.close()
    assert sorted(docs["user_id"]) == sorted(twins["user_id"]) and docs["user_id"].is_unique
    assert (docs["schema_version"] == SCHEMA_VERSION).all()
    names = beliefs.groupby("user_id")["belief"].agg(set).to_dict()
    parsed = [json.loads(text) for text in docs["document"]]
    for doc in parsed:
        assert VALIDATOR.is_valid(doc), (doc["user_id"], next(VALIDATOR.iter_errors(doc)).message)
        assert set(doc["beliefs"]) == names.get(doc["user_id"], set())  # a belief exactly when it has a row
        assert _nulls(doc) == []
    with_churn = [d for d in parsed if "churn" in d]
    assert with_churn and {h["days"] for d in with_churn for h in d["churn"]["horizons"]} \
        <= {int(c.split("_")[2][:-1]) for c in horizons if c.startswith("p_churn_") and c.endswith("d")}
    assert any("what_helps" in d for d in parsed)
    assert str(docs["as_of"].max().date()) == parsed[0]["as_of"]
    check = [c for c in result.get_asset_check_evaluations() if c.check_name == "one_valid_document_per_twin"]
    assert len(check) == 1 and check[0].passed


@pytest.mark.parametrize("day", [date(2026, 3, 31)])
def test_the_context_block_is_plain_and_deterministic(built, day):
    settings, _, _ = built
    con = connect(settings.warehouse_path, read_only=True)
    try:
        texts = [r[0] for r in con.execute("select document from twins.user_documents order by user_id limit 5")
                 .fetchall()]
    finally:
        con.close()
    for text in texts:
        doc = json.loads(text)
        block = context_block(doc)
        assert block == context_block(json.loads(text)) and block.startswith(f"User {doc['user_id']}")
        assert f"as of {day}" in block and len(block) < 2000 and "{" not in block and not re.search(r"\bnan\b", block)


def test_a_day_without_kept_state_still_makes_a_valid_summary_document():
    doc = {**build_document(TWIN, []), "detail": "summary"}
    assert doc["beliefs"] == {} and VALIDATOR.is_valid(doc), list(VALIDATOR.iter_errors(doc))


def _differences(sql, ref, path="") -> list[str]:
    """Where two parsed documents differ; numbers may differ by one unit in their last rounded place (DuckDB's
    round is x * 10^d rounded, Python's the exact decimal: the two can part at a tie)."""
    if isinstance(ref, dict) and isinstance(sql, dict):
        keys = sorted(set(sql) | set(ref))
        return [d for k in keys for d in _differences(sql.get(k), ref.get(k), f"{path}.{k}")]
    if isinstance(ref, list) and isinstance(sql, list) and len(sql) == len(ref):
        return [d for i, (a, b) in enumerate(zip(sql, ref, strict=True)) for d in _differences(a, b, f"{path}[{i}]")]
    if isinstance(ref, float | int) and isinstance(sql, float | int) and not isinstance(ref, bool):
        unit = 0.01 if ".evidence." in path else 1e-4
        return [] if abs(sql - ref) <= unit * 1.001 else [f"{path}: {sql} != {ref}"]
    return [] if sql == ref else [f"{path}: {sql!r} != {ref!r}"]


def test_the_columnar_documents_equal_the_python_builder_on_every_user(built):
    # The asset builds every document in DuckDB SQL (document_sql.py): parts and a view; the Python builder (the
    # online refold's and the as-of route's) is the reference: same fields, same order of categories and
    # scenarios, same text.
    from dagster_twins.twins import store
    from dagster_twins.twins.document import build_documents

    settings, _, _ = built
    con = connect(settings.warehouse_path, read_only=True)
    try:
        stored = dict(con.sql("select user_id, document from twins.user_documents").fetchall())
        halves = [con.sql(store.documents_query(con, f"hash(user_id) % 2 = {k}")).df() for k in range(2)]
        reference = {d["user_id"]: d for d in build_documents(**store.document_inputs(con, (0, 1)))}
    finally:
        con.close()
    assert sorted(stored) == sorted(reference) == sorted(pd.concat(halves)["user_id"])  # buckets split the users
    differences = [d for user, doc in reference.items() for d in _differences(json.loads(stored[user]), doc)]
    assert differences == [], differences[:10]
    sample = next(iter(reference.values()))
    assert stored[sample["user_id"]] == to_json(json.loads(stored[sample["user_id"]]))  # sorted keys, compact


def test_a_day_rebuilds_the_document_parts_of_the_users_summarized_again_only(built_copy):
    # A day's documents cost the users with new evidence: the others' parts (beliefs and roll-up as of their last
    # update) are kept byte for byte, and every document still equals the Python builder's.
    from datetime import timedelta

    import dagster as dg

    from dagster_twins.location import build_definitions
    from dagster_twins.twins import store
    from dagster_twins.twins.document import build_documents

    local, demo = built_copy
    job = build_definitions(local).resolve_job_def("twins_pipeline")
    keys = [dg.AssetKey(["twins", "user_beliefs"]), dg.AssetKey(["twins", "user_twins"])]

    def twins_then_parts(tags: dict[str, str], since: date | None) -> tuple[int, pd.DataFrame]:
        assert job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), asset_selection=keys,
                                      tags=tags).success
        con = connect(local.warehouse_path)
        try:
            stale = store.stale_document_users(con, since)
            assert sum(store.write_document_parts(con, (k, 2)) for k in range(2)) == stale
            store.create_documents_view(con)
            return stale, con.sql(f"select * from twins.{store.PARTS} order by user_id").df()
        finally:
            con.close()

    day_before = demo.end_date - timedelta(days=1)
    _, before = twins_then_parts({"dagster/asset_partition_range_start": demo.start_date.isoformat(),
                                  "dagster/asset_partition_range_end": day_before.isoformat()}, None)
    stale, after = twins_then_parts({"dagster/partition": demo.end_date.isoformat()}, demo.end_date)
    con = connect(local.warehouse_path)
    try:
        touched = {r[0] for r in con.execute("select user_id from twins.user_twins where last_updated = ?",
                                             [demo.end_date]).fetchall()}
        stored = dict(con.sql("select user_id, document from twins.user_documents").fetchall())
        reference = {d["user_id"]: d for d in build_documents(**store.document_inputs(con, (0, 1)))}
        assert store.stale_document_users(con, demo.end_date + timedelta(days=1)) == 0  # nothing left to rebuild
    finally:
        con.close()
    assert 0 < stale == len(touched) < len(after)
    kept = before[~before["user_id"].isin(touched)].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, after[~after["user_id"].isin(touched)].reset_index(drop=True))
    assert (after.loc[after["user_id"].isin(touched), "as_of"] == pd.Timestamp(demo.end_date)).all()
    assert sorted(stored) == sorted(reference)
    differences = [d for user, doc in reference.items() for d in _differences(json.loads(stored[user]), doc)]
    assert differences == [], differences[:10]
