"""The one DbtProject object. Its manifest must exist before Definitions load: set-up runs
``dagster-dbt project prepare-and-package --file dagster_twins/transform/project.py`` (or ``dbt parse``)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from dagster_dbt import DbtProject

from dagster_twins.settings import DBT_PROJECT_DIR, apply_offline_env

apply_offline_env()

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
# During `dagster dev` the manifest is rebuilt from the project on load, so model edits show up at once.
dbt_project.prepare_if_dev()


def dbt_executable() -> str:
    """The dbt installed beside this Python (the project's virtualenv), whether or not it is activated."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")
