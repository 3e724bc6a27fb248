"""Simulation assets: campaign effects measured from randomized holdouts, the frame segments filter, one asset
per scenario spec, and the policy ranking across them."""


import time
from pathlib import Path

import dagster as dg
import pandas as pd

from dagster_twins.churn.store import latest_forecast
from dagster_twins.metadata import md_image, md_table, rounded
from dagster_twins.simulation import store
from dagster_twins.simulation.effects import estimate_campaign_effects
from dagster_twins.simulation.plots import scenario_plot
from dagster_twins.simulation.scenario import policy_ranking, result_frame, run_scenario
from dagster_twins.simulation.specs import ScenarioSpec, load_specs, naming_file
from dagster_twins.warehouse.resources import WarehouseResource

GROUP = "simulation"
SCHEMA = store.SCHEMA
EFFECTS_KEY = dg.AssetKey([SCHEMA, "campaign_effects"])
SEGMENT_BASE_KEY = dg.AssetKey([SCHEMA, "user_segment_base"])
RANKING_KEY = dg.AssetKey([SCHEMA, "scenario_policy_ranking"])
EXPERIMENTS_KEY = dg.AssetKey(["marts", "fct_campaign_experiment_assignments"])
# Other layers' outputs, by name: the segments read them as tables.
PREDICTIONS_KEY = dg.AssetKey(["churn", "churn_predictions"])
TWINS_KEY = dg.AssetKey(["twins", "user_twins"])

@dg.asset(
    key=EFFECTS_KEY, group_name=GROUP, kinds={"python", "duckdb"}, deps=[EXPERIMENTS_KEY],
    description="Each randomized campaign's hazard ratio on churn (treatment vs control, Cox model adjusted for "
                "engagement before the send) with 90% and 95% intervals, over 30, 60 and 90 days of follow-up and "
                "over all of it (followup_days empty).",
    check_specs=[dg.AssetCheckSpec("estimates_finite_and_ordered", asset=EFFECTS_KEY,
                                   description="Each estimable ratio is finite and > 0, inside its intervals, and "
                                               "the 95% interval contains the 90% one.")],
)
def campaign_effects(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    with warehouse.reading() as (con, reader):
        experiments = reader.frame("select * from marts.fct_campaign_experiment_assignments")
        effects = estimate_campaign_effects(experiments)
        if effects.empty:
            context.log.warning("no randomized campaign (both a treatment and a control group) in the data: scenarios "
                                "cannot use an estimated effect")
            effects = pd.DataFrame(columns=["campaign_id", "followup_days", "estimable", "hazard_ratio"])
        store.save_effects(con, effects)
    estimable = effects[effects["estimable"].astype(bool)] if len(effects) else effects
    ordered = bool(len(estimable) == 0 or (
        (estimable["hazard_ratio"] > 0)
        & (estimable["lower_95"] <= estimable["lower_90"]) & (estimable["lower_90"] <= estimable["hazard_ratio"])
        & (estimable["hazard_ratio"] <= estimable["upper_90"]) & (estimable["upper_90"] <= estimable["upper_95"])
    ).all())
    shown = ["campaign_id", "followup_days", "hazard_ratio", "lower_90", "upper_90", "treatment_users",
             "control_users", "treatment_churned", "control_churned", "p_value"]
    yield dg.MaterializeResult(metadata={
        "dagster/row_count": len(effects), "randomized_campaigns": int(effects["campaign_id"].nunique()),
        "estimates": md_table(effects[[c for c in shown if c in effects]]),
    })
    yield dg.AssetCheckResult(check_name="estimates_finite_and_ordered", passed=ordered,
                              metadata={"estimable_rows": len(estimable)})


@dg.asset(
    key=SEGMENT_BASE_KEY, group_name=GROUP, kinds={"duckdb"}, deps=[PREDICTIONS_KEY, TWINS_KEY],
    description="View: one row per active user with what scenario segments filter on (churn prediction and its "
                "percentile, twin, recent behaviour, open tickets). Query it to size a segment before writing a "
                "spec.",
)
def user_segment_base(warehouse: WarehouseResource) -> dg.MaterializeResult:
    con = warehouse.connect()
    try:
        rows, preview = store.refresh_segment_base(con)
    finally:
        con.close()
    return dg.MaterializeResult(metadata={"dagster/row_count": rows, "preview": md_table(preview)})


def scenario_key(name: str) -> dg.AssetKey:
    return dg.AssetKey([SCHEMA, f"scenario_{name}"])


SCENARIO_CHECKS = {
    "simulated": "The data could give the effect the spec asks for (a warning, not an error, when it could not: "
                 "the reason is in scenario_results.status_reason).",
    "intervals_ordered_and_in_bounds": "Every 90% interval has lower <= mean <= upper (for the difference and "
                                       "users kept: lower <= upper); retentions lie in [0, 1].",
    "probabilities_in_range": "Each user's baseline and scenario churn probabilities lie in [0, 1].",
    "placebo_covers_zero": "The same simulation with the effect's uncertainty centred on no effect gives a "
                           "retention difference whose 90% interval covers zero.",
}


def _interval_problems(result: dict) -> list[str]:
    problems = []
    for name in ("baseline_retention", "scenario_retention"):
        lo, mid, hi = result[f"{name}_lower_90"], result[name], result[f"{name}_upper_90"]
        if not (0 <= lo <= mid <= hi <= 1):
            problems.append(f"{name}: {lo:.4f} <= {mid:.4f} <= {hi:.4f} fails")
    for name in ("retention_difference", "expected_users_kept", "placebo_difference"):
        if not result[f"{name}_lower_90"] <= result[f"{name}_upper_90"]:
            problems.append(f"{name}: interval reversed")
    return problems


def build_scenario_asset(spec: ScenarioSpec, path: Path) -> dg.AssetsDefinition:
    key = scenario_key(spec.name)

    @dg.asset(
        key=key, group_name=GROUP, kinds={"python", "duckdb"},
        deps=[EFFECTS_KEY, SEGMENT_BASE_KEY, EXPERIMENTS_KEY],
        description=f"{spec.description}\n\nSegment: {spec.segment.description}. Intervention: "
                    f"{spec.intervention.description} ({spec.intervention.effect.kind} effect). Horizon "
                    f"{spec.horizon_days} days, {spec.draws} draws, seed {spec.seed}. Spec: {path.name}. Writes "
                    "its rows of simulation.scenario_results (and _history) and simulation.scenario_user_effects.",
        check_specs=[dg.AssetCheckSpec(name, asset=key, description=text)
                     for name, text in SCENARIO_CHECKS.items()],
        metadata={"spec_file": str(path)},
    )
    def _scenario(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        started = time.perf_counter()
        with warehouse.reading() as (con, reader):
            latest = latest_forecast(con)
            if latest is None:
                raise dg.Failure("no stored churn model for the current predictions: materialize churn first")
            forecast, fitted_on, as_of = latest
            segment_base = store.segment_base(con)
            experiments = reader.frame("select * from marts.fct_campaign_experiment_assignments")
            buckets = warehouse.buckets(store.scored_users(con))
            context.log.info(f"{spec.name}: {spec.draws} draws of the churn model fitted on "
                             f"{fitted_on.date()} over {len(segment_base):,} active users, read in {buckets} "
                             f"bucket(s)")
            with naming_file(path):
                run = run_scenario(spec, forecast.churn_model, forecast.churn_matrix,
                                   store.active_covariates(con, buckets), segment_base, experiments)
            if run.result["status"] == "skipped":  # the reason names the spec's file, as its errors do
                run.result["status_reason"] = f"{path.name}: {run.result['status_reason']}"
            stamp = {"as_of": as_of, "fitted_on": fitted_on}
            store.save_scenario(con, spec.name, result_frame(run.result).assign(**stamp), run.users.assign(**stamp),
                                as_of)
        r = result_frame(run.result).iloc[0].to_dict()
        seconds = round(time.perf_counter() - started, 2)
        if r["status"] == "skipped":
            context.log.warning(f"{spec.name}: skipped: {r['status_reason']}")
        else:
            context.log.info(f"{spec.name}: {r['users_affected']:,.0f} users; expected users kept "
                             f"{r['expected_users_kept']:.1f} in {seconds} s")
        plot = scenario_plot(run.draws, warehouse.reports_folder / f"scenario_{spec.name}.png",
                             title=f"{spec.name}: {r['users_affected']:,} users, {spec.horizon_days} days")
        yield dg.MaterializeResult(metadata={
            "status": r["status"], "status_reason": r["status_reason"],
            "users_affected": int(r["users_affected"]), "effect_kind": r["effect_kind"], "effect": r["effect_source"],
            "dagster/row_count": len(run.users), "seconds": seconds, "user_buckets": buckets,
            "result": md_table(pd.Series(r).to_frame("value"), floatfmt=".4f", index=True),
            "plot": md_image(plot, "retention difference over draws, intervention and placebo", "empty segment"),
        })
        yield dg.AssetCheckResult(check_name="simulated", passed=r["status"] == "simulated",
                                  severity=dg.AssetCheckSeverity.WARN, metadata={"reason": r["status_reason"]})
        empty = r["status"] == "skipped" or r["users_affected"] == 0
        problems = [] if empty else _interval_problems(r)
        yield dg.AssetCheckResult(check_name="intervals_ordered_and_in_bounds", passed=not problems,
                                  metadata={"problems": "; ".join(problems) or "none", "empty_segment": empty})
        probs = run.users[["baseline_churn_probability", "scenario_churn_probability"]].to_numpy()
        yield dg.AssetCheckResult(check_name="probabilities_in_range",
                                  passed=bool(((probs >= 0) & (probs <= 1)).all()))
        covers = empty or r["placebo_difference_lower_90"] <= 0 <= r["placebo_difference_upper_90"]
        yield dg.AssetCheckResult(check_name="placebo_covers_zero", passed=bool(covers), metadata=rounded({
            "placebo_difference": r["placebo_difference"], "lower_90": r["placebo_difference_lower_90"],
            "upper_90": r["placebo_difference_upper_90"]}))

    return _scenario


def build_ranking_asset(names: list[str]) -> dg.AssetsDefinition:
    @dg.asset(
        key=RANKING_KEY, group_name=GROUP, kinds={"duckdb"}, deps=[scenario_key(n) for n in names],
        description="The scenarios ranked by expected users kept per user treated (with the interval of users kept "
                    "and the chance the intervention helps at all), so a growth team can pick one.",
    )
    def _ranking(warehouse: WarehouseResource) -> dg.MaterializeResult:
        con = warehouse.connect()
        try:
            results = store.scenario_results(con, names)
            if results is None:
                raise dg.Failure("no scenario results yet: materialize the scenario assets first")
            ranking = policy_ranking(results)
            store.save_ranking(con, ranking)
        finally:
            con.close()
        return dg.MaterializeResult(metadata={"dagster/row_count": len(ranking), "ranking": md_table(ranking)})

    return _ranking


def simulation_assets(scenarios_dir: Path) -> list[dg.AssetsDefinition]:
    """The layer's assets for the specs in ``scenarios_dir`` (a bad spec fails loading, naming file and field)."""
    specs = load_specs(scenarios_dir)
    assets = [campaign_effects, user_segment_base]
    assets += [build_scenario_asset(spec, path) for spec, path in specs.values()]
    if specs:
        assets.append(build_ranking_asset(sorted(specs)))
    return assets
