"""Column mapping from a user's landing files to the data contract, read from YAML configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dagster_twins.contract import SOURCES


class MappingConfigError(ValueError):
    """The sources configuration file is not valid."""


@dataclass(frozen=True)
class SourceMapping:
    source: str
    folder: str
    columns: dict[str, str] = field(default_factory=dict)  # contract column -> column name in the files
    timestamp_format: str | None = None

    def file_column(self, contract_column: str) -> str:
        return self.columns.get(contract_column, contract_column)


def default_mappings() -> dict[str, SourceMapping]:
    return {name: SourceMapping(name, name) for name in SOURCES}


def parse_mappings(config: dict[str, Any] | None, origin: str = "<config>") -> dict[str, SourceMapping]:
    """Validate a parsed sources config; unknown sources or contract columns are errors, not ignored."""
    config = config or {}
    unknown_keys = set(config) - {"sources"}
    if unknown_keys:
        raise MappingConfigError(f"{origin}: unknown top-level keys {sorted(unknown_keys)}; expected 'sources'")
    sources = config.get("sources") or {}
    if not isinstance(sources, dict):
        raise MappingConfigError(f"{origin}: 'sources' must be a mapping of source name to settings")
    mappings = default_mappings()
    for name, spec in sources.items():
        if name not in SOURCES:
            raise MappingConfigError(f"{origin}: unknown source {name!r}; the contract has {sorted(SOURCES)}")
        spec = spec or {}
        bad = set(spec) - {"folder", "columns", "timestamp_format"}
        if bad:
            raise MappingConfigError(f"{origin}: source {name!r} has unknown settings {sorted(bad)}")
        columns = spec.get("columns") or {}
        contract_columns = set(SOURCES[name].column_names)
        for contract_column, file_column in columns.items():
            if contract_column not in contract_columns:
                raise MappingConfigError(
                    f"{origin}: source {name!r} maps unknown contract column {contract_column!r}; "
                    f"its columns are {SOURCES[name].column_names}"
                )
            if not isinstance(file_column, str) or not file_column:
                raise MappingConfigError(f"{origin}: source {name!r} column {contract_column!r} needs a name")
        mappings[name] = SourceMapping(
            source=name,
            folder=str(spec.get("folder") or name),
            columns={str(k): str(v) for k, v in columns.items()},
            timestamp_format=spec.get("timestamp_format"),
        )
    return mappings


def load_mappings(path: Path | None) -> dict[str, SourceMapping]:
    """Mappings from a YAML file; no file means the contract's own names everywhere."""
    if path is None or not path.exists():
        return default_mappings()
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise MappingConfigError(f"{path}: not valid YAML: {exc}") from exc
    if config is not None and not isinstance(config, dict):
        raise MappingConfigError(f"{path}: expected a mapping with a 'sources' key")
    return parse_mappings(config, origin=str(path))
