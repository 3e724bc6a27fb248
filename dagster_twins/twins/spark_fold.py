"""The twins' fold as Spark tasks (issue 20, item 1, first layer): each user-hash bucket's landed evidence folded
into belief state inside a Spark task, by the same pure function the DuckDB path calls (``state.fold``), written
as a Spark table. A full rebuild: every interaction that landed before ``end``, folded as of ``end - 1 day``::

    from dagster_twins.twins.spark_fold import fold_on_spark

    rows = fold_on_spark(spark, end=date(2026, 4, 1), half_life_days=60, buckets=8)  # -> twins.belief_state

The twins asset still folds and summarizes on the driver, a bucket at a time (``twins/assets.py``); the summary
(priors from population moments, then a posterior per user) is not yet a Spark task.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import partial

import pandas as pd

from dagster_twins.twins.catalog import evidence_sql
from dagster_twins.twins.state import STATE_COLUMNS, empty_state, fold
from dagster_twins.twins.store import clip_to_landed, landed_filter
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
