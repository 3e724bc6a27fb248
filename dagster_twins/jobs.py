"""Jobs: the whole pipeline over a partition window."""

from __future__ import annotations

import dagster as dg

twins_pipeline_job = dg.define_asset_job(
    "twins_pipeline",
    selection=dg.AssetSelection.all(),
    description="Landing files -> raw -> dbt staging, intermediate and marts, for a day or a range of days.",
)
