"""The twins' fold and summary as Spark tasks (issue 20, item 1): each user-hash bucket's landed evidence folded
into belief state inside a Spark task, then each bucket's state summarized into beliefs and twins, by the same pure
functions the DuckDB path calls (``state.fold``, ``summarize.posteriors``, ``summarize.roll_up``), written as Spark
tables. A full rebuild: every interaction that landed before ``end``, as of ``end - 1 day``::

    from dagster_twins.twins.spark_fold import fold_on_spark, summarize_on_spark

    rows = fold_on_spark(spark, end=date(2026, 4, 1), half_life_days=60, buckets=8)  # -> twins.belief_state
    summary = summarize_on_spark(spark, end=date(2026, 4, 1), half_life_days=60, buckets=8)
    # -> twins.user_beliefs and twins.user_twins (Spark tables), summary.priors on the driver

Between the two stages the driver estimates the population's empirical-Bayes priors (``summarize.PriorInputs``),
reading the state a bucket at a time into arrays of about a hundred bytes a user, as the DuckDB path does: the one
population-sized thing on the driver (1 GB at 10 million users). The priors travel to the tasks pickled with the
summary function. Not yet: the twins asset still runs on the driver, a bucket at a time (``twins/assets.py``);
incremental runs, the purchase columns of ``user_twins`` and the checks are the asset's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import partial

import pandas as pd

from dagster_twins.twins.catalog import evidence_sql
from dagster_twins.twins.state import STATE_COLUMNS, empty_state, fold
from dagster_twins.twins.store import FIRST_DAY, KNOWN_BY, belief_categories, clip_to_landed, known_users, landed_filter
from dagster_twins.twins.summarize import PriorInputs, Priors, posteriors, roll_up
from dagster_twins.warehouse.buckets import SparkReader
from dagster_twins.warehouse.spark_tasks import map_buckets

STATE_TABLE = "twins.belief_state"
# The state's columns as Spark types (state.STATE_COLUMNS, in order).
STATE_SCHEMA = ("user_id string, belief string, category string, stat_a double, stat_b double, n_evidence double, "
                "last_evidence_day timestamp")


def fold_bucket(evidence: pd.DataFrame, end: date, half_life_days: float) -> pd.DataFrame:
    """One bucket's belief state as of ``end - 1 day`` from its landed evidence (a full rebuild): what the twins
    asset computes for a bucket on DuckDB, for one Spark task."""
    state = fold(empty_state(), None, clip_to_landed(evidence, end), end - timedelta(days=1), half_life_days)
    return state[STATE_COLUMNS]


def fold_on_spark(spark, end: date, half_life_days: float, buckets: int, table: str = STATE_TABLE) -> int:
    """Folds every user's evidence landed before ``end`` as Spark tasks, one a bucket, into ``table``; returns
    its rows."""
    sql = evidence_sql("marts.fct_events", landed_filter(None, end))
    return map_buckets(spark, sql, buckets, partial(fold_bucket, end=end, half_life_days=half_life_days),
                       STATE_SCHEMA, table)


BELIEFS_TABLE, TWINS_TABLE = "twins.user_beliefs", "twins.user_twins"
# summarize.BELIEF_COLUMNS and as_of, as Spark types.
BELIEFS_SCHEMA = ("user_id string, belief string, category string, family string, param_1 double, param_2 double, "
                  "mean double, lower_90 double, upper_90 double, confidence double, evidence_weighted double, "
                  "exposure_weighted double, n_evidence double, last_evidence_day timestamp, prior_1 double, "
                  "prior_2 double, as_of timestamp")
# summarize.roll_up's columns, as Spark types.
TWINS_SCHEMA = ("user_id string, top_interests string, top_interest string, primary_goal string, "
                "preferred_channel string, preferred_format string, rec_click_propensity double, "
                "campaign_response_propensity double, interactions_per_week double, purchases_per_week double, "
                "tickets_per_30_days double, overall_confidence double, last_evidence_day timestamp, "
                "last_updated timestamp")


@dataclass(frozen=True)
class SparkSummary:
    """What ``summarize_on_spark`` wrote: rows of each table, the users summarized and the priors used."""

    belief_rows: int
    twin_rows: int
    users: int
    priors: Priors


def summarize_bucket_rows(rows: pd.DataFrame, categories: dict[str, list[str]], priors: Priors, as_of: date,
                          half_life_days: float) -> pd.DataFrame:
    """One bucket's ``user_beliefs`` rows from its known users left-joined with their state (a user without state
    has one row of nulls beside their first day, and gets the priors' rows)."""
    users = rows[["user_id", "first_day"]].drop_duplicates("user_id").sort_values("user_id", ignore_index=True)
    users["first_day"] = pd.to_datetime(users["first_day"])
    state = rows.loc[rows["belief"].notna(), STATE_COLUMNS].reset_index(drop=True)
    return posteriors(state, users, categories, priors, as_of, half_life_days)


def roll_up_bucket(beliefs: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """One bucket's ``user_twins`` rows from its ``user_beliefs``."""
    return roll_up(beliefs, as_of)


def spark_priors(spark, as_of: date, half_life_days: float, buckets: int,
                 state_table: str = STATE_TABLE) -> tuple[pd.DataFrame, dict[str, list[str]], Priors]:
    """The known users (user_id order), the share beliefs' categories and the population's priors, from the state
    in ``state_table`` read to the driver one bucket at a time."""
    reader = SparkReader(spark)
    users = known_users(reader, as_of, buckets)
    categories = belief_categories(reader)
    inputs = PriorInputs(users, categories, as_of, half_life_days)
    for b in range(buckets):
        inputs.add(reader.frame(f"select user_id, belief, category, stat_a, stat_b, n_evidence from {state_table} "
                                f"where {reader.bucket_of(buckets)} = {b}"))
    return users, categories, inputs.estimate()


def summarize_on_spark(spark, end: date, half_life_days: float, buckets: int, state_table: str = STATE_TABLE,
                       beliefs_table: str = BELIEFS_TABLE, twins_table: str = TWINS_TABLE) -> SparkSummary:
    """Summarizes the state of ``state_table`` (``fold_on_spark``'s, as of ``end - 1 day``) as Spark tasks, a bucket
    each: the beliefs of every user known by then into ``beliefs_table``, their twins into ``twins_table``."""
    as_of = end - timedelta(days=1)
    users, categories, priors = spark_priors(spark, as_of, half_life_days, buckets, state_table)
    known = (f"select user_id, {FIRST_DAY} as first_day from marts.dim_users "
             f"where {KNOWN_BY} < date '{end.isoformat()}'")
    sql = (f"select u.user_id, u.first_day, s.belief, s.category, s.stat_a, s.stat_b, s.n_evidence, "
           f"s.last_evidence_day from ({known}) u left join {state_table} s on s.user_id = u.user_id")
    belief_rows = map_buckets(spark, sql, buckets, partial(summarize_bucket_rows, categories=categories,
                                                           priors=priors, as_of=as_of, half_life_days=half_life_days),
                              BELIEFS_SCHEMA, beliefs_table)
    twin_rows = map_buckets(spark, f"select * from {beliefs_table}", buckets,
                            partial(roll_up_bucket, as_of=as_of), TWINS_SCHEMA, twins_table)
    return SparkSummary(belief_rows, twin_rows, len(users), priors)
