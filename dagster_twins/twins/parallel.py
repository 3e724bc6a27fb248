"""The twins' full rebuild as a job whose user buckets are Dagster steps, so they run in parallel processes.

The ``twins/user_beliefs`` asset folds its buckets one after another in one process: right for the daily
increment, where a bucket takes seconds. A full rebuild over all history (a new half-life, a backfill, a new
engine) is where buckets are worth spreading out. This job does the same work as the asset's full rebuild with
the same functions, as steps:

    extract_buckets -> fold_bucket (one step per bucket) -> estimate_priors -> summarize_bucket (one per
    bucket) -> load_twins

Only the first and last steps open the warehouse (DuckDB admits one writer, and no reader beside it); the bucket
steps hand Parquet files over in a work folder, so any number of them can run at once. The last step writes
through ``update.TwinWriter``, the twins' one writer, as the asset does, and logs the asset's checks. The job
runs under
Dagster's multiprocess executor (``max_concurrent`` steps, default: the number of cores); on a cluster,
swap in dagster-k8s's ``k8s_job_executor`` or dagster-celery's ``celery_executor`` and point the work folder at
storage every worker sees (see docs/scaling-out.md).
"""

import json
import shutil
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd

from dagster_twins.run_config import with_defaults
from dagster_twins.settings import Settings
from dagster_twins.twins import store, update
from dagster_twins.twins.assets import BELIEFS_KEY, TWINS_KEY, TwinConfig, check_evaluations
from dagster_twins.twins.state import empty_state, fold
from dagster_twins.twins.summarize import PriorInputs, Priors
from dagster_twins.warehouse.buckets import bucket_count
from dagster_twins.warehouse.resources import WarehouseResource


class RebuildConfig(dg.Config):
    half_life_days: float = TwinConfig().half_life_days
    state_retention_days: int = TwinConfig().state_retention_days
    buckets: int = 0  # 0: the warehouse resource's user_buckets (TWINS_USER_BUCKETS), else ~50,000 users each
    work_dir: str = ""  # empty: work/twins_rebuild/<run id> beside the warehouse
    keep_work_dir: bool = False


@dataclass(frozen=True)
class BucketTask:
    """What a bucket step needs: which bucket, where its files are, and the day the twins are as of."""

    bucket: int
    buckets: int
    folder: str
    as_of: date
    start: date
    half_life_days: float

    def path(self, kind: str, bucket: int | None = None) -> Path:
        return Path(self.folder) / f"{kind}_{self.bucket if bucket is None else bucket:04d}.parquet"

    def shared(self, name: str) -> Path:
        return Path(self.folder) / name


def _work_folder(config: RebuildConfig, warehouse: WarehouseResource, run_id: str) -> Path:
    return Path(config.work_dir) if config.work_dir else Path(warehouse.path).parent / "work" / "twins_rebuild" / run_id


def _write(frame: pd.DataFrame, path: Path) -> None:
    # Microseconds, which DuckDB casts to the tables' own timestamp types (Parquet has no seconds unit).
    frame.to_parquet(path, index=False, coerce_timestamps="us", allow_truncated_timestamps=True)


def extract_buckets(context: dg.OpExecutionContext, config: RebuildConfig, warehouse: WarehouseResource):
    """Reads every bucket's landed evidence and users from the engine dbt built on, into Parquet files."""
    with warehouse.reading() as (_, reader):
        span = store.landing_span(reader)
        if span is None:
            raise dg.Failure("marts.fct_events is empty: run ingestion and dbt first")
        start, end = span
        as_of = end - timedelta(days=1)
        buckets = bucket_count(store.user_count(reader), config.buckets or warehouse.user_buckets)
        users = store.known_users(reader, as_of, buckets)
        folder = _work_folder(config, warehouse, context.run.run_id)
        folder.mkdir(parents=True, exist_ok=True)
        _write(users, folder / "users.parquet")
        (folder / "categories.json").write_text(json.dumps(store.belief_categories(reader)))
        context.log.info(f"full rebuild of the twins as of {as_of} from {reader.engine}: {len(users):,} users in "
                         f"{buckets} bucket steps; work folder {folder}")
        for b in range(buckets):
            task = BucketTask(b, buckets, str(folder), as_of, start, config.half_life_days)
            _write(store.landed_evidence(reader, None, end, (b, buckets)), task.path("evidence"))
            _write(users[users["bucket"] == b], task.path("users"))
            yield dg.DynamicOutput(task, mapping_key=f"bucket_{b:04d}")


@dg.op
def fold_bucket(task: BucketTask) -> BucketTask:
    """One bucket's belief state from all its evidence (no warehouse access)."""
    evidence = pd.read_parquet(task.path("evidence"))
    _write(fold(empty_state(), None, evidence, task.as_of, task.half_life_days), task.path("state"))
    return task


@dg.op(out=dg.DynamicOut(BucketTask))
def estimate_priors(folded: list[BucketTask]):
    """The population priors from every bucket's state (a pass over the state files, a bucket at a time)."""
    first = folded[0]
    users = pd.read_parquet(first.shared("users.parquet"))
    categories = json.loads(first.shared("categories.json").read_text())
    inputs = PriorInputs(users, categories, first.as_of, first.half_life_days)
    for task in folded:
        inputs.add(pd.read_parquet(task.path("state")))
    _write(inputs.estimate().frame, first.shared("priors.parquet"))
    for task in sorted(folded, key=lambda t: t.bucket):
        yield dg.DynamicOutput(task, mapping_key=f"bucket_{task.bucket:04d}")


def _priors(frame: pd.DataFrame) -> Priors:
    """The priors back from their ``belief_priors`` rows (categories in the order they were estimated)."""
    params = {name: (rows["param_1"].to_numpy(), rows["param_2"].to_numpy())
              for name, rows in frame.groupby("belief", sort=False)}
    return Priors(params, frame)


@dg.op
def summarize_bucket(task: BucketTask) -> dict:
    """One bucket's beliefs and twins under the population priors (no warehouse access)."""
    categories = json.loads(task.shared("categories.json").read_text())
    priors = _priors(pd.read_parquet(task.shared("priors.parquet")))
    users = pd.read_parquet(task.path("users"))
    state = pd.read_parquet(task.path("state"))
    beliefs, twins = update.summarize_bucket(state, users, categories, priors, task.as_of, task.half_life_days)
    _write(beliefs, task.path("beliefs"))
    _write(twins, task.path("twins"))
    return {"bucket": task.bucket, "users": len(users), "belief_rows": len(beliefs), "as_of": task.as_of}


@dg.op(tags={"warehouse": "writes"})
def load_twins(context: dg.OpExecutionContext, summaries: list[dict], config: RebuildConfig,
               warehouse: WarehouseResource) -> None:
    """The twins' one writer (``TwinWriter``, as the asset uses it) over the bucket files, then the
    materializations of both assets and their checks."""
    started = time.perf_counter()
    folder = _work_folder(config, warehouse, context.run.run_id)
    buckets = sorted(s["bucket"] for s in summaries)
    first = BucketTask(buckets[0], len(buckets), str(folder), date.min, date.min, config.half_life_days)
    users = int(sum(s["users"] for s in summaries))
    as_of = summaries[0]["as_of"]
    with warehouse.reading() as (con, _):
        # A full rebuild: every dated snapshot is re-derived.
        writer = update.TwinWriter(con, as_of, date.min, config.half_life_days)
        for b in buckets:
            writer.write_state(pd.read_parquet(first.path("state", b)))
        writer.write_priors(pd.read_parquet(first.shared("priors.parquet")).assign(half_life_days=config.half_life_days))
        for b in buckets:
            writer.write_summary(pd.read_parquet(first.path("beliefs", b)), pd.read_parquet(first.path("twins", b)))
        belief_rows, twin_rows = writer.finish(config.state_retention_days)
    if not config.keep_work_dir:
        shutil.rmtree(folder, ignore_errors=True)
    seconds = round(time.perf_counter() - started, 2)
    context.log.info(f"loaded {belief_rows:,} beliefs of {users:,} users from {len(summaries)} buckets in {seconds} s")
    for key, rows in ((BELIEFS_KEY, belief_rows), (TWINS_KEY, twin_rows)):
        context.log_event(dg.AssetMaterialization(asset_key=key, metadata={
            "dagster/row_count": rows, "as_of": str(as_of), "mode": "full rebuild (parallel job)",
            "user_buckets": len(summaries), "seconds": seconds}))
    for evaluation in check_evaluations(writer.tally.outcomes(users)):
        context.log_event(evaluation)


def build_rebuild_job(settings: Settings) -> dg.JobDefinition:
    """The rebuild job, its half-life defaulting to the settings' (as the twins asset's does)."""
    config_class = with_defaults(RebuildConfig, half_life_days=settings.half_life_days)

    @dg.op(name="extract_buckets", out=dg.DynamicOut(BucketTask), tags={"warehouse": "reads"})
    def extract(context: dg.OpExecutionContext, config: config_class, warehouse: WarehouseResource):
        yield from extract_buckets(context, config, warehouse)

    @dg.graph(name="twins_rebuild_graph")
    def twins_rebuild_graph():
        folded = extract().map(fold_bucket)
        summaries = estimate_priors(folded.collect()).map(summarize_bucket)
        load_twins(summaries.collect())

    return twins_rebuild_graph.to_job(
        name="twins_rebuild_parallel",
        description="Full rebuild of the twins with each user bucket as its own step: run it under the multiprocess "
                    "executor (as many steps at once as cores) or a cluster executor. The daily increment stays in "
                    "the twins asset.",
        # As many steps at once as the machine has cores, unless run config says (execution.config.max_concurrent).
        executor_def=dg.multiprocess_executor,
    )
