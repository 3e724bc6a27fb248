"""Twin assets: beliefs updated from each window's evidence, the one-row-a-user twin, and their checks."""

import time
from datetime import timedelta

import dagster as dg
import numpy as np
import pandas as pd

from dagster_twins.ingestion.warehouse import replace_rows
from dagster_twins.partitions import run_window, single_run
from dagster_twins.resources import WarehouseResource
from dagster_twins.twins import store
from dagster_twins.twins.families import decay_factor
from dagster_twins.twins.state import KEY, empty_state, fold
from dagster_twins.twins.summarize import roll_up, summarize

GROUP = "twins"
BELIEFS_KEY = dg.AssetKey(["twins", "user_beliefs"])
TWINS_KEY = dg.AssetKey(["twins", "user_twins"])


class TwinConfig(dg.Config):
    half_life_days: float = 60.0  # evidence loses half its weight in this many days
    full_rebuild: bool = False  # ignore saved state and fold everything that has landed
    state_retention_days: int = 35  # how long daily state snapshots are kept for incremental re-runs
    interactions_per_bucket: int = 2_000_000  # landed interactions folded at a time (bounds memory)


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
    con = warehouse.connect()
    try:
        window = run_window(context.run.tags) or store.landing_span(con)
        if window is None:
            raise dg.Failure("marts.fct_events is empty: run ingestion and dbt first")
        start, end = window
        as_of = end - timedelta(days=1)
        base_as_of = None if config.full_rebuild else store.saved_state_day(con, start)
        mode = "full rebuild" if base_as_of is None else f"incremental from the state of {base_as_of}"
        # Users are folded a bucket at a time (a user's state depends on their own evidence only), so memory is
        # bounded by a bucket's evidence, not by all history: a 100,000-user rebuild held 22 million rows.
        interactions = store.landed_interactions(con, base_as_of, end)
        buckets = max(1, -(-interactions // config.interactions_per_bucket))
        context.log.info(f"twins as of {as_of}: {mode}; folding {interactions:,} landed interactions "
                         f"in {buckets} bucket(s) of users")
        bases, evidences, states = [], [], []
        for b in range(buckets):
            base_b = store.base_state(con, start, (b, buckets))[0] if base_as_of is not None else empty_state()
            evidence_b = store.landed_evidence(con, base_as_of, end, (b, buckets))
            states.append(fold(base_b, base_as_of, evidence_b, as_of, config.half_life_days))
            bases.append(base_b)
            evidences.append(evidence_b[["user_id"]])
        state, base, evidence = (pd.concat(parts, ignore_index=True) for parts in (states, bases, evidences))
        users, categories = store.users_and_categories(con, as_of)
        beliefs, priors = summarize(state, users, categories, as_of, config.half_life_days)
        twins = roll_up(beliefs, as_of)

        store.save_snapshot(con, "belief_state", state.assign(as_of=pd.Timestamp(as_of)), as_of, start)
        store.prune_state(con, as_of, config.state_retention_days)
        store.save_snapshot(con, "belief_priors", priors, as_of, start)
        replace_rows(con, store.SCHEMA, "user_beliefs", beliefs)
        replace_rows(con, store.SCHEMA, "user_twins", twins)
        store.save_snapshot(con, "user_twins_history", twins.rename(columns={"last_updated": "as_of"}), as_of, start)
        con.execute(store.EXPLANATIONS_VIEW)
        dim_users = int(con.execute("select count(*) from marts.dim_users where coalesce(signed_up_at, first_seen_at)"
                                    " < ?", [as_of + timedelta(days=1)]).fetchone()[0])
    finally:
        con.close()

    seconds = round(time.perf_counter() - started, 2)
    yield dg.MaterializeResult(asset_key=BELIEFS_KEY, metadata={
        "dagster/row_count": len(beliefs), "as_of": str(as_of), "mode": mode,
        "interactions_folded": interactions, "user_buckets": buckets,
        "half_life_days": config.half_life_days, "seconds": seconds,
        "priors": dg.MetadataValue.md(priors.drop(columns="as_of").head(30).to_markdown(index=False, floatfmt=".3g")),
    })
    yield dg.MaterializeResult(asset_key=TWINS_KEY, metadata={
        "dagster/row_count": len(twins), "as_of": str(as_of),
        "median_overall_confidence": float(np.nanmedian(twins["overall_confidence"])),
        "preview": dg.MetadataValue.md(twins.head(10).to_markdown(index=False, floatfmt=".3g")),
    })
    yield from _checks(beliefs, twins, dim_users, base, base_as_of, state, evidence, as_of, config.half_life_days)


def _checks(beliefs: pd.DataFrame, twins: pd.DataFrame, dim_users: int, base: pd.DataFrame, base_as_of,
            state: pd.DataFrame, evidence: pd.DataFrame, as_of, half_life: float):
    yield dg.AssetCheckResult(asset_key=TWINS_KEY, check_name="every_user_has_a_twin",
                              passed=bool(len(twins) == dim_users and twins["user_id"].is_unique),
                              metadata={"twins": len(twins), "users": dim_users})
    params = beliefs[["param_1", "param_2"]].to_numpy()
    bad_params = int((~np.isfinite(params) | (params <= 0)).any(axis=1).sum())
    yield dg.AssetCheckResult(asset_key=BELIEFS_KEY, check_name="parameters_positive_and_finite",
                              passed=bad_params == 0, metadata={"bad_rows": bad_params})
    bounded = beliefs["family"] != "gamma"
    # (The mean of a skewed posterior may lie outside its central 90% interval, so that is not checked.)
    out_of_range = int(((beliefs["mean"] < 0) | (beliefs["lower_90"] < 0) | (beliefs["lower_90"] > beliefs["upper_90"])
                        | (bounded & ((beliefs["mean"] > 1) | (beliefs["upper_90"] > 1)))).sum())
    yield dg.AssetCheckResult(asset_key=BELIEFS_KEY, check_name="probabilities_and_shares_in_range",
                              passed=out_of_range == 0, metadata={"bad_rows": out_of_range})
    sums = beliefs[beliefs["family"] == "dirichlet"].groupby(["user_id", "belief"])["mean"].sum()
    off = int((np.abs(sums - 1) > 1e-9).sum())
    yield dg.AssetCheckResult(asset_key=BELIEFS_KEY, check_name="shares_sum_to_one", passed=off == 0,
                              metadata={"user_beliefs_off": off, "max_abs_error": float(np.abs(sums - 1).max())})
    conf = beliefs["confidence"]
    yield dg.AssetCheckResult(asset_key=BELIEFS_KEY, check_name="confidence_in_range",
                              passed=bool(((conf >= 0) & (conf <= 1)).all()),
                              metadata={"min": float(conf.min()), "max": float(conf.max())})
    moved = 0
    if base_as_of is not None and len(base):
        touched = set(evidence["user_id"])
        quiet = base[~base["user_id"].isin(touched)].merge(state, on=KEY, suffixes=("_old", "_new"))
        w = float(decay_factor((as_of - base_as_of).days, half_life))
        moved = int((~np.isclose(quiet["stat_a_old"] * w, quiet["stat_a_new"], rtol=1e-9, atol=1e-12)).sum())
    yield dg.AssetCheckResult(asset_key=BELIEFS_KEY, check_name="no_change_without_evidence", passed=moved == 0,
                              metadata={"rows_moved_without_evidence": moved})
