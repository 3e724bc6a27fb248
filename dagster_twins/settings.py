"""Where things live: one place for every path and switch, read from the environment with defaults
that work out of the box from a fresh clone.

| variable | default | what |
|---|---|---|
| TWINS_WAREHOUSE | data/warehouse.duckdb | the DuckDB file the pipeline writes (dbt's profile reads it too) |
| TWINS_LANDING_DIR | data/landing | landing files, one folder per source |
| TWINS_SOURCES_CONFIG | config/sources.yml | column mapping from your files to the data contract |
| TWINS_PARTITION_START | 2025-01-01 | first daily partition |
| TWINS_DBT_TARGET | duckdb | dbt target in dbt/profiles.yml |
| TWINS_SCENARIOS_DIR | scenarios | scenario specs, one YAML file each (one simulation asset per spec) |
| TWINS_EXPECTATIONS_DIR | expectations | Great Expectations suites, one JSON file each (one asset check per suite) |
| TWINS_SERVING_PATH | data/serving/warehouse.duckdb | read-only copy for BI, replaced at the end of each run |
| TWINS_DUCKDB_MEMORY_LIMIT | 3GB | DuckDB's memory cap for the pipeline's connections (dbt's profile reads it too) |
| TWINS_USER_BUCKETS | 0 (auto: ~50,000 users a bucket) | user-hash buckets the Python assets read and fold at a time |
| TWINS_SPARK_DIR | data/spark (beside the warehouse) | Spark target: its tables, Derby metastore and raw Parquet lake |
| TWINS_SPARK_MASTER | local[2] | the local Spark session (these three: read by dbt's `spark` profile) |
| TWINS_SPARK_DRIVER_MEMORY | 1g | its driver's memory |
| TWINS_SPARK_SHUFFLE_PARTITIONS | 2 | its spark.sql.shuffle.partitions |
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt"
DEFAULT_DATA_DIR = PROJECT_ROOT / "data"
DEFAULT_MEMORY_LIMIT = "3GB"  # a cap makes DuckDB spill to disk instead of growing to 80% of RAM (its default)

# dbt and Dagster must never phone home: the project runs offline.
OFFLINE_ENV = {"DO_NOT_TRACK": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DAGSTER_DISABLE_TELEMETRY": "1",
               "GX_ANALYTICS_ENABLED": "false"}


def default_serving_path(warehouse_path: Path) -> Path:
    """Where the serving copy goes unless TWINS_SERVING_PATH says: serving/ beside the warehouse, same file name
    (DuckDB names the catalog after the file, and views refer to it)."""
    return warehouse_path.parent / "serving" / warehouse_path.name


def default_spark_dir(warehouse_path: Path) -> Path:
    """Where the Spark target keeps its tables, metastore and raw Parquet lake unless TWINS_SPARK_DIR says: spark/
    beside the warehouse (data/spark by default)."""
    return warehouse_path.parent / "spark"


def reports_dir(warehouse_path: Path) -> Path:
    """Where plots and the data-quality report are written: reports/ beside the warehouse."""
    return warehouse_path.parent / "reports"


def _path(environ: Mapping[str, str], key: str, default: Path | None) -> Path | None:
    value = environ.get(key)
    return Path(value).expanduser().resolve() if value else default


@dataclass(frozen=True)
class Settings:
    warehouse_path: Path
    landing_dir: Path
    sources_config: Path
    partition_start: date
    dbt_target: str
    scenarios_dir: Path = PROJECT_ROOT / "scenarios"
    expectations_dir: Path = PROJECT_ROOT / "expectations"
    serving_path: Path | None = None  # None: default_serving_path(warehouse_path), which follows the warehouse
    user_buckets: int = 0  # 0: enough buckets for about 50,000 users each (dagster_twins.warehouse.buckets)
    spark_dir_override: Path | None = None  # None: default_spark_dir(warehouse_path), which follows the warehouse
    duckdb_memory_limit: str = DEFAULT_MEMORY_LIMIT

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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            warehouse_path=_path(env, "TWINS_WAREHOUSE", DEFAULT_DATA_DIR / "warehouse.duckdb"),
            landing_dir=_path(env, "TWINS_LANDING_DIR", DEFAULT_DATA_DIR / "landing"),
            sources_config=_path(env, "TWINS_SOURCES_CONFIG", PROJECT_ROOT / "config" / "sources.yml"),
            partition_start=date.fromisoformat(env.get("TWINS_PARTITION_START", "2025-01-01")),
            dbt_target=env.get("TWINS_DBT_TARGET", "duckdb"),
            scenarios_dir=_path(env, "TWINS_SCENARIOS_DIR", PROJECT_ROOT / "scenarios"),
            expectations_dir=_path(env, "TWINS_EXPECTATIONS_DIR", PROJECT_ROOT / "expectations"),
            serving_path=_path(env, "TWINS_SERVING_PATH", None),
            user_buckets=int(env.get("TWINS_USER_BUCKETS", "0")),
            spark_dir_override=_path(env, "TWINS_SPARK_DIR", None),
            duckdb_memory_limit=env.get("TWINS_DUCKDB_MEMORY_LIMIT", DEFAULT_MEMORY_LIMIT),
        )


def apply_offline_env() -> None:
    """Switch off telemetry for this process and the dbt subprocesses it starts, and make sure the dbt
    installed beside this Python is found even when the virtualenv is not activated (`.venv/bin/dagster dev`)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
