"""Simulation assets: campaign effects measured from randomized holdouts, the frame segments filter, one asset
per scenario spec, and the policy ranking across them."""


import time
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from dagster_twins.churn.assets import PREDICTIONS_KEY
from dagster_twins.churn.forecast import CHURN
from dagster_twins.churn.pipeline import Forecast
from dagster_twins.churn.serialize import loads
from dagster_twins.simulation.effects import estimate_campaign_effects
from dagster_twins.simulation.plots import scenario_plot
from dagster_twins.simulation.scenario import policy_ranking, result_frame, run_scenario
from dagster_twins.simulation.specs import ScenarioSpec, load_specs
from dagster_twins.twins.assets import TWINS_KEY
from dagster_twins.warehouse.buckets import DuckDBReader, all_buckets
from dagster_twins.warehouse.resources import WarehouseResource
from dagster_twins.warehouse.tables import replace_rows, table_exists

GROUP = "simulation"
SCHEMA = "simulation"
EFFECTS_KEY = dg.AssetKey([SCHEMA, "campaign_effects"])
SEGMENT_BASE_KEY = dg.AssetKey([SCHEMA, "user_segment_base"])
RANKING_KEY = dg.AssetKey([SCHEMA, "scenario_policy_ranking"])
EXPERIMENTS_KEY = dg.AssetKey(["marts", "fct_campaign_experiment_assignments"])

def segment_base_view(churn_horizons: list[int]) -> str:
    """What segments can filter on: each active user's churn prediction at every horizon (and its percentile),
    twin and recent behaviour."""
    probabilities = ", ".join(f"p.p_churn_{h}d, percent_rank() over (order by p.p_churn_{h}d) as "
                              f"p_churn_{h}d_percentile" for h in churn_horizons)
    return f"""
create or replace view {SCHEMA}.user_segment_base as
select
    p.user_id, p.tenure_days, {probabilities},
    p.risk_tier, p.log_hazard_ratio,
    t.top_interest, t.primary_goal, t.preferred_channel, t.preferred_format, t.rec_click_propensity,
    t.campaign_response_propensity, t.interactions_per_week, t.purchases_per_week, t.tickets_per_30_days,
    t.overall_confidence,
    f.plan, f.acquisition_channel, f.days_since_last_active, f.events_in_window, f.active_days_in_window,
    f.tickets_in_window, f.open_tickets, f.campaign_treated, f.campaign_control,
    p.as_of
from churn.churn_predictions as p
left join twins.user_twins as t on p.user_id = t.user_id
left join churn.scored_user_covariates as f on p.user_id = f.user_id
where p.question = 'churn'
"""


def churn_horizons(con: duckdb.DuckDBPyConnection) -> list[int]:
    """The horizons the churn predictions carry (configuration of the churn layer), from their columns."""
    columns = [row[0] for row in con.execute("describe churn.churn_predictions").fetchall()]
    return sorted(int(c[len("p_churn_"):-1]) for c in columns if c.startswith("p_churn_") and c.endswith("d"))


def _md(frame: pd.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.to_markdown(index=False, floatfmt=".3f"))


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
        replace_rows(con, SCHEMA, "campaign_effects", effects)
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
        "estimates": _md(effects[[c for c in shown if c in effects]]),
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
        con.execute(f"create schema if not exists {SCHEMA}")
        con.execute(segment_base_view(churn_horizons(con)))
        rows = int(con.execute(f"select count(*) from {SCHEMA}.user_segment_base").fetchone()[0])
        preview = con.execute(f"select * from {SCHEMA}.user_segment_base limit 5").df()
    finally:
        con.close()
    return dg.MaterializeResult(metadata={"dagster/row_count": rows, "preview": _md(preview)})


def latest_forecast(con: duckdb.DuckDBPyConnection) -> tuple[Forecast, pd.Timestamp, pd.Timestamp]:
    """The churn layer's fit behind the current predictions, when it was fitted, and the day they are as of."""
    fitted = con.execute("select max(fitted_on), max(as_of) from churn.churn_predictions").fetchone()
    row = con.execute("select model_json from churn.churn_models where as_of = ? and model = 'landmark' limit 1",
                      [fitted[0]]).fetchone()
    if row is None:
        raise dg.Failure("no stored churn model for the current predictions: materialize churn first")
    return loads(row[0]), pd.Timestamp(fitted[0]), pd.Timestamp(fitted[1])


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
            forecast, fitted_on, as_of = latest_forecast(con)
            model = forecast.models[CHURN].model  # None when there were too few churn events to fit one
            # The churn layer's tables live in the DuckDB file whichever engine built the marts.
            churn_tables = DuckDBReader(con)
            users = int(con.execute("select count(*) from churn.scored_user_covariates").fetchone()[0])
            segment_base = con.execute(f"select * from {SCHEMA}.user_segment_base").df()
            experiments = reader.frame("select * from marts.fct_campaign_experiment_assignments")
            buckets = warehouse.buckets(users)
            context.log.info(f"{spec.name}: {spec.draws} draws of the churn model fitted on "
                             f"{fitted_on.date()} over {len(segment_base):,} active users, read in {buckets} "
                             f"bucket(s)")
            covariates = (churn_tables.table_frame("churn.scored_user_covariates", where="state = 'active'",
                                                   bucket=b) for b in all_buckets(buckets))
            run = run_scenario(spec, path, model, forecast.churn_matrix, covariates, segment_base, experiments)
            stamp = {"as_of": as_of, "fitted_on": fitted_on}
            result = result_frame(run.result).assign(**stamp)
            replace_rows(con, SCHEMA, "scenario_results", result, {"scenario": spec.name})
            replace_rows(con, SCHEMA, "scenario_results_history", result, {"scenario": spec.name, "as_of": as_of})
            replace_rows(con, SCHEMA, "scenario_user_effects", run.users.assign(**stamp), {"scenario": spec.name})
        r = result_frame(run.result).iloc[0].to_dict()
        seconds = round(time.perf_counter() - started, 2)
        if r["status"] == "skipped":
            context.log.warning(f"{spec.name}: skipped: {r['status_reason']}")
        else:
            context.log.info(f"{spec.name}: {r['users_affected']:,.0f} users; expected users kept "
                             f"{r['expected_users_kept']:.1f} in {seconds} s")
        plot = scenario_plot(run.draws, Path(warehouse.path).parent / "reports" / f"scenario_{spec.name}.png",
                             title=f"{spec.name}: {r['users_affected']:,} users, {spec.horizon_days} days")
        yield dg.MaterializeResult(metadata={
            "status": r["status"], "status_reason": r["status_reason"],
            "users_affected": int(r["users_affected"]), "effect_kind": r["effect_kind"], "effect": r["effect_source"],
            "dagster/row_count": len(run.users), "seconds": seconds, "user_buckets": buckets,
            "result": dg.MetadataValue.md(pd.Series(r).to_frame("value").to_markdown(floatfmt=".4f")),
            "plot": dg.MetadataValue.path(str(plot)) if plot else dg.MetadataValue.text("empty segment"),
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
        yield dg.AssetCheckResult(check_name="placebo_covers_zero", passed=bool(covers), metadata={
            "placebo_difference": r["placebo_difference"], "lower_90": r["placebo_difference_lower_90"],
            "upper_90": r["placebo_difference_upper_90"]})

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
            if not table_exists(con, SCHEMA, "scenario_results"):
                raise dg.Failure("no scenario results yet: materialize the scenario assets first")
            results = con.execute(f"select * from {SCHEMA}.scenario_results").df()
            results = results[results["scenario"].isin(names)]
            ranking = policy_ranking(results)
            replace_rows(con, SCHEMA, "scenario_policy_ranking", ranking)
        finally:
            con.close()
        return dg.MaterializeResult(metadata={"dagster/row_count": len(ranking), "ranking": _md(ranking)})

    return _ranking


def simulation_assets(scenarios_dir: Path) -> list[dg.AssetsDefinition]:
    """The layer's assets for the specs in ``scenarios_dir`` (a bad spec fails loading, naming file and field)."""
    specs = load_specs(scenarios_dir)
    assets = [campaign_effects, user_segment_base]
    assets += [build_scenario_asset(spec, path) for spec, path in specs.values()]
    if specs:
        assets.append(build_ranking_asset(sorted(specs)))
    return assets
