"""The warehouse resource every layer's assets open: the DuckDB file, its serving copy and the engine dbt builds on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from dagster_twins.settings import DEFAULT_MEMORY_LIMIT, reports_dir
from dagster_twins.warehouse.buckets import BucketReader, bucket_count, reader_for
from dagster_twins.warehouse.tables import connect


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse file. DuckDB allows one writer: open, use and close per step. ``serving_path`` is the
    read-only copy published for BI tools at the end of a run (empty: serving/ beside the warehouse).
    ``engine`` is where dbt builds the marts the Python assets read (duckdb or spark), ``user_buckets`` how many
    user-hash buckets they read them in (0: about 50,000 users a bucket). ``spark_dir`` is the Spark target's
    folder (its tables, metastore and raw Parquet lake), ``spark_master`` and ``spark_shuffle_partitions`` its
    session's master and shuffle width. Built from ``Settings``, which holds the defaults."""

    path: str
    serving_path: str
    spark_dir: str
    engine: str = "duckdb"
    user_buckets: int = 0
    memory_limit: str = DEFAULT_MEMORY_LIMIT
    spark_master: str = "local[2]"
    spark_shuffle_partitions: int = 2

    @property
    def spark_folder(self) -> Path:
        return Path(self.spark_dir)

    @property
    def serving_file(self) -> Path:
        return Path(self.serving_path)

    @property
    def reports_folder(self) -> Path:
        return reports_dir(Path(self.path))

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        return connect(Path(self.path), read_only=read_only, memory_limit=self.memory_limit)

    @contextmanager
    def reading(self) -> Iterator[tuple[duckdb.DuckDBPyConnection, BucketReader]]:
        """A write connection to the warehouse and a reader of the dbt-built inputs, a bucket at a time, on the
        engine dbt builds on (DuckDB: through the same connection); both closed on exit."""
        con = self.connect()
        reader = None
        try:
            reader = reader_for(self.engine, con, self.spark_folder, {
                "TWINS_SPARK_MASTER": self.spark_master,
                "TWINS_SPARK_SHUFFLE_PARTITIONS": str(self.spark_shuffle_partitions)})
            yield con, reader
        finally:
            if reader is not None:
                reader.close()
            con.close()

    def buckets(self, users: int) -> int:
        return bucket_count(users, self.user_buckets)
