"""One small I/O layer for the Python assets: their inputs, a bucket of users at a time, as Arrow tables.

The twins, churn scoring and simulation assets read the tables dbt built through a ``BucketReader``: on DuckDB
(the embedded default) or on Spark (``TWINS_DBT_TARGET=spark``), with the same SQL. A *bucket* is the users
whose id hashes to it, ``(bucket, buckets)``; a user's results depend on their own rows only (plus population
figures computed once), so an asset folds one bucket at a time and its peak memory follows the bucket, not the
population. Each engine hashes with its own function (DuckDB ``hash``, Spark ``xxhash64``): a bucket is the
same set of users for every table read through one reader, which is all the assets rely on.

Results come back as Arrow and are turned into pandas frames with one set of type rules for both engines
(dates and timestamps as naive UTC ``datetime64[us]``, decimals as floats), so the modelling code sees the
same frame whichever engine produced it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

Bucket = tuple[int, int]  # (this bucket, number of buckets)
USERS_PER_BUCKET = 50_000  # default bucket size when the count is not configured (TWINS_USER_BUCKETS)


def bucket_count(users: int, configured: int = 0, users_per_bucket: int = USERS_PER_BUCKET) -> int:
    """``configured`` when set (> 0), else enough buckets to hold about ``users_per_bucket`` users each."""
    if configured > 0:
        return configured
    return max(1, math.ceil(users / users_per_bucket))


def all_buckets(buckets: int) -> Iterator[Bucket]:
    return ((b, buckets) for b in range(buckets))


def _normalized_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_date(t) or pa.types.is_timestamp(t):
        return pa.timestamp("us")
    if pa.types.is_decimal(t):
        return pa.float64()
    if pa.types.is_large_string(t):
        return pa.string()
    return t


def to_frame(table: pa.Table) -> pd.DataFrame:
    """A pandas frame with the same dtypes whichever engine produced ``table``. Timestamps with a time zone
    become naive UTC (both engines run in UTC)."""
    schema = pa.schema([f.with_type(_normalized_type(f.type)) for f in table.schema])
    if schema != table.schema:
        table = pa.Table.from_arrays(
            [col.cast(field.type) for col, field in zip(table.columns, schema, strict=True)], schema=schema)
    return table.to_pandas()


class BucketReader(ABC):
    """Reads query results from one engine. SQL is written once for both engines (Spark SQL and DuckDB share
    the constructs the assets use: ``filter (where ...)``, ``group by all``, ``?`` parameters)."""

    engine: str

    @abstractmethod
    def bucket_of(self, buckets: int, column: str = "user_id") -> str:
        """A SQL expression: the bucket (0 .. buckets - 1) of each row's ``column``."""

    def bucket_filter(self, bucket: Bucket | None, column: str = "user_id") -> str:
        """A SQL predicate true for the rows of ``bucket`` (``true`` for None or a single bucket)."""
        if bucket is None or bucket[1] == 1:
            return "true"
        return f"{self.bucket_of(bucket[1], column)} = {bucket[0]}"

    @abstractmethod
    def arrow(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        """The whole result of ``sql`` as one Arrow table (keep it to a bucket)."""

    def frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        return to_frame(self.arrow(sql, params))

    def scalars(self, sql: str, params: Sequence[Any] = ()) -> tuple:
        """The first row of ``sql`` as Python values."""
        rows = self.arrow(sql, params).slice(0, 1).to_pylist()
        return tuple(rows[0].values()) if rows else ()

    def close(self) -> None:  # noqa: B027 - most readers hold nothing of their own
        """Release what the reader holds (the DuckDB connection belongs to the caller)."""

    def table_frame(self, table: str, columns: Sequence[str] = ("*",), where: str = "true",
                    bucket: Bucket | None = None, params: Sequence[Any] = ()) -> pd.DataFrame:
        """``select columns from table where ... and <bucket>`` as a frame."""
        return self.frame(f"select {', '.join(columns)} from {table} where ({where}) and "
                          f"{self.bucket_filter(bucket)}", params)


class DuckDBReader(BucketReader):
    engine = "duckdb"

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con

    def bucket_of(self, buckets: int, column: str = "user_id") -> str:
        return f"hash({column}) % {buckets}"

    def arrow(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        # Through a relation, which collects the whole result, not execute()'s streamed one: at a million users
        # DuckDB 1.5.5 stalled for good (every thread idle) streaming the twins' evidence query, a union of
        # aggregates over one bucket, to Arrow or pandas, while the same query ran in 8 s this way.
        return self.con.sql(sql, params=list(params) or None).to_arrow_table()


class SparkReader(BucketReader):
    """Reads through a SparkSession that shares dbt's metastore (``dagster_twins.warehouse.spark``); on a cluster,
    the session the cluster gives you. Spark pulls one bucket to the driver at a time."""

    engine = "spark"

    def __init__(self, spark):
        self.spark = spark

    def bucket_of(self, buckets: int, column: str = "user_id") -> str:
        return f"pmod(xxhash64({column}), {buckets})"

    def arrow(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        return self.spark.sql(sql, args=list(params) or None).toArrow()

    # No close: the session lives as long as the process, shared by every asset that reads through Spark
    # (starting a JVM costs seconds; restarting one in a process proved fragile). The dbt asset stops it before
    # dbt starts its own session on the local Derby metastore, which admits one JVM.


def reader_for(engine: str, con: duckdb.DuckDBPyConnection, spark_dir: Path,
               spark_environ: Mapping[str, str] | None = None) -> BucketReader:
    """The reader for the engine dbt builds on; ``con`` serves DuckDB, ``spark_dir`` is the Spark target's folder
    and ``spark_environ`` the settings' TWINS_SPARK_* variables (its master, shuffle partitions)."""
    if engine == "spark":
        from dagster_twins.warehouse.spark import spark_session  # optional dependency: pip install '.[spark]'

        return SparkReader(spark_session(spark_dir, overrides=spark_environ))
    return DuckDBReader(con)
