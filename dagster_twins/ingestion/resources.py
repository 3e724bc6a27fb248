"""The landing resource: where landing files are and how their columns map onto the data contract."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import dagster as dg

from dagster_twins.ingestion.loader import files_by_landing_date, scratch_database
from dagster_twins.ingestion.mapping import SourceMapping, load_mappings, parse_mappings
from dagster_twins.settings import Settings


class LandingResource(dg.ConfigurableResource):
    """Where landing files are and how their columns map onto the data contract: a mapping file
    (``sources_config``), or the mapping written in the settings file (``sources_inline``, JSON)."""

    landing_dir: str
    sources_config: str = ""
    sources_inline: str = ""

    @property
    def root(self) -> Path:
        return Path(self.landing_dir)

    def mappings(self) -> dict[str, SourceMapping]:
        if self.sources_inline:
            return parse_mappings(json.loads(self.sources_inline), origin="the settings file's sources")
        return load_mappings(Path(self.sources_config) if self.sources_config else None)

    def landing_span(self) -> tuple[date, date] | None:
        """First and last landing day of the files in the landing folder (None when there are none)."""
        days: list[date] = []
        with scratch_database() as con:
            for source, mapping in self.mappings().items():
                days += files_by_landing_date(con, source, mapping, self.root).values()
        return (min(days), max(days)) if days else None

    @classmethod
    def from_settings(cls, settings: Settings) -> LandingResource:
        return cls(landing_dir=str(settings.landing_dir),
                   sources_config=str(settings.sources_config) if settings.sources_config else "",
                   sources_inline=json.dumps(settings.sources) if settings.sources is not None else "")
