"""The daily partitioning every asset shares: a partition is a landing day (UTC).

Landing files of a day are loaded by that day's partition; dbt's incremental models process the rows
that landed in the partition window, so late events are folded in when they arrive. All assets use
a single-run backfill policy, so a range of days (a backfill, or the demo's whole history) runs as
one Dagster run with one dbt invocation instead of one per day.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

import dagster as dg


def daily_partitions(start: date) -> dg.DailyPartitionsDefinition:
    """A partition per landing day from ``start`` (the definitions take it from the data or the settings) to today
    (end_offset=1: files landing today can be loaded early)."""
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC", end_offset=1)


single_run = dg.BackfillPolicy.single_run()

# Run tags Dagster sets on partitioned runs: one day, or a range run as one (single-run backfills).
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def window_dates(start: date, end_exclusive: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end_exclusive - start).days)]


def run_window(tags: Mapping[str, str]) -> tuple[date, date] | None:
    """The landing days of a run, as [first day, day after the last), from its partition tags; None when the
    run has no partition (an unpartitioned materialization covers everything that landed)."""
    start = tags.get(RANGE_START_TAG) or tags.get(PARTITION_TAG)
    end = tags.get(RANGE_END_TAG) or tags.get(PARTITION_TAG)
    if not (start and end):
        return None
    return date.fromisoformat(start[:10]), date.fromisoformat(end[:10]) + timedelta(days=1)
