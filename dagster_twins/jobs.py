"""Jobs: the whole pipeline over a partition window."""

from __future__ import annotations

import dagster as dg

from dagster_twins.partitions import daily_partitions

twins_pipeline_job = dg.define_asset_job(
    "twins_pipeline",
    selection=dg.AssetSelection.all(),
    partitions_def=daily_partitions,
    description="Landing files -> raw -> dbt staging, intermediate and marts, for a day or a range of days.",
)
