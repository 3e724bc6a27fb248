"""Jobs: the whole pipeline over a partition window."""

from __future__ import annotations

import dagster as dg

from dagster_twins.contract import RAW_SCHEMA, SOURCE_NAMES

# What the daily run must refresh: the marts BI reads, the twins, the churn predictions. Their freshness checks
# (automation.freshness_checks) turn red when the last update is older than a day and a bit after 04:00 UTC; they
# are evaluated by a sensor, not by the pipeline's own runs (which would only ever see them fresh).
FRESH_DAILY = tuple(dg.AssetKey(path) for path in (["marts", "fct_events"], ["marts", "fct_user_daily_features"],
                                                   ["twins", "user_twins"], ["churn", "churn_predictions"]))
FRESHNESS_CHECK = "freshness_check"  # the name Dagster's freshness-check factory gives each check
# The raw tables' freshness (automation.build_source_freshness): dbt's source rules, warn after 2 days and error
# after 7 by default, evaluated by its own sensor and left out of the pipeline's runs as the checks above are.
SOURCE_FRESHNESS_CHECK = "source_freshness"
RAW_SOURCE_KEYS = tuple(dg.AssetKey([RAW_SCHEMA, name]) for name in SOURCE_NAMES)

twins_pipeline_job = dg.define_asset_job(
    "twins_pipeline",
    selection=dg.AssetSelection.all() - dg.AssetSelection.checks(
        *(dg.AssetCheckKey(k, FRESHNESS_CHECK) for k in FRESH_DAILY),
        *(dg.AssetCheckKey(k, SOURCE_FRESHNESS_CHECK) for k in RAW_SOURCE_KEYS)),
    description="The whole pipeline for a landing day or a range of days: ingestion (landing files -> raw), dbt "
    "(staging -> intermediate -> marts), twins (beliefs per user), churn (as-of forecasts), simulation (scenarios), "
    "quality (the data-quality report), serving (the read-only copy for BI).",
)
