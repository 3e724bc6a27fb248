"""Column mapping from a user's landing files to the data contract, read from YAML configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from dagster_twins.contract import DAYS_AFTER_LANDING, DEFAULT_NULL_VALUES, EARLIEST_PLAUSIBLE_TIME, SOURCES


class MappingConfigError(ValueError):
    """The sources configuration file is not valid."""


@dataclass(frozen=True)
class SourceMapping:
    source: str
    folder: str
    columns: dict[str, str] = field(default_factory=dict)  # contract column -> column name in the files
    timestamp_format: str | None = None
    # The quarantine policy's knobs (top-level `null_values` and `plausible_times` in the sources config).
    null_values: tuple[str, ...] = DEFAULT_NULL_VALUES
    earliest_time: date = EARLIEST_PLAUSIBLE_TIME
    days_after_landing: int = DAYS_AFTER_LANDING

    def file_column(self, contract_column: str) -> str:
        return self.columns.get(contract_column, contract_column)


def default_mappings() -> dict[str, SourceMapping]:
    return {name: SourceMapping(name, name) for name in SOURCES}


def parse_mappings(config: dict[str, Any] | None, origin: str = "<config>") -> dict[str, SourceMapping]:
    """Validate a parsed sources config; unknown sources or contract columns are errors, not ignored."""
    config = config or {}
    unknown_keys = set(config) - {"sources", "null_values", "plausible_times"}
    if unknown_keys:
        raise MappingConfigError(f"{origin}: unknown top-level keys {sorted(unknown_keys)}; expected 'sources' "
                                 "(and optionally 'null_values', 'plausible_times')")
    policy = _policy(config, origin)
    sources = config.get("sources") or {}
    if not isinstance(sources, dict):
        raise MappingConfigError(f"{origin}: 'sources' must be a mapping of source name to settings")
    mappings = {name: SourceMapping(name, name, **policy) for name in SOURCES}
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
            **policy,
        )
    return mappings


def _policy(config: dict[str, Any], origin: str) -> dict[str, Any]:
    """``null_values: [NULL, n/a, ...]`` and ``plausible_times: {earliest: 1970-01-01, days_after_landing: 1}``."""
    policy: dict[str, Any] = {}
    if "null_values" in config:
        values = config["null_values"] or []
        if not isinstance(values, list) or not all(isinstance(v, str | int | float) for v in values):
            raise MappingConfigError(f"{origin}: 'null_values' must be a list of words")
        policy["null_values"] = tuple(str(v).strip().lower() for v in values)
    times = config.get("plausible_times") or {}
    if not isinstance(times, dict) or set(times) - {"earliest", "days_after_landing"}:
        raise MappingConfigError(f"{origin}: 'plausible_times' takes 'earliest' (a date) and 'days_after_landing'")
    if "earliest" in times:
        earliest = times["earliest"]
        try:
            policy["earliest_time"] = earliest if isinstance(earliest, date) else date.fromisoformat(str(earliest))
        except ValueError as exc:
            raise MappingConfigError(f"{origin}: plausible_times.earliest is not a date: {earliest!r}") from exc
    if "days_after_landing" in times:
        days = times["days_after_landing"]
        if not isinstance(days, int) or days < 0:
            raise MappingConfigError(f"{origin}: plausible_times.days_after_landing must be a whole number >= 0")
        policy["days_after_landing"] = days
    return policy


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
