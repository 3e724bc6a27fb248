"""The code location: assembles every layer's assets, checks, jobs and resources. Nothing else."""

from __future__ import annotations

import dagster as dg
from dagster_dbt import DbtCliResource

from dagster_twins.automation import daily_schedule, new_landing_files
from dagster_twins.churn.assets import churn_model
from dagster_twins.ingestion.assets import raw_sources
from dagster_twins.ingestion.resources import LandingResource
from dagster_twins.jobs import twins_pipeline_job
from dagster_twins.quality.assets import build_report_asset
from dagster_twins.quality.checks import gx_checks
from dagster_twins.serving.assets import build_serving_asset
from dagster_twins.settings import DBT_PROJECT_DIR, Settings
from dagster_twins.simulation.assets import simulation_assets
from dagster_twins.transform.assets import dbt_models
from dagster_twins.transform.project import dbt_executable
from dagster_twins.twins.assets import twins_beliefs
from dagster_twins.twins.parallel import twins_rebuild_job
from dagster_twins.warehouse.resources import WarehouseResource


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "warehouse": WarehouseResource(path=str(settings.warehouse_path), serving_path=str(settings.serving_file),
                                       engine="spark" if settings.dbt_target.startswith("spark") else "duckdb",
                                       user_buckets=settings.user_buckets, spark_dir=str(settings.spark_dir),
                                       memory_limit=settings.duckdb_memory_limit),
        "landing": LandingResource(
            landing_dir=str(settings.landing_dir), sources_config=str(settings.sources_config)
        ),
        "dbt": DbtCliResource(
            project_dir=str(DBT_PROJECT_DIR),
            profiles_dir=str(DBT_PROJECT_DIR),
            target=settings.dbt_target,
            dbt_executable=dbt_executable(),
        ),
    }


def build_definitions(settings: Settings) -> dg.Definitions:
    assets = [raw_sources, dbt_models, twins_beliefs, churn_model, *simulation_assets(settings.scenarios_dir)]
    # The data-quality report gathers every check of the run, so it comes after every asset it reports on.
    assets.append(build_report_asset([key for asset in assets for key in asset.keys]))
    # The serving copy for BI tools is published last: it depends on every other asset.
    assets.append(build_serving_asset([key for asset in assets for key in asset.keys]))
    return dg.Definitions(
        assets=assets,
        asset_checks=gx_checks(settings.expectations_dir, {key for asset in assets for key in asset.keys}),
        jobs=[twins_pipeline_job, twins_rebuild_job],
        schedules=[daily_schedule],
        sensors=[new_landing_files],
        resources=build_resources(settings),
        # DuckDB allows one writer at a time, so the steps of a run execute one after another (the parallel
        # rebuild job sets its own executor: only its first and last steps open the warehouse).
        executor=dg.in_process_executor,
    )


defs = build_definitions(Settings.from_env())
