"""The landing resource: where landing files are and how their columns map onto the data contract."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from dagster_twins.ingestion.mapping import SourceMapping, load_mappings


class LandingResource(dg.ConfigurableResource):
    """Where landing files are and how their columns map onto the data contract."""

    landing_dir: str
    sources_config: str = ""

    @property
    def root(self) -> Path:
        return Path(self.landing_dir)

    def mappings(self) -> dict[str, SourceMapping]:
        return load_mappings(Path(self.sources_config) if self.sources_config else None)
