"""Dagster resources: the warehouse, the landing area and dbt, configured in one place."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from dagster_dbt import DbtCliResource

from dagster_twins.bucket_io import BucketReader, bucket_count, reader_for
from dagster_twins.ingestion.mapping import SourceMapping, load_mappings
from dagster_twins.ingestion.warehouse import connect
from dagster_twins.settings import DBT_PROJECT_DIR, Settings, default_serving_path, default_spark_dir


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse file. DuckDB allows one writer: open, use and close per step. ``serving_path`` is the
    read-only copy published for BI tools at the end of a run (empty: serving/ beside the warehouse).
    ``engine`` is where dbt builds the marts the Python assets read (duckdb or spark), ``user_buckets`` how many
    user-hash buckets they read them in (0: about 50,000 users a bucket). ``spark_dir`` is the Spark target's
    folder (its tables, metastore and raw Parquet lake; empty: spark/ beside the warehouse)."""

    path: str
    serving_path: str = ""
    engine: str = "duckdb"
    user_buckets: int = 0
    spark_dir: str = ""

    @property
    def spark_folder(self) -> Path:
        return Path(self.spark_dir) if self.spark_dir else default_spark_dir(Path(self.path))

    @property
    def serving_file(self) -> Path:
        return Path(self.serving_path) if self.serving_path else default_serving_path(Path(self.path))

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        return connect(Path(self.path), read_only=read_only)

    @contextmanager
    def reading(self) -> Iterator[tuple[duckdb.DuckDBPyConnection, BucketReader]]:
        """A write connection to the warehouse and a reader of the dbt-built inputs, a bucket at a time, on the
        engine dbt builds on (DuckDB: through the same connection); both closed on exit."""
        con = self.connect()
        reader = None
        try:
            reader = reader_for(self.engine, con)
            yield con, reader
        finally:
            if reader is not None:
                reader.close()
            con.close()

    def buckets(self, users: int) -> int:
        return bucket_count(users, self.user_buckets)


class LandingResource(dg.ConfigurableResource):
    """Where landing files are and how their columns map onto the data contract."""

    landing_dir: str
    sources_config: str = ""

    @property
    def root(self) -> Path:
        return Path(self.landing_dir)

    def mappings(self) -> dict[str, SourceMapping]:
        return load_mappings(Path(self.sources_config) if self.sources_config else None)


def dbt_executable() -> str:
    """The dbt installed beside this Python (the project's virtualenv), whether or not it is activated."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "warehouse": WarehouseResource(path=str(settings.warehouse_path), serving_path=str(settings.serving_file),
                                       engine="spark" if settings.dbt_target.startswith("spark") else "duckdb",
                                       user_buckets=settings.user_buckets, spark_dir=str(settings.spark_dir)),
        "landing": LandingResource(
            landing_dir=str(settings.landing_dir), sources_config=str(settings.sources_config)
        ),
        "dbt": DbtCliResource(
            project_dir=str(DBT_PROJECT_DIR),
            profiles_dir=str(DBT_PROJECT_DIR),
            target=settings.dbt_target,
            dbt_executable=dbt_executable(),
        ),
    }
