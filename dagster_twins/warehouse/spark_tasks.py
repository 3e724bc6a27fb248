"""Per-bucket work as Spark tasks: a pure function over one user-hash bucket's frame, run where the data is.

``map_buckets`` splits a query's rows into the same user-hash buckets the readers use (``SparkReader.bucket_of``:
``pmod(xxhash64(user_id), buckets)``), hands each bucket to ``fn`` as a pandas frame inside a Spark task
(``groupBy(bucket).applyInPandas``) and writes what ``fn`` returns as a Spark table. Nothing passes through the
driver but the plan: a bucket's rows live in one task's Python worker, on whichever executor runs it::

    rows = map_buckets(spark, "select ... from marts.fct_events", buckets=8, fn=fold_bucket,
                       schema="user_id string, stat_a double", table="twins_spark.belief_state")

``fn`` must be a module-level function (or a ``functools.partial`` of one): Spark pickles it by reference, so
the executors' Python must import the same package (on one machine it is this environment; on a cluster,
ship it as a wheel or install it on every node). The Python workers run ``spark.pyspark.python``, which
``warehouse.spark.spark_session`` sets to this interpreter.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

BUCKET_COLUMN = "_bucket"


def map_buckets(spark, sql: str, buckets: int, fn: Callable[[pd.DataFrame], pd.DataFrame], schema: str,
                table: str, key: str = "user_id") -> int:
    """Runs ``fn`` over each bucket of ``sql``'s rows (bucketed by ``key``) as a Spark task and (re)writes its
    results, whose columns are ``schema`` (a Spark DDL string), as the Parquet table ``table`` (its database
    created if missing). Returns the rows written."""
    from pyspark.sql import functions as F

    def per_bucket(frame: pd.DataFrame) -> pd.DataFrame:  # pickled with ``fn`` for the executors' Python
        return fn(frame.drop(columns=BUCKET_COLUMN))

    database = table.split(".")[0] if "." in table else None
    if database:
        spark.sql(f"create database if not exists {database}")
    rows = spark.sql(sql).withColumn(BUCKET_COLUMN, F.expr(f"pmod(xxhash64({key}), {int(buckets)})"))
    # One shuffle partition a bucket, not coalesced by adaptive execution: the buckets are tasks of their own,
    # spread over the executors (the session's own settings are restored after).
    task_conf = {"spark.sql.shuffle.partitions": str(max(int(buckets), 1)),
                 "spark.sql.adaptive.coalescePartitions.enabled": "false"}
    saved = {k: spark.conf.get(k, None) for k in task_conf}
    try:
        for k, v in task_conf.items():
            spark.conf.set(k, v)
        out = rows.groupBy(BUCKET_COLUMN).applyInPandas(per_bucket, schema=schema)
        out.write.mode("overwrite").format("parquet").saveAsTable(table)
    finally:
        for k, v in saved.items():
            if v is None:
                spark.conf.unset(k)
            else:
                spark.conf.set(k, v)
    return int(spark.table(table).count())
