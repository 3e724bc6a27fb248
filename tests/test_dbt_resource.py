"""The project's dbt resource learns the dbt CLI's version without starting dbt, and the same version as
dagster-dbt's own subprocess check; it builds no adapter handle (nothing of the project fetches through it)."""

from __future__ import annotations

from dagster_dbt import DbtCliResource

from dagster_twins.settings import DBT_PROJECT_DIR
from dagster_twins.transform.project import dbt_executable
from dagster_twins.transform.resource import ProjectDbtCliResource


def _resource(cls: type[DbtCliResource]) -> DbtCliResource:
    return cls(project_dir=str(DBT_PROJECT_DIR), profiles_dir=str(DBT_PROJECT_DIR), dbt_executable=dbt_executable())


def test_the_cli_version_is_the_one_dbt_reports():
    assert _resource(ProjectDbtCliResource)._cli_version == _resource(DbtCliResource)._cli_version


def test_no_adapter_handle_is_built():
    assert _resource(ProjectDbtCliResource)._initialize_dbt_core_adapter(["build"]) is None
