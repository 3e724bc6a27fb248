"""Reading evidence and state from the warehouse and writing the twin tables back (schema ``twins``)."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pandas as pd

from dagster_twins.ingestion.warehouse import table_exists
from dagster_twins.twins.catalog import BELIEFS, evidence_sql
from dagster_twins.twins.state import STATE_COLUMNS, empty_state

SCHEMA = "twins"
STATE_DDL = f"""create table if not exists {SCHEMA}.belief_state (
    as_of date not null, user_id varchar not null, belief varchar not null, category varchar not null,
    stat_a double not null, stat_b double not null, n_evidence double not null, last_evidence_day timestamp
)"""


def landing_span(con: duckdb.DuckDBPyConnection) -> tuple[date, date] | None:
    row = con.execute("select min(landing_date), max(landing_date) from marts.fct_events").fetchone()
    return (row[0], row[1] + timedelta(days=1)) if row and row[0] else None


Bucket = tuple[int, int]  # (this bucket, number of buckets): the users whose id hashes to it


def _in_bucket(bucket: Bucket | None) -> str:
    return "" if bucket is None or bucket[1] == 1 else f" and hash(user_id) % {bucket[1]} = {bucket[0]}"


def saved_state_day(con: duckdb.DuckDBPyConnection, before: date) -> date | None:
    """The day of the latest saved state taken before ``before``."""
    con.execute(f"create schema if not exists {SCHEMA}")
    con.execute(STATE_DDL)
    return con.execute(f"select max(as_of) from {SCHEMA}.belief_state where as_of < ?", [before]).fetchone()[0]


def base_state(con: duckdb.DuckDBPyConnection, before: date,
               bucket: Bucket | None = None) -> tuple[pd.DataFrame, date | None]:
    """The latest saved state taken before ``before`` (empty, None when there is none), for one bucket of
    users or all of them."""
    as_of = saved_state_day(con, before)
    if as_of is None:
        return empty_state(), None
    state = con.execute(
        f"select {', '.join(STATE_COLUMNS)} from {SCHEMA}.belief_state where as_of = ?{_in_bucket(bucket)}", [as_of]
    ).df()
    return state, as_of


def landed_interactions(con: duckdb.DuckDBPyConnection, after: date | None, end: date) -> int:
    return int(con.execute(f"select count(*) from marts.fct_events where {_landed(after, end)}").fetchone()[0])


def _landed(after: date | None, end: date) -> str:
    landing_filter = f"landing_date < date '{end.isoformat()}'"
    if after is not None:
        landing_filter += f" and landing_date > date '{after.isoformat()}'"
    return landing_filter


def landed_evidence(con: duckdb.DuckDBPyConnection, after: date | None, end: date,
                    bucket: Bucket | None = None) -> pd.DataFrame:
    """Daily evidence from interactions that landed after ``after`` (exclusive) and before ``end``, for one
    bucket of users or all of them."""
    frame = con.execute(evidence_sql("marts.fct_events", _landed(after, end) + _in_bucket(bucket))).df()
    # A row can be dated after the day it landed (a source's clock ahead of the export's); its evidence counts
    # from the last landed day, since a state cannot hold evidence from its future.
    frame["day"] = pd.to_datetime(frame["day"]).clip(upper=pd.Timestamp(end - timedelta(days=1)))
    return frame


def users_and_categories(con: duckdb.DuckDBPyConnection, as_of: date) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Users known by ``as_of`` with the first day of their exposure (sign-up, but not before the data
    starts), and the categories of every share belief (topics from the taxonomy seed plus any seen)."""
    users = con.execute(
        "select user_id, cast(greatest(coalesce(signed_up_at, first_seen_at), "
        "(select min(occurred_at) from marts.fct_events)) as date) as first_day from marts.dim_users "
        "where coalesce(signed_up_at, first_seen_at) < ? order by user_id",
        [as_of + timedelta(days=1)],
    ).df()
    users["first_day"] = pd.to_datetime(users["first_day"])
    categories: dict[str, list[str]] = {}
    for name, belief in BELIEFS.items():
        if belief.dimension is None:
            categories[name] = []
            continue
        seen = [r[0] for r in con.execute(
            f"select distinct cast({belief.dimension} as varchar) from marts.fct_events "
            f"where {belief.dimension} is not null order by 1").fetchall()]
        if belief.dimension == "topic":
            taxonomy = con.execute("select distinct topic from reference.topic_taxonomy").fetchall()
            seen = sorted(set(seen) | {r[0] for r in taxonomy})
        categories[name] = seen
    return users, categories


def save_snapshot(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, as_of: date,
                  invalidate_from: date) -> None:
    """Append a dated snapshot; snapshots from ``invalidate_from`` on are dropped first (a re-run of an older
    window makes later ones stale)."""
    con.register("_twins_frame", frame)
    if not table_exists(con, SCHEMA, table):
        con.execute(f"create table {SCHEMA}.{table} as select * from _twins_frame limit 0")
    con.execute(f"delete from {SCHEMA}.{table} where as_of >= ?", [min(invalidate_from, as_of)])
    con.execute(f"insert into {SCHEMA}.{table} by name select * from _twins_frame")
    con.unregister("_twins_frame")


def prune_state(con: duckdb.DuckDBPyConnection, as_of: date, retention_days: int) -> None:
    con.execute(f"delete from {SCHEMA}.belief_state where as_of < ?", [as_of - timedelta(days=retention_days)])


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
