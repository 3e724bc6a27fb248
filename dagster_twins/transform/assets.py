"""dbt models, seeds and tests as Dagster assets and asset checks, run for the partition window."""


import json
import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from dagster_twins.partitions import daily_partitions, single_run
from dagster_twins.resources import WarehouseResource
from dagster_twins.transform.project import dbt_project


class TwinsDbtTranslator(DagsterDbtTranslator):
    """Groups follow dbt's layers (the model's folder); seeds are reference data."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "seed":
            return "reference"
        fqn = dbt_resource_props.get("fqn", [])
        return fqn[1] if len(fqn) > 2 else "dbt"


translator = TwinsDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


def dbt_window_vars(context: dg.AssetExecutionContext) -> dict[str, str]:
    """The partition window as dbt vars: landing dates in [min_date, max_date)."""
    window = context.partition_time_window
    return {"min_date": window.start.date().isoformat(), "max_date": window.end.date().isoformat()}


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=translator,
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    name="dbt_models",
)
def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource):
    # dbt runs in a subprocess that inherits this environment; its profile reads TWINS_WAREHOUSE.
    os.environ["TWINS_WAREHOUSE"] = warehouse.path
    dbt_vars = dbt_window_vars(context)
    context.log.info(f"dbt build for landing window {dbt_vars['min_date']} .. {dbt_vars['max_date']} (exclusive)")
    yield from dbt.cli(["build", "--vars", json.dumps(dbt_vars)], context=context).stream()
