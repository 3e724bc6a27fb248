"""Twin assets: beliefs updated from each window's evidence, the one-row-a-user twin, and their checks."""

import time
from datetime import timedelta

import dagster as dg
import numpy as np
import pandas as pd

from dagster_twins.partitions import run_window, single_run
from dagster_twins.twins import store
from dagster_twins.twins.families import decay_factor
from dagster_twins.twins.state import KEY, empty_state, fold
from dagster_twins.twins.summarize import PriorInputs, posteriors, roll_up
from dagster_twins.warehouse.buckets import all_buckets
from dagster_twins.warehouse.resources import WarehouseResource
from dagster_twins.warehouse.tables import TableRewrite

GROUP = "twins"
BELIEFS_KEY = dg.AssetKey(["twins", "user_beliefs"])
TWINS_KEY = dg.AssetKey(["twins", "user_twins"])


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
           "A user with no new evidence moved only by decay since the saved state."),
]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(BELIEFS_KEY, group_name=GROUP, kinds={"python", "duckdb"},
                     deps=[dg.AssetKey(["marts", "fct_events"]), dg.AssetKey(["marts", "dim_users"])],
                     description="One row per user, belief and category: posterior parameters, mean, 90% credible "
                                 "interval, evidence, confidence. Also twins.belief_priors, twins.belief_state "
                                 "(daily state snapshots) and the view twins.belief_explanations."),
        dg.AssetSpec(TWINS_KEY, group_name=GROUP, kinds={"python", "duckdb"}, deps=[BELIEFS_KEY],
                     description="One row per user: top interests, goal, preferences, propensities, rates, overall "
                                 "confidence, last_updated. Daily snapshots in twins.user_twins_history."),
    ],
    check_specs=CHECKS,
    backfill_policy=single_run,
    name="twins_beliefs",
)
def twins_beliefs(context: dg.AssetExecutionContext, config: TwinConfig, warehouse: WarehouseResource):
    started = time.perf_counter()
    with warehouse.reading() as (con, reader):
        window = run_window(context.run.tags) or store.landing_span(reader)
        if window is None:
            raise dg.Failure("marts.fct_events is empty: run ingestion and dbt first")
        start, end = window
        as_of = end - timedelta(days=1)
        base_as_of = None if config.full_rebuild else store.saved_state_day(con, start)
        mode = "full rebuild" if base_as_of is None else f"incremental from the state of {base_as_of}"
        interactions = store.landed_interactions(reader, base_as_of, end)
        buckets = warehouse.buckets(store.user_count(reader))
        users = store.known_users(reader, as_of, buckets)
        categories = store.belief_categories(reader)
        # Users are folded and summarized a bucket at a time (a user's state depends on their own evidence, the
        # priors on population moments gathered in between), so memory follows the bucket, not the population.
        context.log.info(f"twins as of {as_of} on {reader.engine}: {mode}; folding {interactions:,} landed "
                         f"interactions of {len(users):,} users in {buckets} bucket(s)")
        tally = CheckTally()
        inputs = PriorInputs(users, categories, as_of, config.half_life_days)
        store.clear_snapshots(con, "belief_state", as_of, start)
        for bucket in all_buckets(buckets):
            evidence = store.landed_evidence(reader, base_as_of, end, bucket)
            base = empty_state() if base_as_of is None else store.state_of(
                con, base_as_of, pd.concat([store.bucket_users(reader, bucket), evidence["user_id"]]))
            state = fold(base, base_as_of, evidence, as_of, config.half_life_days)
            store.append_snapshot(con, "belief_state", state.assign(as_of=pd.Timestamp(as_of)))
            inputs.add(state)
            tally.folded(base, base_as_of, state, evidence, as_of, config.half_life_days)
            context.log.info(f"folded bucket {bucket[0] + 1}/{buckets}: {len(evidence):,} evidence rows into "
                             f"{len(state):,} user states ({time.perf_counter() - started:.0f} s so far)")
        store.prune_state(con, as_of, config.state_retention_days)
        priors = inputs.estimate()
        store.save_snapshot(con, "belief_priors", priors.frame, as_of, start)

        beliefs_out = TableRewrite(con, store.SCHEMA, "user_beliefs")
        twins_out = TableRewrite(con, store.SCHEMA, "user_twins")
        store.clear_snapshots(con, "user_twins_history", as_of, start)
        for bucket in all_buckets(buckets):
            users_b = users[users["bucket"] == bucket[0]].reset_index(drop=True)
            state = store.state_of(con, as_of, users_b["user_id"])
            beliefs = posteriors(state, users_b, categories, priors, as_of, config.half_life_days)
            twins = roll_up(beliefs, as_of)
            beliefs_out.write(beliefs)
            twins_out.write(twins)
            store.append_snapshot(con, "user_twins_history", twins.rename(columns={"last_updated": "as_of"}))
            tally.summarized(beliefs, twins)
            context.log.info(f"summarized bucket {bucket[0] + 1}/{buckets}: {len(twins):,} twins "
                             f"({time.perf_counter() - started:.0f} s so far)")
        belief_rows, twin_rows = beliefs_out.finish(), twins_out.finish()
        con.execute(store.EXPLANATIONS_VIEW)

    seconds = round(time.perf_counter() - started, 2)
    yield dg.MaterializeResult(asset_key=BELIEFS_KEY, metadata={
        "dagster/row_count": belief_rows, "as_of": str(as_of), "mode": mode, "engine": reader.engine,
        "interactions_folded": interactions, "user_buckets": buckets,
        "half_life_days": config.half_life_days, "seconds": seconds,
        "priors": dg.MetadataValue.md(priors.frame.drop(columns="as_of").head(30).to_markdown(index=False,
                                                                                            floatfmt=".3g")),
    })
    yield dg.MaterializeResult(asset_key=TWINS_KEY, metadata={
        "dagster/row_count": twin_rows, "as_of": str(as_of),
        "median_overall_confidence": tally.median_confidence(),
        "preview": dg.MetadataValue.md(tally.preview.to_markdown(index=False, floatfmt=".3g")),
    })
    yield from tally.results(len(users))


class CheckTally:
    """The twin checks, added up bucket by bucket so no check needs the whole population at once."""

    def __init__(self):
        self.moved = self.twins = self.bad_params = self.out_of_range = self.shares_off = 0
        self.unique = True
        self.max_share_error = 0.0
        self.confidence = (np.inf, -np.inf)
        self.confidences: list[np.ndarray] = []
        self.preview = pd.DataFrame()

    def folded(self, base: pd.DataFrame, base_as_of, state: pd.DataFrame, evidence: pd.DataFrame, as_of,
               half_life: float) -> None:
        """A user with no new evidence moved only by decay since the saved state."""
        if base_as_of is None or not len(base):
            return
        quiet = base[~base["user_id"].isin(set(evidence["user_id"]))].merge(state, on=KEY, suffixes=("_old", "_new"))
        w = float(decay_factor((as_of - base_as_of).days, half_life))
        self.moved += int((~np.isclose(quiet["stat_a_old"] * w, quiet["stat_a_new"], rtol=1e-9, atol=1e-12)).sum())

    def summarized(self, beliefs: pd.DataFrame, twins: pd.DataFrame) -> None:
        self.twins += len(twins)
        self.unique &= bool(twins["user_id"].is_unique)  # buckets are disjoint: unique within each is enough
        if self.preview.empty:
            self.preview = twins.head(10)
        self.confidences.append(twins["overall_confidence"].to_numpy())
        params = beliefs[["param_1", "param_2"]].to_numpy()
        self.bad_params += int((~np.isfinite(params) | (params <= 0)).any(axis=1).sum())
        bounded = beliefs["family"] != "gamma"
        # (The mean of a skewed posterior may lie outside its central 90% interval, so that is not checked.)
        self.out_of_range += int(((beliefs["mean"] < 0) | (beliefs["lower_90"] < 0)
                                  | (beliefs["lower_90"] > beliefs["upper_90"])
                                  | (bounded & ((beliefs["mean"] > 1) | (beliefs["upper_90"] > 1)))).sum())
        sums = beliefs[beliefs["family"] == "dirichlet"].groupby(["user_id", "belief"])["mean"].sum()
        self.shares_off += int((np.abs(sums - 1) > 1e-9).sum())
        self.max_share_error = max(self.max_share_error, float(np.abs(sums - 1).max()) if len(sums) else 0.0)
        conf = beliefs["confidence"]
        self.confidence = (min(self.confidence[0], float(conf.min())), max(self.confidence[1], float(conf.max())))

    def median_confidence(self) -> float:
        return float(np.nanmedian(np.concatenate(self.confidences))) if self.confidences else float("nan")

    def results(self, known_users: int):
        yield dg.AssetCheckResult(asset_key=TWINS_KEY, check_name="every_user_has_a_twin",
                                  passed=bool(self.twins == known_users and self.unique),
                                  metadata={"twins": self.twins, "users": known_users})
        yield dg.AssetCheckResult(asset_key=BELIEFS_KEY, check_name="parameters_positive_and_finite",
                                  passed=self.bad_params == 0, metadata={"bad_rows": self.bad_params})
        yield dg.AssetCheckResult(asset_key=BELIEFS_KEY, check_name="probabilities_and_shares_in_range",
                                  passed=self.out_of_range == 0, metadata={"bad_rows": self.out_of_range})
        yield dg.AssetCheckResult(asset_key=BELIEFS_KEY, check_name="shares_sum_to_one", passed=self.shares_off == 0,
                                  metadata={"user_beliefs_off": self.shares_off,
                                            "max_abs_error": self.max_share_error})
        low, high = self.confidence
        yield dg.AssetCheckResult(asset_key=BELIEFS_KEY, check_name="confidence_in_range",
                                  passed=bool(low >= 0 and high <= 1), metadata={"min": low, "max": high})
        yield dg.AssetCheckResult(asset_key=BELIEFS_KEY, check_name="no_change_without_evidence",
                                  passed=self.moved == 0, metadata={"rows_moved_without_evidence": self.moved})
