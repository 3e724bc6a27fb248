"""Assembles the code location from ``Settings``: every layer's assets, checks, jobs, schedules, sensors and
resources. ``definitions.py`` calls it with the settings of the file and the environment; the CLI and the tests
call it with their own."""

from __future__ import annotations

import warnings
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from dagster_twins.automation import (
    build_source_freshness,
    daily_schedule,
    freshness_checks,
    freshness_sensor,
    new_landing_files,
)
from dagster_twins.churn.assets import build_churn_assets
from dagster_twins.ingestion.assets import build_raw_sources
from dagster_twins.ingestion.resources import LandingResource
from dagster_twins.jobs import twins_pipeline_job
from dagster_twins.layers import LAYER_OWNERS, layer_of
from dagster_twins.partitions import daily_partitions
from dagster_twins.quality.assets import build_report_asset
from dagster_twins.quality.checks import gx_checks
from dagster_twins.serving.assets import build_serving_asset
from dagster_twins.settings import DBT_PROJECT_DIR, Settings
from dagster_twins.simulation.assets import simulation_assets
from dagster_twins.transform.assets import build_dbt_assets
from dagster_twins.transform.project import dbt_executable
from dagster_twins.transform.resource import ProjectDbtCliResource
from dagster_twins.twins.assets import build_documents_asset, build_twins_assets
from dagster_twins.twins.parallel import build_rebuild_job
from dagster_twins.twins.purchase_assets import build_purchase_asset
from dagster_twins.warehouse.resources import WarehouseResource


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "warehouse": WarehouseResource(path=str(settings.warehouse_path), serving_path=str(settings.serving_file),
                                       engine="spark" if settings.dbt_target.startswith("spark") else "duckdb",
                                       user_buckets=settings.user_buckets, spark_dir=str(settings.spark_dir),
                                       memory_limit=settings.duckdb_memory_limit,
                                       spark_master=settings.spark_master,
                                       spark_shuffle_partitions=settings.spark_shuffle_partitions),
        "landing": LandingResource.from_settings(settings),
        "dbt": ProjectDbtCliResource(
            project_dir=str(DBT_PROJECT_DIR),
            profiles_dir=str(DBT_PROJECT_DIR),
            target=settings.dbt_target,
            dbt_executable=dbt_executable(),
        ),
    }


def partition_start(settings: Settings) -> date:
    """The first landing-day partition: the settings' partition_start, else the earliest landing day of the files
    in the landing folder, else yesterday (no files yet)."""
    if settings.partition_start is not None:
        return settings.partition_start
    span = LandingResource.from_settings(settings).landing_span()
    return span[0] if span else datetime.now(UTC).date() - timedelta(days=1)


def with_layer(spec: dg.AssetSpec) -> dg.AssetSpec:
    """An asset with its layer as a tag and the layer's owners (the UI filters and the catalog show both)."""
    layer = layer_of(spec.key.path)
    return spec.merge_attributes(tags={"layer": layer}, owners=list(LAYER_OWNERS[layer]))


def last_assets(assets: list[dg.AssetsDefinition]) -> list[dg.AssetKey]:
    """The ends of the lineage of ``assets``: the assets of the steps no other of ``assets`` depends on. Depending on
    them orders a step after every step of ``assets`` (each one is upstream of an end) and skips it when any of them
    is skipped, with a few edges. A step counts as one: an asset no one reads (raw/quarantine, a dbt view at the end
    of the marts) is not an end when its step also writes an asset something reads, because that step comes first
    anyway; an edge from it would pull it across the whole graph."""
    upstream = {dep for asset in assets for deps in asset.asset_deps.values() for dep in deps}
    return sorted({key for asset in assets if not set(asset.keys) & upstream for key in asset.keys})


def build_definitions(settings: Settings) -> dg.Definitions:
    assets = [build_raw_sources(daily_partitions(partition_start(settings))), build_dbt_assets(settings),
              build_purchase_asset(settings), build_twins_assets(settings), build_churn_assets(settings),
              *simulation_assets(settings.scenarios_dir, settings)]
    # The twin documents read the twins, churn and simulation tables: after all of them (after their ends).
    assets.append(build_documents_asset(last_assets(assets[2:])))
    # The data-quality report gathers every check of the run, so it comes after every asset it reports on: it
    # depends on the last assets of the lineage (every other asset is upstream of one), not on each asset, so the
    # global lineage stays readable.
    assets.append(build_report_asset(last_assets(assets)))
    # The serving copy for BI tools is published last, after the report (so after everything).
    assets.append(build_serving_asset(last_assets(assets)))
    source_checks, source_sensor = build_source_freshness(settings)
    with warnings.catch_warnings():  # code references are beta in Dagster 1.13: one warning per asset otherwise
        warnings.simplefilter("ignore", dg.BetaWarning)
        referenced = dg.with_source_code_references(dg.map_asset_specs(with_layer, assets))
    return dg.Definitions(
        assets=referenced,
        asset_checks=[*gx_checks(settings.expectations_dir, {key for asset in assets for key in asset.keys}),
                      *freshness_checks, source_checks],
        jobs=[twins_pipeline_job, build_rebuild_job(settings)],
        schedules=[daily_schedule],
        sensors=[new_landing_files, freshness_sensor, source_sensor],
        resources=build_resources(settings),
        # DuckDB allows one writer at a time, so the steps of a run execute one after another (the parallel
        # rebuild job sets its own executor: only its first and last steps open the warehouse).
        executor=dg.in_process_executor,
    )

