"""Twin assets: beliefs updated from each window's evidence, the one-row-a-user twin, and their checks."""

import json
import time
from datetime import timedelta

import dagster as dg
import numpy as np

from dagster_twins.metadata import md_table, table_metadata
from dagster_twins.partitions import run_window, single_run
from dagster_twins.run_config import with_defaults
from dagster_twins.settings import Settings
from dagster_twins.twins import store
from dagster_twins.twins.document import SCHEMA_VERSION, context_block, load_schema
from dagster_twins.twins.purchase_assets import PURCHASES_KEY, run_landing_window
from dagster_twins.twins.state import empty_state, fold
from dagster_twins.twins.summarize import PriorInputs
from dagster_twins.twins.update import BELIEFS, TWINS, CheckOutcome, TwinWriter, summarize_bucket
from dagster_twins.warehouse.buckets import all_buckets
from dagster_twins.warehouse.resources import WarehouseResource

GROUP = "twins"
BELIEFS_KEY = dg.AssetKey(["twins", BELIEFS])
TWINS_KEY = dg.AssetKey(["twins", TWINS])
TABLE_KEYS = {BELIEFS: BELIEFS_KEY, TWINS: TWINS_KEY}


class TwinConfig(dg.Config):
    half_life_days: float = 60.0  # evidence loses half its weight in this many days
    full_rebuild: bool = False  # ignore saved state and fold everything that has landed
    state_retention_days: int = 35  # how long daily state snapshots are kept for incremental re-runs


def _check(name: str, asset: dg.AssetKey, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, description=description)


CHECKS = [
    _check("every_user_has_a_twin", TWINS_KEY, "Every user in marts.dim_users known by the as-of day has a twin."),
    _check("parameters_positive_and_finite", BELIEFS_KEY, "Posterior parameters are finite and > 0."),
    _check("probabilities_and_shares_in_range", BELIEFS_KEY,
           "Propensities, shares and their intervals lie in [0, 1]; rates are >= 0; intervals are ordered."),
    _check("shares_sum_to_one", BELIEFS_KEY, "Each user's shares of a Dirichlet belief sum to 1."),
    _check("confidence_in_range", BELIEFS_KEY, "Confidence lies in [0, 1]."),
    _check("no_change_without_evidence", BELIEFS_KEY,
           "A user with no new evidence moved only by decay since the saved state (one user in 100, by hash)."),
]


def build_twins_assets(settings: Settings) -> dg.AssetsDefinition:
    """The twins' multi-asset, its config defaulting to the settings (the half-life)."""
    config_class = with_defaults(TwinConfig, half_life_days=settings.half_life_days)

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(BELIEFS_KEY, group_name=GROUP, kinds={"python", "duckdb"},
                         deps=[dg.AssetKey(["marts", "fct_events"]), dg.AssetKey(["marts", "dim_users"])],
                         description="One row per user, belief and category: posterior parameters, mean, 90% credible "
                                     "interval, evidence, confidence. Also twins.belief_priors, twins.belief_state "
                                     "(daily state snapshots) and the view twins.belief_explanations."),
            dg.AssetSpec(TWINS_KEY, group_name=GROUP, kinds={"python", "duckdb"}, deps=[BELIEFS_KEY, PURCHASES_KEY],
                         description="One row per user: top interests, goal, preferences, propensities, rates, overall "
                                     "confidence, last_updated, and the purchase beliefs of twins.user_purchases. "
                                     "Daily snapshots in twins.user_twins_history."),
        ],
        check_specs=CHECKS,
        backfill_policy=single_run,
        name="twins_beliefs",
    )
    def twins_beliefs(context: dg.AssetExecutionContext, config: config_class, warehouse: WarehouseResource):
        yield from update_twins(context, config, warehouse)

    return twins_beliefs


def update_twins(context: dg.AssetExecutionContext, config: TwinConfig, warehouse: WarehouseResource):
    """The twins' run: fold each bucket's landed evidence, estimate the priors, summarize, write, check."""
    started = time.perf_counter()
    with warehouse.reading() as (con, reader):
        start, end = run_landing_window(context, reader)
        as_of = end - timedelta(days=1)
        base_as_of = None if config.full_rebuild else store.saved_state_day(con, start)
        interactions = store.landed_interactions(reader, base_as_of, end)
        buckets = warehouse.buckets(store.user_count(reader))
        users = store.known_users(reader, as_of, buckets)
        categories = store.belief_categories(reader)
        mode = "full rebuild" if base_as_of is None else f"incremental from the state of {base_as_of}"
        # Users are folded and summarized a bucket at a time (a user's state depends on their own evidence, the
        # priors on population moments gathered in between), so memory follows the bucket, not the population.
        context.log.info(f"twins as of {as_of} on {reader.engine}: {mode}; folding {interactions:,} landed "
                         f"interactions of {len(users):,} users in {buckets} bucket(s)")
        writer = TwinWriter(con, as_of, start, config.half_life_days)
        inputs = PriorInputs(users, categories, as_of, config.half_life_days)
        touched: dict[int, set] = {}
        for bucket in all_buckets(buckets):
            evidence = store.landed_evidence(reader, base_as_of, end, bucket)
            # An increment reads, folds and writes the state of the users with evidence only; the others' state
            # is carried forward, decayed, in SQL (store.carry_state).
            base = empty_state() if base_as_of is None else store.state_of(con, base_as_of, evidence["user_id"])
            state = fold(base, base_as_of, evidence, as_of, config.half_life_days)
            writer.write_state(state)
            if base_as_of is None:
                inputs.add(state)
            touched[bucket[0]] = set(evidence["user_id"])
            context.log.info(f"folded bucket {bucket[0] + 1}/{buckets}: {len(evidence):,} evidence rows into "
                             f"{len(state):,} user states ({time.perf_counter() - started:.0f} s so far)")
        carried = 0
        if base_as_of is not None:
            carried = store.carry_state(con, base_as_of, as_of, config.half_life_days)
            writer.tally.moved = store.moved_without_evidence(con, base_as_of, as_of, config.half_life_days,
                                                              set().union(*touched.values()))
            for bucket in all_buckets(buckets):  # the priors' population moments: read only
                inputs.add(store.state_of(con, as_of, users.loc[users["bucket"] == bucket[0], "user_id"]))
        priors = inputs.estimate()
        # Only the users with new evidence (and users new to the twins) are summarized, unless the stored summaries
        # cannot be carried forward (why_full); the view user_beliefs carries the others to this day.
        why_full = "full rebuild" if base_as_of is None else store.why_summarize_all(
            con, base_as_of, priors.frame, config.half_life_days)
        touched_only = why_full is None
        writer.write_priors(priors.frame.assign(half_life_days=config.half_life_days), touched_only)
        context.log.info("summarizing " + ("the users with new evidence" if touched_only
                                           else f"every user ({why_full})"))
        for bucket in all_buckets(buckets):
            users_b = users[users["bucket"] == bucket[0]].reset_index(drop=True)
            if touched_only:
                new = ~users_b["user_id"].isin(store.summarized_users(con, users_b["user_id"]))
                users_b = users_b[users_b["user_id"].isin(touched[bucket[0]]) | new].reset_index(drop=True)
                if users_b.empty:
                    continue
            state = store.state_of(con, as_of, users_b["user_id"])
            writer.write_summary(*summarize_bucket(state, users_b, categories, priors, as_of, config.half_life_days))
            context.log.info(f"summarized bucket {bucket[0] + 1}/{buckets}: {len(users_b):,} twins "
                             f"({time.perf_counter() - started:.0f} s so far)")
        belief_rows, twin_rows = writer.finish(config.state_retention_days)
        tables = {key: table_metadata(con, key) for key in (BELIEFS_KEY, TWINS_KEY)}

    seconds = round(time.perf_counter() - started, 2)
    tally = writer.tally
    yield dg.MaterializeResult(asset_key=BELIEFS_KEY, metadata={
        **tables[BELIEFS_KEY], "dagster/row_count": belief_rows, "as_of": str(as_of), "mode": mode,
        "engine": reader.engine,
        "interactions_folded": interactions, "user_buckets": buckets,
        "users_summarized": writer.summarized, "summarized": why_full or "users with new evidence",
        "state_rows_carried": carried,
        "half_life_days": config.half_life_days, "seconds": seconds,
        "priors": md_table(priors.frame.drop(columns="as_of").head(30), floatfmt=".3g"),
    })
    yield dg.MaterializeResult(asset_key=TWINS_KEY, metadata={
        **tables[TWINS_KEY], "dagster/row_count": twin_rows, "as_of": str(as_of),
        "median_overall_confidence": round(tally.median_confidence(), 4),
        "preview": md_table(tally.preview, floatfmt=".3g"),
    })
    for outcome in tally.outcomes(len(users)):
        yield dg.AssetCheckResult(asset_key=TABLE_KEYS[outcome.table], check_name=outcome.check_name,
                                  passed=outcome.passed, metadata=outcome.metadata)


def check_evaluations(outcomes: list[CheckOutcome]) -> list[dg.AssetCheckEvaluation]:
    """The checks' outcomes as events an op logs (the parallel rebuild, which is a job, not this asset)."""
    return [dg.AssetCheckEvaluation(asset_key=TABLE_KEYS[o.table], check_name=o.check_name, passed=o.passed,
                                    metadata=o.metadata) for o in outcomes]


DOCUMENTS_KEY = dg.AssetKey(["twins", store.DOCUMENTS])
# The documents read the twins, churn and simulation tables, so they come after the simulation: a group of their own
# keeps the twins group from spanning churn and simulation in the lineage (groups are laid out left to right).
DOCUMENTS_GROUP = "documents"


def build_documents_asset(upstream: list[dg.AssetKey]) -> dg.AssetsDefinition:
    """The twin documents (one JSON document a user), after ``upstream`` (the twins, churn and simulation assets)."""

    @dg.asset(
        key=DOCUMENTS_KEY, group_name=DOCUMENTS_GROUP, kinds={"python", "duckdb"},
        deps=list(dict.fromkeys([TWINS_KEY, *upstream])),
        description="One JSON document per user for products and AI agents: beliefs with mean, 90% interval, "
                    "confidence, evidence and why; goals, interests and preferences; churn or return probability at "
                    "each horizon with drivers; the scenarios that would help. A view: each user's parts as of their "
                    "last update (twins.document_parts, rebuilt only for the users summarized again) joined with the "
                    "day's churn, value and scenarios. Schema: "
                    "dagster_twins/twins/schema/twin-document.v1.json; served by `dagster-twins serve`.",
        check_specs=[dg.AssetCheckSpec("one_valid_document_per_twin", asset=DOCUMENTS_KEY,
                                       description="Every twin has exactly one document, and a sample of 200 "
                                                   "validates against the JSON schema.")],
    )
    def user_documents(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        import jsonschema  # only this asset and the tests validate

        started = time.perf_counter()
        validator = jsonschema.Draft202012Validator(load_schema())
        window = run_window(context.run.tags)
        con = warehouse.connect()
        try:
            twins_count = int(con.execute(f"select count(*) from {store.SCHEMA}.{TWINS}").fetchone()[0])
            # Only the users summarized again get new parts (their beliefs and roll-up); the view adds every user's
            # members of the day (churn, value, what helps) when it is read.
            stale = store.stale_document_users(con, window[0] if window else None)
            buckets = warehouse.buckets(stale)
            for bucket in all_buckets(buckets) if stale else ():
                written = store.write_document_parts(con, bucket)
                context.log.info(f"document parts of bucket {bucket[0] + 1}/{buckets}: {written:,} users "
                                 f"({time.perf_counter() - started:.0f} s so far)")
            store.create_documents_view(con)
            rows, unique = con.execute(f"select count(*), count(distinct user_id) from {store.SCHEMA}."
                                       f"{store.DOCUMENTS}").fetchone()
            sample = store.sample_documents(con, 200)
            invalid = sum(0 if validator.is_valid(json.loads(text)) else 1 for text in sample)
            table = table_metadata(con, DOCUMENTS_KEY)
        finally:
            con.close()
        yield dg.MaterializeResult(metadata={
            **table, "dagster/row_count": int(rows), "schema_version": SCHEMA_VERSION,
            "users_rebuilt": stale, "user_buckets": buckets,
            "median_bytes_in_sample": int(np.median([len(t) for t in sample])) if sample else 0,
            "seconds": round(time.perf_counter() - started, 2),
            "context_example": sample and context_block(json.loads(sample[0])) or "",
        })
        yield dg.AssetCheckResult(check_name="one_valid_document_per_twin",
                                  passed=bool(rows == twins_count == unique and invalid == 0),
                                  metadata={"documents": int(rows), "twins": twins_count, "distinct_users": int(unique),
                                            "sampled": len(sample), "invalid_in_sample": invalid})

    return user_documents
