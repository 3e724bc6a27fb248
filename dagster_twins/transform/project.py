"""The one DbtProject object. Its manifest must exist before Definitions load: set-up runs
``dagster-dbt project prepare-and-package --file dagster_twins/transform/project.py`` (or ``dbt parse``)."""

from __future__ import annotations

from dagster_dbt import DbtProject

from dagster_twins.settings import DBT_PROJECT_DIR, apply_offline_env

apply_offline_env()

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
# During `dagster dev` the manifest is rebuilt from the project on load, so model edits show up at once.
dbt_project.prepare_if_dev()
