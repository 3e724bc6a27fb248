"""Run the whole pipeline (or a selection) for a range of landing days, in this process.

The benchmark and the tests use this; the command line launches its runs through the instance instead
(``launch.py``), so that they belong to the code location; `dagster dev` runs the same job through the UI.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import dagster as dg

from dagster_twins.ingestion.resources import LandingResource
from dagster_twins.launch import LaunchedRun
from dagster_twins.layers import layer_of
from dagster_twins.partitions import RANGE_END_TAG, RANGE_START_TAG
from dagster_twins.settings import PROJECT_ROOT, Settings, apply_offline_env


def default_dagster_home() -> Path:
    """The project's own Dagster instance folder, so runs from the command line show up in `dagster dev`."""
    return PROJECT_ROOT / "dagster_home"


# A new instance's dagster.yaml: no telemetry (nothing may need the internet), and ten minutes for the code server to
# load the definitions (Dagster's default, three minutes, is too short on a busy two-core machine: the command then
# failed with "Timed out waiting for gRPC server to start").
INSTANCE_YAML = "telemetry:\n  enabled: false\ncode_servers:\n  local_startup_timeout: 600\n"


def ensure_dagster_home() -> Path:
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(default_dagster_home())))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_YAML)
    return home


def landing_span(settings: Settings) -> tuple[date, date] | None:
    """First and last landing day found in the landing folder (None when there are no files)."""
    return LandingResource.from_settings(settings).landing_span()


def settings_tags(settings: Settings) -> dict[str, str]:
    """The settings a run used, as its tags (shown on the run's page in the UI): each with where it came from."""
    tags = {f"twins/{key}": value for key, value in settings.described().items()}
    tags["twins/settings_file"] = str(settings.settings_file or "none")
    return tags


def run_tags(settings: Settings, start: date, end: date, dbt_output_to_file: bool = False) -> dict[str, str]:
    """A run's tags: its range of landing days (one run for the range), the settings, where dbt's output goes."""
    from dagster_twins.transform.assets import DBT_OUTPUT_TAG

    return {RANGE_START_TAG: start.isoformat(), RANGE_END_TAG: end.isoformat(), **settings_tags(settings),
            **({DBT_OUTPUT_TAG: "file"} if dbt_output_to_file else {})}


def run_pipeline(
    settings: Settings,
    start: date,
    end: date,
    *,
    instance: dg.DagsterInstance | None = None,
    selection: Sequence[dg.AssetKey] | None = None,
    layer: str | None = None,
    raise_on_error: bool = True,
    run_config: dict | None = None,
    dbt_output_to_file: bool = False,
) -> dg.ExecuteInProcessResult:
    """Materialize the pipeline for landing days ``start`` .. ``end`` (inclusive) as one run.

    ``layer`` limits the run to one layer's assets: "ingestion" (raw), "transform" (dbt), "twins", "churn" or
    "simulation". ``run_config`` is Dagster run config (``ops: {churn_model: {config: {...}}}``).
    """
    apply_offline_env()
    from dagster_twins.location import build_definitions

    job = build_definitions(settings).resolve_job_def("twins_pipeline")
    if layer is not None:
        selection = sorted(key for key in job.asset_layer.executable_asset_keys if layer_of(key.path) == layer)
    return job.execute_in_process(
        instance=instance,
        tags=run_tags(settings, start, end, dbt_output_to_file),
        asset_selection=list(selection) if selection else None,
        raise_on_error=raise_on_error,
        run_config=run_config,
    )


def asset_seconds(result: dg.ExecuteInProcessResult | LaunchedRun) -> dict[str, float]:
    """Each materialized asset's own working time, from the ``seconds`` its metadata reports (process start-up,
    imports and Dagster's bookkeeping excluded)."""
    out: dict[str, float] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        seconds = materialization.metadata.get("seconds")
        if seconds is not None:
            out[materialization.asset_key.to_user_string()] = float(seconds.value)
    return out
