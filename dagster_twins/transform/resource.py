"""The dbt resource: dagster-dbt's ``DbtCliResource`` without two start-up costs a build of this project does not
need, paid at every dbt step (about 3 s quiet, 10 s on a loaded machine, at any data size)."""

from __future__ import annotations

import sys
from functools import cached_property
from pathlib import Path
from typing import Any

from dagster_dbt import DbtCliResource
from packaging import version


class ProjectDbtCliResource(DbtCliResource):
    """- The CLI's version: dagster-dbt runs ``dbt --version`` in a subprocess (a whole dbt start) to learn it. The
      dbt beside this Python is this environment's dbt-core, whose version is imported instead.
    - A dbt adapter handle (profile, project and every macro parsed in this process): dagster-dbt uses it only for
      ``fetch_column_metadata``/``fetch_row_counts``, which this project does not call (DuckDB's one writer refuses
      them while dbt runs; ``transform.assets.with_tables`` reads the tables once dbt has ended)."""

    @cached_property
    def _cli_version(self) -> version.Version:
        if Path(self.dbt_executable).parent == Path(sys.executable).parent:
            from dbt.version import __version__

            return version.parse(__version__)
        return super()._cli_version

    def _initialize_dbt_core_adapter(self, args: Any) -> Any:  # noqa: ARG002 - dagster-dbt's signature
        return None
