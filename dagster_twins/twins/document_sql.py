"""The twin documents of many users at once, in DuckDB SQL: the same JSON as ``document.build_document``.

``build_document`` assembles one user's document from Python dicts: 1.7 ms a user, half an hour for a million.
The daily asset builds them in SQL instead, in two halves: ``document_parts_sql`` the members that change only when a
user is summarized again (rebuilt for those users, a bucket at a time), ``documents_sql`` the view joining them with
the day's churn, value and scenarios. Each object is text put together by ``concat_ws``, which skips NULL parts,
so a field without evidence is absent exactly as ``document._pruned`` leaves it out, and the keys are written in
sorted order, as ``document.to_json`` writes them.
The Python builder stays the reference: the online refold and the as-of route build one document with it, and a
test holds the two equal on every document of a built warehouse.

Only SQL text is made here (no connection): ``documents_sql`` is given the columns the tables have (the value and
horizon columns vary with the settings and the layers that ran).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

from dagster_twins.twins.catalog import BELIEFS
from dagster_twins.twins.document import KINDS, SCHEMA_VERSION, TOP_CATEGORIES, VALUE_PREFIXES

_HORIZON = re.compile(r"^p_(churn|return)_(\d+)d$")


def _lit(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def num(expr: str, digits: int = 4) -> str:
    """JSON number text of a double rounded as ``document._num`` rounds it; NULL when missing or not finite."""
    value = f"cast({expr} as double)"
    return f"case when isfinite({value}) then cast(round({value}, {digits}) as varchar) end"


def text(expr: str) -> str:
    """JSON string text of a value (NULL stays NULL)."""
    return f"to_json(cast({expr} as varchar))::varchar"


def day(expr: str) -> str:
    return f"'\"' || strftime(cast({expr} as date), '%Y-%m-%d') || '\"'"


def members(fields: Iterable[tuple[str, str]]) -> str:
    """The members of a JSON object, keys sorted, without the braces (a part of a document that ``concat_ws``
    joins with others); a NULL value leaves its key out."""
    parts = [member(k, v) for k, v in sorted(fields)]
    return f"concat_ws(',', {', '.join(parts)})"


def member(key: str, value: str) -> str:
    """One member of a JSON object, NULL when the value is (``concat_ws`` then leaves it out)."""
    return f"'{json.dumps(key)}:' || ({value})"


def obj(fields: Iterable[tuple[str, str]], keep_empty: bool = False) -> str:
    """A JSON object of (key, JSON text) pairs, keys sorted; a NULL value leaves its key out, and an object with
    no key left is NULL (unless ``keep_empty``), as ``document._pruned`` does."""
    body = members(fields)
    return f"('{{' || {body} || '}}')" if keep_empty else f"nullif('{{' || {body} || '}}', '{{}}')"


def array(items: Sequence[str]) -> str:
    """A JSON array of JSON texts (NULL items skipped); NULL when empty."""
    return f"nullif('[' || concat_ws(',', {', '.join(items)}) || ']', '[]')"


def _why(family_col: str = "family") -> str:
    """``document.why``: the evidence behind one belief row in words."""
    a, b = "printf('%.1f', evidence_weighted)", "printf('%.1f', exposure_weighted)"
    n, p1, p2 = "printf('%.0f', n_evidence)", "printf('%.2f', prior_1)", "printf('%.2f', prior_2)"
    return (f"case {family_col} "
            f"when 'beta' then {a} || ' successes in ' || {b} || ' trials (decayed; ' || {n} || ' raw); Beta(' "
            f"|| {p1} || ', ' || {p2} || ') prior' "
            f"when 'gamma' then {a} || ' events in ' || {b} || ' days exposed (decayed; ' || {n} || ' raw); Gamma(' "
            f"|| {p1} || ', ' || {p2} || ') prior' "
            f"else {a} || ' of ' || {b} || ' observations here (decayed; ' || {n} || ' raw); Dirichlet prior ' "
            f"|| {p1} || ' of ' || {p2} end")


def _estimate_fields(with_why: bool) -> list[tuple[str, str]]:
    """``document._estimate``'s fields of a ``user_beliefs`` row (``exposure_weighted`` only on scalar beliefs:
    a share's categories all have the share's, which the share states once)."""
    evidence = [("raw", num("n_evidence", 2)), ("weighted", num("evidence_weighted", 2))]
    if with_why:
        evidence.append(("exposure_weighted", num("exposure_weighted", 2)))
    fields = [("mean", num("mean")), ("lower_90", num("lower_90")), ("upper_90", num("upper_90")),
              ("confidence", num("confidence")), ("evidence", obj(evidence, keep_empty=True)),
              ("last_evidence_day", day("last_evidence_day"))]
    return fields + ([("why", text(_why()))] if with_why else [])


def _head(family: str, description: str) -> list[tuple[str, str]]:
    """A belief's kind, description (JSON text) and unit (rates only)."""
    kind = f"case {family} " + " ".join(f"when '{f}' then '\"{k}\"'" for f, k in KINDS.items()) + " end"
    return [("kind", kind), ("description", description),
            ("unit", f"case when {family} = 'gamma' then '\"per day\"' end")]


def _descriptions() -> str:
    """Each catalogued belief's description as JSON text (``document.beliefs_block`` falls back to the name)."""
    rows = ", ".join(f"({_lit(name)}, {_lit(json.dumps(b.description))})" for name, b in BELIEFS.items())
    return f"select * from (values {rows}) as d(belief, description_json)"


def _first(expr: str) -> str:
    """``expr`` of a share's top category (the highest mean, then the name)."""
    return f"(list({expr} order by mean desc, category))[1]"


def _ranked(name: str) -> str:
    """``document._top``: a share's first categories, each {confidence, name, share}; NULL without the share."""
    item = obj([("name", text("category")), ("share", num("mean")), ("confidence", num("confidence"))],
               keep_empty=True)
    return (f"nullif('[' || array_to_string((list({item} order by mean desc, category) "
            f"filter (where belief = {_lit(name)}))[1:{TOP_CATEGORIES}], ',') || ']', '[]')")


PARTS = "document_parts"
# The document's members in key order, split by what they change with: the parts of the user's last update (the
# twin's roll-up and beliefs, ``document_parts``) and the parts of every day (churn, value, what helps).
HEAD_KEYS, TAIL_KEYS = ("as_of", "beliefs"), ("last_evidence_day", "overall_confidence", "schema_version", "summary",
                                              "user_id")


def document_parts_sql(users: str) -> str:
    """The ``twins.document_parts`` rows of the users ``users`` (a query of user_id): per user, the members of their
    document that change only when their twin is summarized again, as of that day (``user_twins.last_updated``):
    ``head`` (as_of, beliefs) and ``tail`` (last_evidence_day, overall_confidence, schema_version, summary,
    user_id), each the text between two commas of the document. The beliefs are the user's ``belief_summaries``
    rows, the posterior as of their last update (``user_beliefs`` decays them to each day for BI)."""
    # Beliefs: one JSON object a (user, belief); a share's categories ranked by mean, then name.
    scalar = obj([*_head("family", "description_json"), *_estimate_fields(with_why=True)], keep_empty=True)
    category = obj([("category", text("category")), *_estimate_fields(with_why=False)], keep_empty=True)
    share_why = (f"printf('%.1f', {_first('exposure_weighted')}) || ' observations over ' || count(*) || "
                 f"' categories (decayed; ' || printf('%.0f', sum(n_evidence)) || ' raw); Dirichlet prior of "
                 f"strength ' || printf('%.2f', {_first('prior_2')})")
    share = obj([*_head("any_value(family)", "any_value(description_json)"),
                 ("confidence", num("avg(confidence)")),
                 ("last_evidence_day", day("max(last_evidence_day)")),
                 ("why", text(share_why)),
                 ("evidence", obj([("exposure_weighted", num(_first("exposure_weighted"), 2)),
                                   ("raw", num("sum(n_evidence)", 2))])),
                 ("categories", f"'[' || array_to_string(list({category} order by mean desc, category), ',') || ']'")])
    summary = obj([("interests", "interests"), ("goals", "goals"),
                   ("preferred_channel", text("t.preferred_channel")),
                   ("preferred_format", text("t.preferred_format"))])
    fields = {"as_of": day("t.last_updated"), "beliefs": "coalesce(beliefs.j, '{}')",
              "last_evidence_day": day("t.last_evidence_day"), "overall_confidence": num("t.overall_confidence"),
              "schema_version": f"'\"{SCHEMA_VERSION}\"'", "summary": summary, "user_id": text("t.user_id")}
    return f"""
        with chosen as ({users}),
        described as (select b.*, coalesce(d.description_json, to_json(b.belief)::varchar) as description_json
                      from twins.belief_summaries b left join ({_descriptions()}) d using (belief)
                      where b.user_id in (select user_id from chosen)),
        scalar_beliefs as (
            select user_id, belief, {scalar} as j from described where family <> 'dirichlet'),
        share_beliefs as (
            select user_id, belief, {share} as j from described where family = 'dirichlet' group by user_id, belief),
        ranked as (
            select user_id, {_ranked('topic_interest')} as interests, {_ranked('goal')} as goals
            from described where family = 'dirichlet' group by user_id),
        beliefs as (
            select user_id, '{{' || array_to_string(list(to_json(belief)::varchar || ':' || j order by belief), ',')
                   || '}}' as j
            from (select * from scalar_beliefs union all select * from share_beliefs) group by user_id)
        select cast(t.user_id as varchar) as user_id, cast(t.last_updated as timestamp) as as_of,
               {members((k, fields[k]) for k in HEAD_KEYS)} as head,
               {members((k, fields[k]) for k in TAIL_KEYS)} as tail
        from twins.user_twins t left join beliefs using (user_id) left join ranked using (user_id)
        where t.user_id in (select user_id from chosen)"""


def documents_sql(where: str, twin_columns: Sequence[str], prediction_columns: Sequence[str] | None,
                  with_effects: bool) -> str:
    """The ``twins.user_documents`` rows (user_id, as_of, schema_version, document) of the users matching
    ``where`` (on ``user_id``; the view's is ``true``): each user's ``document_parts`` and, between them in key
    order, the members of the day: churn (``prediction_columns`` are ``churn.churn_predictions``'; None: no
    table), value (``twin_columns`` of ``twins.user_twins``, refreshed daily) and what helps (``with_effects``:
    whether the scenario tables exist). ``where`` is applied inside each part, so a few users cost a few rows."""
    ctes, joins = [], []
    churn = "null"
    if prediction_columns is not None:
        horizons = sorted({(int(m.group(2)), m.group(1)) for c in prediction_columns if (m := _HORIZON.match(c))})
        # The question's horizons, each only with its probability (``churn_block`` skips one without).
        items = [f"case when coalesce(question, 'churn') = '{q}' and isfinite(cast(p_{q}_{d}d as double)) then "
                 + obj([("days", f"'{d}'"), ("probability", num(f"p_{q}_{d}d")),
                        *[(f"{side}_90", num(f"p_{q}_{d}d_{side}_90")) for side in ("lower", "upper")
                          if f"p_{q}_{d}d_{side}_90" in prediction_columns]])
                 + " end" for d, q in horizons]
        has = set(prediction_columns)
        drivers = ("nullif(to_json(list_filter(list_transform(string_split(coalesce(top_drivers, ''), ';'), "
                   "x -> trim(x)), x -> x <> ''))::varchar, '[]')") if "top_drivers" in has else "null"
        optional = {k: (text(k) if k not in ("as_of", "fitted_on") else day(k)) if k in has else "null"
                    for k in ("state", "risk_tier", "model", "as_of", "fitted_on")}
        churn_obj = obj([("question", text("coalesce(question, 'churn')") if "question" in has else "'\"churn\"'"),
                         ("horizons", array(items) if items else "null"), ("drivers", drivers),
                         *optional.items()])
        ctes.append(f"churn as (select user_id, {churn_obj} as churn from churn.churn_predictions "
                    ")")
        joins.append("left join churn using (user_id)")
        churn = "churn.churn"
    helps = "null"
    if with_effects:
        effect = obj([("scenario", text("e.scenario")), ("intervention", text("r.intervention")),
                      ("churn_reduction", num("e.churn_reduction")), ("lower_90", num("e.churn_reduction_lower_90")),
                      ("upper_90", num("e.churn_reduction_upper_90")), ("basis", text("r.effect_basis"))],
                     keep_empty=True)
        ctes.append(f"""helps as (
            select e.user_id, '[' || array_to_string(list({effect} order by round(e.churn_reduction, 4) desc,
                   e.scenario), ',') || ']' as helps
            from simulation.scenario_user_effects e join simulation.scenario_results r using (scenario)
            where r.status = 'simulated' and isfinite(e.churn_reduction) and {where.replace('user_id', 'e.user_id')}
            group by e.user_id)""")
        joins.append("left join helps using (user_id)")
        helps = "helps.helps"
    value = obj([(c, num(f"t.{c}")) for c in twin_columns if c.startswith(VALUE_PREFIXES)]) \
        if any(c.startswith(VALUE_PREFIXES) for c in twin_columns) else "null"
    # Every part in key order: the head's keys come before churn's, the tail's between churn and value.
    document = ("'{' || concat_ws(',', p.head, " + ", ".join([member("churn", churn), "p.tail",
                                                             member("value", value), member("what_helps", helps)])
                + ") || '}'")
    with_clause = f"with {', '.join(ctes)} " if ctes else ""
    return (f"{with_clause}select user_id, p.as_of, '{SCHEMA_VERSION}' as schema_version, {document} as document "
            f"from twins.{PARTS} p join twins.user_twins t using (user_id) {' '.join(joins)} "
            f"where {where.replace('user_id', 'p.user_id')}")
