"""Reading evidence and state from the warehouse and writing the twin tables back (schema ``twins``)."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta

import duckdb
import pandas as pd

from dagster_twins.twins.catalog import BELIEFS, evidence_sql
from dagster_twins.twins.document_sql import PARTS, document_parts_sql, documents_sql
from dagster_twins.warehouse.buckets import Bucket, BucketReader, DuckDBReader
from dagster_twins.warehouse.sql import quote_ident, sql_literal
from dagster_twins.warehouse.tables import append_rows, registered, replace_rows, table_exists

SCHEMA = "twins"
STATE_DDL = f"""create table if not exists {SCHEMA}.belief_state (
    as_of date not null, user_id varchar not null, belief varchar not null, category varchar not null,
    stat_a double not null, stat_b double not null, n_evidence double not null, last_evidence_day timestamp
)"""


def landing_span(reader: BucketReader) -> tuple[date, date] | None:
    row = reader.scalars("select min(landing_date), max(landing_date) from marts.fct_events")
    return (_day(row[0]), _day(row[1]) + timedelta(days=1)) if row and row[0] else None


def _day(value) -> date:
    return value.date() if isinstance(value, datetime) else value


def saved_state_day(con: duckdb.DuckDBPyConnection, before: date) -> date | None:
    """The day of the latest run before ``before`` whose state is saved: the day of its priors, which a run writes
    once every bucket's state is. Not the latest day with state rows: the state is sparse (``state_sql``), and a day
    on which nobody had evidence saves none, yet later days start from it."""
    con.execute(f"create schema if not exists {SCHEMA}")
    con.execute(STATE_DDL)
    if not table_exists(con, SCHEMA, "belief_priors"):
        return None
    day = con.execute(f"select max(as_of) from {SCHEMA}.belief_priors where as_of < ?", [before]).fetchone()[0]
    return None if day is None else _day(day)


# The belief state is kept sparse: a run saves the state of the users it folds (those with evidence in its window;
# every user in a full rebuild), as of its day, and nobody else's. A user's state as of a day is their rows of the
# latest day saved on or before it, decayed to it: decay is a known function of time, so carrying the others
# forward each day (1.8 million rows a day at 100,000 users, kept 35 days) would write nothing new.
def state_sql(day: str, half_life_days: float | None = None, users: str | None = None) -> str:
    """The query of every user's belief state as of the SQL date ``day`` (``state.STATE_COLUMNS``), or of the users
    of the query ``users`` (a ``user_id`` column): their latest saved rows on or before ``day``, decayed to it by
    ``half_life_days`` (None: the half-life the priors of ``day`` were saved with, as readers of a copy know it)."""
    only = "" if users is None else f" and user_id in ({users})"
    half_life = (repr(float(half_life_days)) if half_life_days is not None else
                 f"(select any_value(half_life_days) from {SCHEMA}.belief_priors where as_of = {day})")
    w = f"pow(0.5, datediff('day', as_of, {day}) / {half_life})"
    return f"""
        select user_id, belief, category, stat_a * {w} as stat_a, stat_b * {w} as stat_b, n_evidence,
               last_evidence_day
        from {SCHEMA}.belief_state
        where as_of <= {day}{only}
        qualify as_of = max(as_of) over (partition by user_id)"""


def state_of(con: duckdb.DuckDBPyConnection, as_of: date, half_life_days: float,
             user_ids: pd.Series | None = None) -> pd.DataFrame:
    """The state as of ``as_of`` for ``user_ids`` (None: everyone), ``state_sql``. The state lives in the DuckDB
    warehouse whichever engine built the marts, so a bucket is selected by its users, not by a hash."""
    day = f"date '{as_of.isoformat()}'"
    if user_ids is None:
        return con.execute(state_sql(day, half_life_days)).df()
    with registered(con, pd.DataFrame({"user_id": pd.unique(user_ids)}), "_bucket_users") as users:
        return con.execute(state_sql(day, half_life_days, f"select user_id from {users}")).df()


def landed_interactions(reader: BucketReader, after: date | None, end: date) -> int:
    return int(reader.scalars(f"select count(*) from marts.fct_events where {landed_filter(after, end)}")[0])


def landed_filter(after: date | None, end: date) -> str:
    landing_filter = f"landing_date < date '{end.isoformat()}'"
    if after is not None:
        landing_filter += f" and landing_date > date '{after.isoformat()}'"
    return landing_filter


def landed_evidence(reader: BucketReader, after: date | None, end: date,
                    bucket: Bucket | None = None) -> pd.DataFrame:
    """Daily evidence from interactions that landed after ``after`` (exclusive) and before ``end``, for one
    bucket of users or all of them."""
    where = f"{landed_filter(after, end)} and {reader.bucket_filter(bucket)}"
    frame = reader.frame(evidence_sql("marts.fct_events", where))
    return clip_to_landed(frame, end)


def clip_to_landed(evidence: pd.DataFrame, end: date) -> pd.DataFrame:
    """Evidence rows with their day no later than the last landed day (``end`` exclusive), in place: a row can be
    dated after the day it landed (a source's clock ahead of the export's); its evidence counts from the last
    landed day, since a state cannot hold evidence from its future."""
    evidence["day"] = pd.to_datetime(evidence["day"]).clip(upper=pd.Timestamp(end - timedelta(days=1)))
    return evidence


def user_count(reader: BucketReader) -> int:
    """Every user in marts.dim_users, known by now or not: what the number of buckets follows."""
    return int(reader.scalars("select count(*) from marts.dim_users")[0])


def bucket_users(reader: BucketReader, bucket: Bucket | None = None) -> pd.Series:
    """Every user of ``bucket`` in marts.dim_users, known by now or not."""
    return reader.table_frame("marts.dim_users", ["user_id"], bucket=bucket)["user_id"]


# A user's first day of exposure (sign-up, but not before the data starts) and when they became known, over
# marts.dim_users: SQL both engines run (known_users; the Spark summary's tasks, twins/spark_fold.py).
FIRST_DAY = ("cast(greatest(coalesce(signed_up_at, first_seen_at), (select min(occurred_at) from marts.fct_events)) "
             "as date)")
KNOWN_BY = "coalesce(signed_up_at, first_seen_at)"


def known_users(reader: BucketReader, as_of: date, buckets: int = 1) -> pd.DataFrame:
    """Users known by ``as_of`` with the first day of their exposure (sign-up, but not before the data
    starts) and their bucket of ``buckets``, in user_id order."""
    users = reader.frame(
        f"select user_id, {FIRST_DAY} as first_day, {reader.bucket_of(buckets)} as bucket from marts.dim_users "
        f"where {KNOWN_BY} < ? order by user_id",
        [as_of + timedelta(days=1)],
    )
    users["first_day"] = pd.to_datetime(users["first_day"])
    return users


def belief_categories(reader: BucketReader) -> dict[str, list[str]]:
    """The categories of every share belief: the values the data holds (topics, channels, formats, goals), so a
    twin speaks the data's own vocabulary; a share with no value in the data has no category and no rows."""
    categories: dict[str, list[str]] = {}
    for name, belief in BELIEFS.items():
        if belief.dimension is None:
            categories[name] = []
            continue
        categories[name] = reader.frame(
            f"select distinct cast({belief.dimension} as string) as category from marts.fct_events "
            f"where {belief.dimension} is not null order by 1")["category"].tolist()
    return categories


def clear_snapshots(con: duckdb.DuckDBPyConnection, table: str, as_of: date, invalidate_from: date) -> None:
    """Drop the dated snapshots from ``invalidate_from`` on (a re-run of an older window makes later ones stale)
    before a run appends its own."""
    if table_exists(con, SCHEMA, table):
        con.execute(f"delete from {SCHEMA}.{table} where as_of >= ?", [min(invalidate_from, as_of)])


def append_snapshot(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    append_rows(con, SCHEMA, table, frame)


def save_snapshot(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, as_of: date,
                  invalidate_from: date) -> None:
    """Append a dated snapshot, dropping the stale ones first (``clear_snapshots``)."""
    clear_snapshots(con, table, as_of, invalidate_from)
    append_snapshot(con, table, frame)


def prune_state(con: duckdb.DuckDBPyConnection, as_of: date, retention_days: int, table: str) -> None:
    """Drop the daily snapshots of ``table`` older than the retention (a re-run may start from any day after it)."""
    if table_exists(con, SCHEMA, table):
        con.execute(f"delete from {SCHEMA}.{table} where as_of < ?", [as_of - timedelta(days=retention_days)])


def prune_sparse_state(con: duckdb.DuckDBPyConnection, as_of: date, retention_days: int) -> int:
    """Drop the saved belief state no day within the retention reads (``state_sql``): a user's rows before the
    retention's first day, except their latest saved before it, which later days still decay from. Returns the
    rows dropped."""
    if not table_exists(con, SCHEMA, "belief_state"):
        return 0
    cutoff = as_of - timedelta(days=retention_days)
    return int(con.execute(f"""
        delete from {SCHEMA}.belief_state b using (
            select user_id, max(as_of) as kept from {SCHEMA}.belief_state where as_of < ? group by user_id
        ) k
        where b.user_id = k.user_id and b.as_of < k.kept""", [cutoff]).fetchone()[0])


# The beliefs as stored and as read. ``belief_summaries`` holds each user's rows as of the day they were last
# summarized (a run rewrites only the users with evidence in its window, and users new since the last run);
# ``user_beliefs`` is a view that carries every row to the latest run's day: decay is a known function of time, so
# the decayed statistics, the posterior parameters (under that day's priors) and the mean follow in closed form.
SUMMARIES = "belief_summaries"


def beliefs_view(as_of: date, half_life_days: float) -> str:
    """``user_beliefs`` as of ``as_of``: every row of ``belief_summaries`` decayed from its own day (``summarized_on``)
    by w = 0.5 ** (days / half-life), under the priors of ``as_of``. A rate's exposure grows by the decayed days in
    between, (1 - w) / (1 - q) with q the decay of one day (``state.exposure_days`` in closed form). The 90% interval
    and the confidence need inverse incomplete beta/gamma functions SQL lacks: they are those of ``summarized_on``
    (the same day for every user with evidence in the run)."""
    day, h = f"date '{as_of.isoformat()}'", repr(float(half_life_days))
    w = f"pow(0.5, datediff('day', s.as_of, {day}) / {h})"
    q = f"pow(0.5, 1 / {h})"
    return f"""
create or replace view {SCHEMA}.user_beliefs as
with decayed as (
    select s.user_id, s.belief, s.category, s.family, s.lower_90, s.upper_90, s.confidence, s.n_evidence,
           s.last_evidence_day, s.as_of as summarized_on, p.param_1 as prior_1, p.param_2 as prior_2,
           {w} * s.evidence_weighted as a,
           case when s.family = 'gamma' then {w} * s.exposure_weighted + (1 - {w}) / (1 - {q})
                else {w} * s.exposure_weighted end as b
    from {SCHEMA}.{SUMMARIES} s
    join {SCHEMA}.belief_priors p on p.belief = s.belief and p.category = s.category and p.as_of = {day}
), posterior as (
    select *, prior_1 + a as param_1,
           case family when 'beta' then prior_2 + b - a when 'gamma' then prior_2 + b
                else prior_2 + b - (prior_1 + a) end as param_2
    from decayed
)
select user_id, belief, category, family, param_1, param_2,
       case when family = 'gamma' then param_1 / param_2 else param_1 / (param_1 + param_2) end as mean,
       lower_90, upper_90, confidence, a as evidence_weighted, b as exposure_weighted, n_evidence,
       last_evidence_day, prior_1, prior_2, cast({day} as timestamp) as as_of, summarized_on
from posterior
"""


def why_summarize_all(con: duckdb.DuckDBPyConnection, base_as_of: date, priors: pd.DataFrame,
                      half_life_days: float) -> str | None:
    """Why a run from the state of ``base_as_of`` with these ``priors`` (``Priors.frame``) must summarize every user,
    or None when the stored summaries can be carried forward (then only users with new evidence are summarized):
    the summaries must be older than the run, with the same half-life, and the priors cover the same beliefs and
    categories (a new topic, or a first ticket in the population, gives every user new rows)."""
    day = summaries_day(con)
    if day is None:
        return "no stored summaries"
    if day > base_as_of:
        return f"summaries of {day}, after the state of {base_as_of} (an older window is re-run)"
    columns = {row[0] for row in con.execute(f"describe {SCHEMA}.belief_priors").fetchall()}
    if "half_life_days" not in columns:
        return "stored priors of an older release"
    stored = con.execute(f"select distinct half_life_days, belief, category from {SCHEMA}.belief_priors "
                         "where as_of = ?", [base_as_of]).fetchall()
    if {row[0] for row in stored} != {float(half_life_days)}:
        return "the half-life changed"
    if {(b, c) for _, b, c in stored} != set(zip(priors["belief"], priors["category"], strict=True)):
        return "the beliefs or share categories changed"
    return None


def summarized_users(con: duckdb.DuckDBPyConnection, user_ids: pd.Series) -> set[str]:
    """Which of ``user_ids`` already have summarized rows (the others are new to the twins)."""
    with registered(con, pd.DataFrame({"user_id": pd.unique(user_ids)}), "_known_users") as users:
        return set(con.execute(f"select distinct s.user_id from {SCHEMA}.{SUMMARIES} s "
                               f"semi join {users} u using (user_id)").df()["user_id"])


def summaries_day(con: duckdb.DuckDBPyConnection) -> date | None:
    """The latest day any belief was summarized (None without summaries)."""
    if not table_exists(con, SCHEMA, SUMMARIES):
        return None
    day = con.execute(f"select max(as_of) from {SCHEMA}.{SUMMARIES}").fetchone()[0]
    return None if day is None else _day(day)


def state_written_without_evidence(con: duckdb.DuckDBPyConnection, as_of: date, touched: set) -> int:
    """Belief state rows an increment saved as of ``as_of`` for users outside ``touched`` (those with evidence in
    its window): none, when a day touches only what changed."""
    with registered(con, pd.DataFrame({"user_id": sorted(touched)}, dtype=object), "_touched_users") as users:
        return int(con.execute(f"select count(*) from {SCHEMA}.belief_state where as_of = ? and user_id not in "
                               f"(select user_id from {users})", [as_of]).fetchone()[0])


def refresh_twin_purchases(con: duckdb.DuckDBPyConnection) -> None:
    """Every twin's purchase columns from today's ``user_purchases`` (a twin keeps its roll-up from the day it was
    summarized, but the purchase model scores everyone each day)."""
    if not (table_exists(con, SCHEMA, USER_PURCHASES) and table_exists(con, SCHEMA, "user_twins")):
        return
    twins = {row[0] for row in con.execute(f"describe {SCHEMA}.user_twins").fetchall()}
    columns = [row[0] for row in con.execute(f"describe {SCHEMA}.{USER_PURCHASES}").fetchall()
               if row[0] in twins and row[0] not in ("user_id", "as_of")]
    if columns:
        # Rewritten, not updated in place: an UPDATE of every row of a table whose rows a daily run deletes and
        # appends grew to a minute at 100,000 users after three days (2.6 s rewritten, the same rows).
        fresh = ", ".join(f"case when p.user_id is null then t.{quote_ident(c)} else p.{quote_ident(c)} end "
                          f"as {quote_ident(c)}" for c in columns)
        con.execute(f"create or replace table {SCHEMA}.user_twins as select t.* replace ({fresh}) "
                    f"from {SCHEMA}.user_twins t left join {SCHEMA}.{USER_PURCHASES} p on p.user_id = t.user_id "
                    "order by t.user_id")


# Purchases and value (purchase_state.py): the folded statistics, the population fits, the per-user beliefs.
PURCHASE_STATE, PURCHASE_FITS, USER_PURCHASES = "purchase_state", "purchase_fits", "user_purchases"


def purchase_evidence(reader: BucketReader, after: date | None, end: date,
                      event_types: tuple[str, ...]) -> pd.DataFrame:
    """A row per user and day of the purchases that landed after ``after`` (exclusive) and before ``end``: purchase
    events (``event_types``, as dbt's spend), those with a value, and the value summed."""
    types = ", ".join(sql_literal(t) for t in event_types)
    frame = reader.frame(f"""
        select user_id, activity_date as day, count(*) as purchases,
               count(*) filter (where spend > 0) as spend_n,
               cast(coalesce(sum(spend) filter (where spend > 0), 0) as double) as spend_sum
        from marts.fct_events
        where {landed_filter(after, end)} and source = 'events' and interaction_type in ({types})
        group by all
        order by user_id, day""")  # summed exactly (decimal) and in one order: a re-run gives the same bits
    frame["day"] = pd.to_datetime(frame["day"]).clip(upper=pd.Timestamp(end - timedelta(days=1)))
    return frame


def purchase_births(reader: BucketReader, as_of: date) -> pd.DataFrame:
    """Users known by ``as_of`` with their birth as a customer (``first_day``): sign-up (else first seen), but not
    before the first product event of the data, since no purchase before it could have been seen (a history that
    starts mid-life: the demo's users signed up before its window, whose subscriptions date back further)."""
    users = reader.frame(
        "select user_id, cast(greatest(coalesce(signed_up_at, first_seen_at), "
        "(select min(occurred_at) from marts.fct_events where source = 'events')) as date) as first_day "
        "from marts.dim_users where coalesce(signed_up_at, first_seen_at) < ? order by user_id",
        [as_of + timedelta(days=1)])
    users["first_day"] = pd.to_datetime(users["first_day"])
    return users


def saved_purchase_state_day(con: duckdb.DuckDBPyConnection, before: date) -> date | None:
    if not table_exists(con, SCHEMA, PURCHASE_STATE):
        return None
    day = con.execute(f"select max(as_of) from {SCHEMA}.{PURCHASE_STATE} where as_of < ?", [before]).fetchone()[0]
    return None if day is None else _day(day)


def purchase_state_of(con: duckdb.DuckDBPyConnection, as_of: date, columns: list[str]) -> pd.DataFrame:
    return con.execute(f"select {', '.join(columns)} from {SCHEMA}.{PURCHASE_STATE} where as_of = ?", [as_of]).df()


def recent_purchase_fit(con: duckdb.DuckDBPyConnection, as_of: date, every_days: int) -> dict | None:
    """The latest population fit made on or before ``as_of`` and less than ``every_days`` before it."""
    if not table_exists(con, SCHEMA, PURCHASE_FITS):
        return None
    frame = con.execute(f"select * from {SCHEMA}.{PURCHASE_FITS} where fitted_on <= ? and fitted_on > ? "
                        "order by fitted_on desc limit 1", [as_of, as_of - timedelta(days=every_days)]).df()
    return frame.iloc[0].to_dict() if len(frame) else None


def save_purchase_fit(con: duckdb.DuckDBPyConnection, row: dict) -> None:
    replace_rows(con, SCHEMA, PURCHASE_FITS, pd.DataFrame([row]), {"fitted_on": row["fitted_on"]})


def write_user_purchases(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> None:
    replace_rows(con, SCHEMA, USER_PURCHASES, frame)


def drop_user_purchases(con: duckdb.DuckDBPyConnection) -> None:
    """No purchase beliefs this run: none are kept from an earlier one either."""
    con.execute(f"drop table if exists {SCHEMA}.{USER_PURCHASES}")


def with_purchases(con: duckdb.DuckDBPyConnection, twins: pd.DataFrame) -> pd.DataFrame:
    """``twins`` with the purchase beliefs of ``twins.user_purchases`` beside them (the columns after ``as_of``,
    ``p_alive`` onwards), when the purchase model has run."""
    if not table_exists(con, SCHEMA, USER_PURCHASES):
        return twins
    columns = [c for c in con.execute(f"select * from {SCHEMA}.{USER_PURCHASES} limit 0").df().columns
               if c not in ("user_id", "as_of") and c not in twins.columns]
    with registered(con, twins[["user_id"]], "_twin_users") as users:
        extra = con.execute(f"select p.user_id, {', '.join(columns)} from {SCHEMA}.{USER_PURCHASES} p "
                            f"join {users} u using (user_id)").df()
    return twins.merge(extra, on="user_id", how="left")


EXPLANATIONS_VIEW = f"""
create or replace view {SCHEMA}.belief_explanations as
select
    b.user_id, b.belief, b.category, b.family, b.mean, b.lower_90, b.upper_90, b.confidence,
    b.n_evidence as raw_evidence, b.evidence_weighted, b.exposure_weighted, b.last_evidence_day,
    b.prior_1, b.prior_2, p.n_users as prior_users, p.method as prior_method,
    case b.family
        when 'beta' then printf('%.1f successes in %.1f trials (decayed; %.0f raw); Beta(%.2f, %.2f) prior',
            b.evidence_weighted, b.exposure_weighted, b.n_evidence, b.prior_1, b.prior_2)
        when 'gamma' then printf('%.1f events in %.1f days exposed (decayed; %.0f raw); Gamma(%.2f, %.2f) prior',
            b.evidence_weighted, b.exposure_weighted, b.n_evidence, b.prior_1, b.prior_2)
        else printf('%.1f of %.1f observations here (decayed; %.0f raw); Dirichlet prior %.2f of %.2f',
            b.evidence_weighted, b.exposure_weighted, b.n_evidence, b.prior_1, b.prior_2)
    end as why
from {SCHEMA}.user_beliefs b
left join {SCHEMA}.belief_priors p on p.belief = b.belief and p.category = b.category and p.as_of = b.as_of
"""


def explanations_view(con: duckdb.DuckDBPyConnection) -> str:
    """``belief_explanations``: every belief of user_beliefs in words and, once the purchase model has run, its
    beliefs too (P(alive), expected purchases and value per horizon, spend per purchase), each with the evidence
    and the population fit behind it."""
    if not (table_exists(con, SCHEMA, USER_PURCHASES) and table_exists(con, SCHEMA, PURCHASE_FITS)):
        return EXPLANATIONS_VIEW
    columns = con.execute(f"select * from {SCHEMA}.{USER_PURCHASES} limit 0").df().columns
    horizons = sorted(int(c[len("expected_purchases_"):-1]) for c in columns
                      if c.startswith("expected_purchases_") and c.endswith("d"))
    why_buying = ("printf('%d purchase days after the first in %d days observed, the last %d days ago; population "
                  "Pareto/NBD r %.3g, alpha %.3g, s %.3g, beta %.3g (fitted %s on %d users)', "
                  "cast(u.repeat_purchase_days as bigint), cast(u.days_observed as bigint), "
                  "cast(u.days_observed - u.days_to_last_purchase as bigint), f.r, f.alpha, f.s, f.beta, "
                  "strftime(f.fitted_on, '%Y-%m-%d'), f.users)")
    why_spend = ("printf('%d purchases with a value, mean %.2f; population Gamma-Gamma p %.3g, q %.3g, gamma %.3g "
                 "(a purchase is worth %.2f on average)', cast(u.valued_purchases as bigint), "
                 "coalesce(u.mean_purchase_value, 0), f.p, f.q, f.gamma, f.p * f.gamma / nullif(f.q - 1, 0))")
    rows = [("p_alive", "p_alive", None, why_buying),
            ("spend_per_purchase", "expected_spend_per_purchase", None, why_spend)]
    for h in horizons:
        rows += [(f"expected_purchases_{h}d", f"expected_purchases_{h}d", f"expected_purchases_{h}d", why_buying),
                 (f"value_{h}d", f"value_{h}d", f"value_{h}d", f"{why_buying} || '; ' || {why_spend}")]

    def select(belief: str, mean: str, interval: str | None, why: str) -> str:
        low, high = (f"u.{interval}_lower_90", f"u.{interval}_upper_90") if interval else ("null", "null")
        return (f"select u.user_id, '{belief}' as belief, '' as category, 'pareto_nbd' as family, u.{mean} as mean, "
                f"{low} as lower_90, {high} as upper_90, cast(null as double) as confidence, "
                "u.repeat_purchase_days as raw_evidence, cast(null as double) as evidence_weighted, "
                "u.days_observed as exposure_weighted, cast(null as timestamp) as last_evidence_day, "
                "cast(null as double) as prior_1, cast(null as double) as prior_2, f.users as prior_users, "
                f"'maximum likelihood' as prior_method, {why} as why from {SCHEMA}.{USER_PURCHASES} u "
                f"join {SCHEMA}.{PURCHASE_FITS} f on f.fitted_on = u.purchase_model_fitted_on")

    return EXPLANATIONS_VIEW.rstrip() + "\nunion all by name\n" + "\nunion all\n".join(select(*r) for r in rows)


DOCUMENTS = "user_documents"
# The parts a user's document keeps between their updates: the SQL that builds them, hashed, so a change of the
# builder rebuilds every user's parts (``stale_document_users``).
DOCUMENT_RECIPE = hashlib.sha256(document_parts_sql("select null as user_id").encode()).hexdigest()[:16]
STALE = "_stale_documents"


def stale_document_users(con: duckdb.DuckDBPyConnection, since: date | None) -> int:
    """The users whose ``document_parts`` must be built again, in the temp table ``_stale_documents``: a twin
    without parts, or with parts of another day or builder, or summarized on or after ``since`` (the run's first
    day: a re-run of a day summarizes again on the same day; None: every twin). The parts of those users and of
    users without a twin are deleted. Returns how many users are stale."""
    con.execute(f"create table if not exists {SCHEMA}.{PARTS} (user_id varchar, as_of timestamp, head varchar, "
                "tail varchar, recipe varchar)")
    fresh = "false" if since is None else "t.last_updated < ?"
    con.execute(f"""create or replace temp table {STALE} as
        select cast(t.user_id as varchar) as user_id from {SCHEMA}.user_twins t
        left join {SCHEMA}.{PARTS} p on p.user_id = cast(t.user_id as varchar)
        where p.user_id is null or p.as_of is distinct from cast(t.last_updated as timestamp)
              or p.recipe <> ? or not ({fresh})""", [DOCUMENT_RECIPE, *([] if since is None else [since])])
    con.execute(f"delete from {SCHEMA}.{PARTS} where user_id in (select user_id from {STALE}) "
                f"or user_id not in (select cast(user_id as varchar) from {SCHEMA}.user_twins)")
    return int(con.execute(f"select count(*) from {STALE}").fetchone()[0])


def write_document_parts(con: duckdb.DuckDBPyConnection, bucket: Bucket) -> int:
    """The parts of one bucket of the stale users (``stale_document_users``); returns how many were written."""
    users = f"select user_id from {STALE} where {DuckDBReader(con).bucket_filter(bucket)}"
    return int(con.execute(f"insert into {SCHEMA}.{PARTS} select *, '{DOCUMENT_RECIPE}' as recipe from "
                           f"({document_parts_sql(users)})").fetchone()[0])


def documents_query(con: duckdb.DuckDBPyConnection, where: str = "true") -> str:
    """The query of the twin documents of the users matching ``where`` (``document_sql.documents_sql``), over the
    columns the tables have (they vary with the settings and the layers that ran)."""

    def columns(schema: str, table: str) -> list[str] | None:
        if not table_exists(con, schema, table):
            return None
        return [r[0] for r in con.execute(f"select * from {schema}.{table} limit 0").description]

    return documents_sql(where, columns(SCHEMA, "user_twins") or [], columns("churn", "churn_predictions"),
                         table_exists(con, "simulation", "scenario_user_effects")
                         and table_exists(con, "simulation", "scenario_results"))


def create_documents_view(con: duckdb.DuckDBPyConnection) -> None:
    """``twins.user_documents``: every user's parts joined with the day's churn, value and what-helps members.
    The table of an older release gives way to the view."""
    if table_exists(con, SCHEMA, DOCUMENTS):
        con.execute(f"drop table {SCHEMA}.{DOCUMENTS}")
    con.execute(f"create or replace view {SCHEMA}.{DOCUMENTS} as {documents_query(con)}")


def sample_documents(con: duckdb.DuckDBPyConnection, size: int) -> list[str]:
    """About ``size`` documents (at most), of the users whose hash falls in one slot of ``twins / size``: a
    predicate each part of the view applies to its own scan (a list of ids becomes a join that reads every
    user's parts)."""
    twins = int(con.execute(f"select count(*) from {SCHEMA}.{PARTS}").fetchone()[0])
    slots = max(1, twins // max(1, size))
    query = documents_query(con, f"hash(user_id) % {slots} = 0")
    return [r[0] for r in con.execute(f"select document from ({query}) order by user_id limit {int(size)}")
            .fetchall()]


def document_inputs(con: duckdb.DuckDBPyConnection, bucket: Bucket) -> dict[str, pd.DataFrame | None]:
    """What the twin documents of a bucket of users are built from: their twins, their beliefs as of their last
    update (``belief_summaries``), churn predictions and the effects of the scenarios that simulated them (None
    where that layer has not written its table)."""
    where = DuckDBReader(con).bucket_filter(bucket)
    frames: dict[str, pd.DataFrame | None] = {
        "twins": con.sql(f"select * from {SCHEMA}.user_twins where {where} order by user_id").df(),
        "beliefs": con.sql(f"select * from {SCHEMA}.{SUMMARIES} where {where}").df(),
        "predictions": None, "effects": None}
    if table_exists(con, "churn", "churn_predictions"):
        frames["predictions"] = con.sql(f"select * from churn.churn_predictions where {where}").df()
    if table_exists(con, "simulation", "scenario_user_effects") and table_exists(con, "simulation", "scenario_results"):
        frames["effects"] = con.sql(
            "select e.*, r.intervention, r.effect_basis from simulation.scenario_user_effects e "
            "join simulation.scenario_results r using (scenario) "
            f"where r.status = 'simulated' and {DuckDBReader(con).bucket_filter(bucket, 'e.user_id')}").df()
    return frames
