"""Every setting in one object, ``Settings``, read in one place: the settings file, then the environment, then the
command line, each overriding the one before. Nothing else reads the environment or the settings file.

The settings file is ``twins.yml`` at the project's root (``TWINS_SETTINGS`` or ``--settings`` name another);
``twins.example.yml`` documents every key. Relative paths in it are relative to the file's folder. Environment
variables, for deployments and tests:

| variable | key in the file | default |
|---|---|---|
| TWINS_SETTINGS | | twins.yml (absent: every default) |
| TWINS_WAREHOUSE | warehouse | data/warehouse.duckdb (dbt's profile reads the variable too) |
| TWINS_LANDING_DIR | landing_dir | data/landing |
| TWINS_SOURCES_CONFIG | sources (a path, or the mapping itself) | config/sources.yml |
| TWINS_PARTITION_START | partition_start | the earliest landing day found |
| TWINS_DBT_TARGET | dbt_target | duckdb |
| TWINS_SCENARIOS_DIR | scenarios_dir | scenarios |
| TWINS_EXPECTATIONS_DIR | expectations_dir | expectations |
| TWINS_SERVING_PATH | serving_path | serving/ beside the warehouse |
| TWINS_DUCKDB_MEMORY_LIMIT | duckdb_memory_limit | 3GB |
| TWINS_USER_BUCKETS | user_buckets | 0 (auto: about 50,000 users a bucket) |
| TWINS_SPARK_DIR | spark_dir | spark/ beside the warehouse |
| TWINS_SPARK_MASTER | spark_master | local[2] (a cluster: spark://host:7077; docs/scaling-out.md) |
| TWINS_SPARK_SHUFFLE_PARTITIONS | spark_shuffle_partitions | 2 (partitions after a shuffle: small for small data) |
| TWINS_API_HOST | api_host | 127.0.0.1 (the twin API of `dagster-twins serve`) |
| TWINS_API_PORT | api_port | 8765 |
| TWINS_API_TOKEN | api_token | none (no token required; set one to require `Authorization: Bearer <token>`) |
| TWINS_ONLINE_DIR | online_dir | online/ beside the warehouse (events observed between runs) |
| TWINS_API_READ_STORE | api_read_store | none (built from each serving copy; a path: a prebuilt one, benchmarks only) |

What the data means (file only; dbt, the twins and churn all read these): ``inactivity_days``,
``purchase_event_types``, ``feature_window_days``, ``half_life_days``, ``horizons``, ``text_taxonomy``, and the
purchase model's ``purchase_horizons``, ``discount_rate``, ``purchase_refit_every_days``,
``purchase_fit_max_users``. The Spark settings reach dbt's ``spark`` profile as the TWINS_SPARK_* variables
``dbt_environ`` sets (TWINS_SPARK_DRIVER_MEMORY is read there directly).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt"
DEFAULT_DATA_DIR = PROJECT_ROOT / "data"
DEFAULT_SETTINGS_FILE = PROJECT_ROOT / "twins.yml"
DEFAULT_MEMORY_LIMIT = "3GB"  # a cap makes DuckDB spill to disk instead of growing to 80% of RAM (its default)

# dbt and Dagster must never phone home: the project runs offline.
OFFLINE_ENV = {"DO_NOT_TRACK": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DAGSTER_DISABLE_TELEMETRY": "1",
               "GX_ANALYTICS_ENABLED": "false"}


class SettingsError(ValueError):
    """A settings file, variable or flag that cannot be used; the message names where it came from."""


def default_serving_path(warehouse_path: Path) -> Path:
    """Where the serving copy goes unless configured: serving/ beside the warehouse, same file name (DuckDB names
    the catalog after the file, and views refer to it)."""
    return warehouse_path.parent / "serving" / warehouse_path.name


def default_spark_dir(warehouse_path: Path) -> Path:
    """Where the Spark target keeps its tables, metastore and raw Parquet lake unless configured: spark/ beside
    the warehouse (data/spark by default)."""
    return warehouse_path.parent / "spark"


def reports_dir(warehouse_path: Path) -> Path:
    """Where plots and the data-quality report are written: reports/ beside the warehouse."""
    return warehouse_path.parent / "reports"


@dataclass(frozen=True)
class Settings:
    warehouse_path: Path
    landing_dir: Path
    sources_config: Path | None = None  # None: the contract's own column names (or ``sources`` inline)
    partition_start: date | None = None  # None: the earliest landing day found (definitions.partition_start)
    dbt_target: str = "duckdb"
    scenarios_dir: Path = PROJECT_ROOT / "scenarios"
    expectations_dir: Path = PROJECT_ROOT / "expectations"
    serving_path: Path | None = None  # None: default_serving_path(warehouse_path), which follows the warehouse
    user_buckets: int = 0  # 0: enough buckets for about 50,000 users each (dagster_twins.warehouse.buckets)
    spark_dir_override: Path | None = None  # None: default_spark_dir(warehouse_path), which follows the warehouse
    duckdb_memory_limit: str = DEFAULT_MEMORY_LIMIT
    spark_master: str = "local[2]"  # the Spark session's spark.master, dbt's and Python's: local[n] or spark://...
    spark_shuffle_partitions: int = 2  # spark.sql.shuffle.partitions (adaptive execution coalesces them further)
    # The source mapping written in the settings file itself (``sources:`` as a mapping), else None.
    sources: Mapping[str, Any] | None = None
    # What the data means, read by dbt (vars), the twins and the churn layer alike.
    inactivity_days: int = 30  # a user without subscription rows has lapsed after this many silent days
    purchase_event_types: tuple[str, ...] = ("purchase",)  # event types whose value is spend
    feature_window_days: int = 28  # "lately": recent behaviour is measured over this many days
    half_life_days: float = 60.0  # evidence loses half its weight in this many days (twins, churn's activity rate)
    horizons: tuple[int, ...] = (7, 14, 30, 90)  # days: P(churn within h) for active users, P(return) for lapsed
    text_taxonomy: bool = True  # topics and goals from text with dbt/seeds' taxonomy (the demo's, or yours)
    # Purchases and value (twins.user_purchases; docs/purchases.md).
    purchase_horizons: tuple[int, ...] = (30, 90, 365)  # days: expected purchases and value over each
    discount_rate: float = 0.10  # yearly rate future value is discounted at
    purchase_refit_every_days: int = 7  # the population fit is reused this many days, then refitted
    purchase_fit_max_users: int = 200_000  # the population fit uses a fixed hash sample of at most this many users
    # Per-user campaign effects (simulation.user_treatment_effects): churn within this many days of the send,
    # fitted on at most this many randomized users per campaign (a random sample; everyone is scored).
    uplift_horizon_days: int = 60
    uplift_max_fit_users: int = 200_000
    # Campaign effects (simulation.campaign_effects) and per-user effects are re-estimated when their inputs
    # changed and the stored estimate is this many days old; a day with unchanged inputs always reuses it.
    effects_refit_every_days: int = 7
    # The raw tables' freshness checks (automation.build_source_freshness), as dbt's source rules: days since the
    # last load before a warning, and before an error.
    source_freshness_warn_days: int = 2
    source_freshness_error_days: int = 7
    api_host: str = "127.0.0.1"  # the twin API binds here (docs/twin-api.md)
    api_port: int = 8765
    api_token: str | None = None  # None: no token; else requests need `Authorization: Bearer <token>`
    online_dir: Path | None = None  # None: online/ beside the warehouse (the API's store of observed events)
    api_read_store: Path | None = None  # benchmarks only: a prebuilt read store the API answers from (docs/twin-api.md)
    settings_file: Path | None = None  # the file these came from (None: defaults and environment only)
    origin: Mapping[str, str] = field(default_factory=dict)  # key -> where its value came from (file, env, flag)

    @property
    def serving_file(self) -> Path:
        """The serving copy's path: serving_path, or serving/ beside the warehouse."""
        return self.serving_path or default_serving_path(self.warehouse_path)

    @property
    def reports_dir(self) -> Path:
        return reports_dir(self.warehouse_path)

    @property
    def spark_dir(self) -> Path:
        """The Spark target's folder (absolute): warehouse/ (dbt's tables), metastore/ (Derby), lake/ (raw Parquet)."""
        return (self.spark_dir_override or default_spark_dir(self.warehouse_path)).resolve()

    def dbt_vars(self) -> dict[str, Any]:
        """The dbt vars these settings set (dbt_project.yml holds the same defaults for `dbt` run by hand)."""
        return {"inactivity_days": self.inactivity_days, "purchase_event_types": list(self.purchase_event_types),
                "feature_window_days": self.feature_window_days, "text_taxonomy": self.text_taxonomy}

    def dbt_environ(self) -> dict[str, str]:
        """The variables dbt's profile reads (dbt runs in a subprocess; its profile can read only the environment)."""
        return {"TWINS_WAREHOUSE": str(self.warehouse_path), "TWINS_DUCKDB_MEMORY_LIMIT": self.duckdb_memory_limit,
                **self.spark_environ()}

    def spark_environ(self) -> dict[str, str]:
        """The variables dbt's ``spark`` profile reads, which the Python assets' session is rendered from too."""
        return {"TWINS_SPARK_DIR": str(self.spark_dir), "TWINS_SPARK_MASTER": self.spark_master,
                "TWINS_SPARK_SHUFFLE_PARTITIONS": str(self.spark_shuffle_partitions)}

    def described(self) -> dict[str, str]:
        """Every setting by its key in the settings file, as text with where its value came from: for the run's
        tags and ``dagster-twins settings``."""
        resolved = {"serving_path": self.serving_file, "spark_dir_override": self.spark_dir,
                    "online_dir": self.online_dir or self.warehouse_path.parent / "online",
                    "sources": self.sources_config, "partition_start": self.partition_start or "the earliest "
                    "landing day"}
        shown = {}
        for key, name in FILE_KEYS.items():
            value = resolved.get(name, getattr(self, name))
            if name == "sources" and self.sources is not None:
                value = "inline: " + ", ".join(sorted(self.sources.get("sources") or {}))
            text = ", ".join(map(str, value)) if isinstance(value, tuple) else str(value)
            if name == "api_token":
                text = "set (hidden)" if value else "none"
            where = self.origin.get(name) or self.origin.get("sources_config" if name == "sources" else name)
            shown[key] = f"{text} ({where or 'default'})"
        return shown

    @classmethod
    def load(cls, settings_file: Path | None = None, environ: Mapping[str, str] | None = None,
             overrides: Mapping[str, Any] | None = None) -> Settings:
        """The settings file (``settings_file``, else TWINS_SETTINGS, else twins.yml when it exists), then the
        environment, then ``overrides`` (command-line flags, by field name; None values are ignored)."""
        env = os.environ if environ is None else environ
        path = settings_file or (Path(env["TWINS_SETTINGS"]) if env.get("TWINS_SETTINGS") else None)
        if path is None and DEFAULT_SETTINGS_FILE.exists():
            path = DEFAULT_SETTINGS_FILE
        values: dict[str, Any] = {}
        origin: dict[str, str] = {}
        if path is not None:
            path = path.expanduser().resolve()
            for key, value in _read_file(path).items():
                values[key], origin[key] = value, f"file {path.name}"
        later = {**{k: (v, f"env {_ENV_NAMES[k]}") for k, v in _read_environ(env).items()},
                 **{k: (_coerce(k, v, "command line"), "command line") for k, v in (overrides or {}).items()
                    if v is not None}}
        for key, (value, source) in later.items():
            values[key], origin[key] = value, source
            if key == "sources_config":
                values.pop("sources", None)  # a mapping file named later replaces the one written inline
        warehouse = values.pop("warehouse_path", DEFAULT_DATA_DIR / "warehouse.duckdb")
        values.setdefault("landing_dir", DEFAULT_DATA_DIR / "landing")
        if "sources_config" not in values and values.get("sources") is None:
            values["sources_config"] = PROJECT_ROOT / "config" / "sources.yml"
        return cls(warehouse_path=warehouse, settings_file=path, origin=origin, **values)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings as the code location sees them (file and environment; no flags)."""
        return cls.load(environ=environ)

    def with_overrides(self, **overrides: Any) -> Settings:
        """These settings with some replaced (by field name), each marked as set on the command line."""
        given = {k: _coerce(k, v, "command line") for k, v in overrides.items() if v is not None}
        return replace(self, **given, origin={**self.origin, **dict.fromkeys(given, "command line")})


# Settings-file keys and environment variables -> Settings fields.
FILE_KEYS = {"warehouse": "warehouse_path", "landing_dir": "landing_dir", "sources": "sources",
              "partition_start": "partition_start", "dbt_target": "dbt_target", "scenarios_dir": "scenarios_dir",
              "expectations_dir": "expectations_dir", "serving_path": "serving_path", "user_buckets": "user_buckets",
              "spark_dir": "spark_dir_override", "duckdb_memory_limit": "duckdb_memory_limit",
              "spark_master": "spark_master", "spark_shuffle_partitions": "spark_shuffle_partitions",
              "inactivity_days": "inactivity_days", "purchase_event_types": "purchase_event_types",
              "feature_window_days": "feature_window_days", "half_life_days": "half_life_days",
              "horizons": "horizons", "text_taxonomy": "text_taxonomy", "purchase_horizons": "purchase_horizons",
              "discount_rate": "discount_rate", "purchase_refit_every_days": "purchase_refit_every_days",
              "purchase_fit_max_users": "purchase_fit_max_users",
              "uplift_horizon_days": "uplift_horizon_days", "uplift_max_fit_users": "uplift_max_fit_users",
              "effects_refit_every_days": "effects_refit_every_days",
              "source_freshness_warn_days": "source_freshness_warn_days",
              "source_freshness_error_days": "source_freshness_error_days",
              "api_host": "api_host", "api_port": "api_port", "api_token": "api_token", "online_dir": "online_dir",
              "api_read_store": "api_read_store"}
_ENV_NAMES = {"warehouse_path": "TWINS_WAREHOUSE", "landing_dir": "TWINS_LANDING_DIR",
              "sources_config": "TWINS_SOURCES_CONFIG", "partition_start": "TWINS_PARTITION_START",
              "dbt_target": "TWINS_DBT_TARGET", "scenarios_dir": "TWINS_SCENARIOS_DIR",
              "expectations_dir": "TWINS_EXPECTATIONS_DIR", "serving_path": "TWINS_SERVING_PATH",
              "user_buckets": "TWINS_USER_BUCKETS", "spark_dir_override": "TWINS_SPARK_DIR",
              "duckdb_memory_limit": "TWINS_DUCKDB_MEMORY_LIMIT", "api_host": "TWINS_API_HOST",
              "spark_master": "TWINS_SPARK_MASTER", "spark_shuffle_partitions": "TWINS_SPARK_SHUFFLE_PARTITIONS",
              "api_port": "TWINS_API_PORT", "api_token": "TWINS_API_TOKEN", "online_dir": "TWINS_ONLINE_DIR",
              "api_read_store": "TWINS_API_READ_STORE"}
_PATHS = {"warehouse_path", "landing_dir", "sources_config", "scenarios_dir", "expectations_dir", "serving_path",
          "spark_dir_override", "online_dir", "api_read_store"}
_POSITIVE_INTS = {"inactivity_days", "feature_window_days", "purchase_refit_every_days", "purchase_fit_max_users",
                  "uplift_horizon_days", "uplift_max_fit_users", "effects_refit_every_days",
                  "source_freshness_warn_days", "source_freshness_error_days", "spark_shuffle_partitions"}


def _coerce(key: str, value: Any, where: str, base: Path | None = None) -> Any:
    """A value for field ``key`` from text or YAML, or a SettingsError naming ``where`` and the key."""
    try:
        if key in _PATHS:
            path = Path(str(value)).expanduser()
            return (base / path if base is not None and not path.is_absolute() else path).resolve()
        if key == "partition_start":
            return value if isinstance(value, date) else date.fromisoformat(str(value))
        if key == "api_port":
            port = int(value)
            if not 0 <= port <= 65535:
                raise ValueError("a TCP port is 0..65535 (0: any free port)")
            return port
        if key in ("user_buckets", *_POSITIVE_INTS):
            number = int(value)
            if number < (1 if key in _POSITIVE_INTS else 0):
                raise ValueError(f"{number} is too small")
            return number
        if key == "discount_rate":
            number = float(value)
            if not 0 <= number < 10:
                raise ValueError("a yearly rate between 0 and 10 (0.1 is 10%)")
            return number
        if key == "half_life_days":
            number = float(value)
            if not number > 0:
                raise ValueError("must be > 0")
            return number
        if key == "text_taxonomy":
            if isinstance(value, bool):
                return value
            if str(value).strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
                return str(value).strip().lower() in ("true", "yes", "on", "1")
            raise ValueError("true or false")
        if key in ("horizons", "purchase_horizons"):
            horizons = tuple(sorted({int(h) for h in (value if isinstance(value, list | tuple) else [value])}))
            if not horizons or horizons[0] < 1:
                raise ValueError("needs at least one horizon of 1 day or more")
            return horizons
        if key == "purchase_event_types":
            # Staging lower-cases event types, so they are compared in lower case.
            types = tuple(str(t).strip().lower() for t in (value if isinstance(value, list | tuple) else [value]))
            if not types:
                raise ValueError("needs at least one event type")
            return types
        return str(value)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{where}: {key}: {value!r} cannot be used: {exc}") from exc


def _read_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise SettingsError(f"{path}: no such settings file")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SettingsError(f"{path}: expected a mapping of settings")
    unknown = sorted(set(raw) - set(FILE_KEYS))
    if unknown:
        raise SettingsError(f"{path}: unknown keys {unknown}; the keys are {sorted(FILE_KEYS)}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None or value == "":
            continue  # an empty key keeps its default
        name = FILE_KEYS[key]
        if key == "sources":
            if isinstance(value, dict):
                values["sources"] = value if "sources" in value else {"sources": value}
            else:
                values["sources_config"] = _coerce("sources_config", value, str(path), base=path.parent)
            continue
        values[name] = _coerce(name, value, str(path), base=path.parent)
    return values


def _read_environ(env: Mapping[str, str]) -> dict[str, Any]:
    return {name: _coerce(name, env[var], f"environment variable {var}")
            for name, var in _ENV_NAMES.items() if env.get(var)}


def apply_offline_env() -> None:
    """Switch off telemetry for this process and the dbt subprocesses it starts, and make sure the dbt
    installed beside this Python is found even when the virtualenv is not activated (`.venv/bin/dagster dev`)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
