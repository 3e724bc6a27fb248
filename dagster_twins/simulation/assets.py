"""Simulation assets: campaign effects measured from randomized holdouts, the frame segments filter, one asset
per scenario spec, and the policy ranking across them."""


import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pandas as pd

from dagster_twins.churn.store import covariates_as_of, latest_forecast
from dagster_twins.metadata import md_image, md_table, rounded, table_metadata
from dagster_twins.settings import Settings
from dagster_twins.simulation import store
from dagster_twins.simulation.effects import experiments_day, refresh_campaign_effects
from dagster_twins.simulation.plots import scenario_plot, targeting_plot, uplift_plot
from dagster_twins.simulation.scenario import policy_ranking, result_frame, run_scenario, value_note
from dagster_twins.simulation.specs import ScenarioSpec, load_specs, naming_file
from dagster_twins.simulation.targeting import run_targeting
from dagster_twins.simulation.uplift import (
    FITTED,
    CampaignEffects,
    UpliftConfig,
    UpliftUnavailable,
    fit_campaign,
    fit_fingerprint,
    model_to_json,
    reuse_mode,
    stored_fit,
    thin_reason,
    with_active,
)
from dagster_twins.warehouse.resources import WarehouseResource

GROUP = "simulation"
SCHEMA = store.SCHEMA
EFFECTS_KEY = dg.AssetKey([SCHEMA, "campaign_effects"])
SEGMENT_BASE_KEY = dg.AssetKey([SCHEMA, "user_segment_base"])
RANKING_KEY = dg.AssetKey([SCHEMA, "scenario_policy_ranking"])
EXPERIMENTS_KEY = dg.AssetKey(["marts", "fct_campaign_experiment_assignments"])
USER_EFFECTS_KEY = dg.AssetKey([SCHEMA, "user_treatment_effects"])
CURVES_KEY = dg.AssetKey([SCHEMA, "uplift_curves"])
EXPERIMENTS_SQL = "select * from marts.fct_campaign_experiment_assignments"
RESULTS_TABLE = f"{SCHEMA}.scenario_results"  # every scenario's (and targeting policy's) rows
# Other layers' outputs, by name: the segments read them as tables.
PREDICTIONS_KEY = dg.AssetKey(["churn", "churn_predictions"])
TWINS_KEY = dg.AssetKey(["twins", "user_twins"])

def build_campaign_effects_asset(refit_every_days: int = 7) -> dg.AssetsDefinition:
    """Each randomized campaign's hazard ratio, re-estimated only where its inputs changed and the stored estimate
    is ``refit_every_days`` old (``effects.refresh_campaign_effects``)."""

    @dg.asset(
        key=EFFECTS_KEY, group_name=GROUP, kinds={"python", "duckdb"}, deps=[EXPERIMENTS_KEY],
        description="Each randomized campaign's hazard ratio on churn (treatment vs control, Cox model adjusted for "
                    "engagement before the send) with 90% and 95% intervals, over 30, 60 and 90 days of follow-up "
                    "and over all of it (followup_days empty). A row is re-estimated when its inputs changed and "
                    f"its estimate is {refit_every_days} days old (setting effects_refit_every_days); estimated_on "
                    "says the day of each estimate, mode how it came.",
        check_specs=[dg.AssetCheckSpec("estimates_finite_and_ordered", asset=EFFECTS_KEY,
                                       description="Each estimable ratio is finite and > 0, inside its intervals, "
                                                   "and the 95% interval contains the 90% one.")],
    )
    def campaign_effects(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        started = time.perf_counter()
        with warehouse.reading() as (con, reader):
            experiments = reader.frame(EXPERIMENTS_SQL)
            if experiments.empty:
                context.log.warning("no randomized campaign (both a treatment and a control group) in the data: "
                                    "scenarios cannot use an estimated effect")
                effects = pd.DataFrame(columns=["campaign_id", "followup_days", "estimable", "hazard_ratio",
                                                "estimated_on", "mode"])
            else:
                effects = refresh_campaign_effects(experiments, experiments_day(experiments),
                                                   store.campaign_effects(con), refit_every_days)
            store.save_effects(con, effects)
            table = table_metadata(con, EFFECTS_KEY)
        estimable = effects[effects["estimable"].astype(bool)] if len(effects) else effects
        ordered = bool(len(estimable) == 0 or (
            (estimable["hazard_ratio"] > 0)
            & (estimable["lower_95"] <= estimable["lower_90"]) & (estimable["lower_90"] <= estimable["hazard_ratio"])
            & (estimable["hazard_ratio"] <= estimable["upper_90"]) & (estimable["upper_90"] <= estimable["upper_95"])
        ).all())
        modes = effects["mode"].value_counts().to_dict() if len(effects) else {}
        context.log.info(f"campaign effects: {len(effects)} rows, " + (", ".join(
            f"{n} {mode}" for mode, n in modes.items()) or "none"))
        shown = ["campaign_id", "followup_days", "hazard_ratio", "lower_90", "upper_90", "treatment_users",
                 "control_users", "treatment_churned", "control_churned", "p_value", "estimated_on", "mode"]
        yield dg.MaterializeResult(metadata={
            **table, "dagster/row_count": len(effects), "randomized_campaigns": int(effects["campaign_id"].nunique()),
            "mode": effect_modes(effects), "refit_every_days": refit_every_days,
            "seconds": round(time.perf_counter() - started, 2),
            "estimates": md_table(effects[[c for c in shown if c in effects]]),
        })
        yield dg.AssetCheckResult(check_name="estimates_finite_and_ordered", passed=ordered,
                                  metadata={"estimable_rows": len(estimable)})

    return campaign_effects


def effect_modes(effects: pd.DataFrame) -> str:
    """How each row came, in one line: 'estimated 4; reused: inputs unchanged 3 (estimated on 2026-06-28)'."""
    if effects.empty:
        return "no randomized campaign"
    parts = []
    for mode, rows in effects.groupby("mode", sort=True):
        days = ", ".join(sorted({str(pd.Timestamp(d).date()) for d in rows["estimated_on"]}))
        parts.append(f"{mode} {len(rows)} (estimated on {days})")
    return "; ".join(parts)


@dg.asset(
    key=SEGMENT_BASE_KEY, group_name=GROUP, kinds={"duckdb"}, deps=[PREDICTIONS_KEY, TWINS_KEY],
    description="One row per active user with what scenario segments filter on (churn prediction and its "
                "percentile, twin, recent behaviour, open tickets), as of the predictions' day: a table written "
                "once a run, which every scenario reads. Query it to size a segment before writing a spec.",
)
def user_segment_base(warehouse: WarehouseResource) -> dg.MaterializeResult:
    con = warehouse.connect()
    try:
        rows, preview = store.refresh_segment_base(con)
        table = table_metadata(con, SEGMENT_BASE_KEY)
    finally:
        con.close()
    return dg.MaterializeResult(metadata={**table, "dagster/row_count": rows, "preview": md_table(preview)})


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
            buckets = warehouse.buckets(store.scored_users(con))
            context.log.info(f"{spec.name}: {spec.draws} draws of the churn model fitted on "
                             f"{fitted_on.date()} over {len(segment_base):,} active users, read in {buckets} "
                             f"bucket(s)")
            with naming_file(path):
                run = run_scenario(spec, forecast.churn_model, forecast.churn_matrix,
                                   store.active_covariates(con, buckets), segment_base,
                                   lambda: reader.frame(EXPERIMENTS_SQL), store.campaign_effects(con), as_of.date())
            if run.result["status"] == "skipped":  # the reason names the spec's file, as its errors do
                run.result["status_reason"] = f"{path.name}: {run.result['status_reason']}"
            stamp = {"as_of": as_of, "fitted_on": fitted_on}
            store.save_scenario(con, spec.name, result_frame(run.result).assign(**stamp), run.users.assign(**stamp),
                                as_of)
            table = table_metadata(con, RESULTS_TABLE)
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
            **table, "status": r["status"], "status_reason": r["status_reason"],
            "users_affected": int(r["users_affected"]), "effect_kind": r["effect_kind"], "effect": r["effect_source"],
            "value_kept": value_note(r, spec.horizon_days),
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


def estimate_user_effects(reader, experiments: pd.DataFrame, active: pd.DataFrame | Callable[[], pd.DataFrame],
                          buckets: int, config: UpliftConfig, log, stored: dict[str, dict] | None = None,
                          refit_every_days: int = 1) -> tuple[list[tuple[str, CampaignEffects]], dict[str, str]]:
    """Every randomized campaign's per-user effects: the (campaign, effects) estimated and the campaigns skipped,
    with the reason. A campaign's ``stored`` fit (``store.stored_uplift_fits``) is reused when ``uplift.reuse_mode``
    allows (its info says how: ``fit``); else it is fitted from each user's covariates as of its send day (a pass
    over the population's history, skipped when the campaign is too thin whatever they are). Either way today's
    active users (``active``, or a function reading them: called only when a campaign has a fit) are scored with
    the campaign's model."""
    results, skipped = [], {}
    today = pd.Timestamp(experiments_day(experiments))
    loaded: list[pd.DataFrame] = []

    def active_users() -> pd.DataFrame:
        if not loaded:
            loaded.append(active() if callable(active) else active)
        return loaded[0]

    for campaign_id, experiment in experiments.groupby("campaign_id"):
        campaign_id = str(campaign_id)
        send_day = pd.Timestamp(experiment["sent_at"].min()).date()
        fingerprint = fit_fingerprint(experiment, config)
        old = (stored or {}).get(campaign_id)
        mode = reuse_mode(old, fingerprint, today, refit_every_days)
        if mode is not None:
            fit = stored_fit(old)
            log.info(f"{campaign_id}: {mode}: the fit of {fit.fitted_on.date()} scores today's active users")
        else:
            reason = thin_reason(campaign_id, experiment, config)
            if reason:
                log.warning(f"skipped: {reason}")
                skipped[campaign_id] = reason
                continue
            log.info(f"{campaign_id}: {len(experiment):,} randomized users, covariates as of {send_day}; "
                     f"{config.folds}-fold cross-fitting")
            at_send = pd.concat(list(covariates_as_of(reader, send_day, buckets)), ignore_index=True)
            try:
                fit = fit_campaign(campaign_id, experiment, at_send, config, today)
            except UpliftUnavailable as exc:  # a gap in the data, not an error: said, and the run goes on
                log.warning(f"skipped: {exc}")
                skipped[campaign_id] = str(exc)
                continue
            fit = replace(fit, info={**fit.info, "inputs_fingerprint": fingerprint})
            mode = FITTED
        effects = with_active(fit, active_users(), config)
        results.append((campaign_id, replace(effects, info={**effects.info, "fit": f"{mode} (fitted on "
                                                                                   f"{fit.fitted_on.date()})"})))
    return results, skipped


def uplift_model_rows(results: list[tuple[str, CampaignEffects]]) -> pd.DataFrame:
    """simulation.uplift_models: the fit behind each campaign's effects, for a later day's reuse."""
    rows = [{"campaign_id": cid, "fitted_on": r.fit.fitted_on, "inputs_fingerprint": r.fit.info["inputs_fingerprint"],
             "model_json": model_to_json(r.fit.model), "info_json": json.dumps(r.fit.info, default=str)}
            for cid, r in results if r.fit is not None]
    return pd.DataFrame(rows)


def build_user_effects_asset(config: UpliftConfig, refit_every_days: int = 7) -> dg.AssetsDefinition:
    """Per-user effects of every randomized campaign, and the uplift curves that check them (one step, two
    tables). A campaign's fit is reused while its inputs are unchanged, or for ``refit_every_days`` days."""

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(USER_EFFECTS_KEY, group_name=GROUP, kinds={"python", "duckdb"},
                         deps=[EXPERIMENTS_KEY, PREDICTIONS_KEY],
                         description=f"Each user's effect of each randomized campaign on churning within "
                                     f"{config.horizon_days} days (P treated - P untreated; negative: the campaign "
                                     "keeps them) with a 90% interval: randomized users cross-fitted from their "
                                     "covariates as of the send (population 'randomized', with their group and "
                                     "outcome), active users as of today (population 'active'). A campaign's "
                                     "fit (simulation.uplift_models) is reused while its inputs are unchanged or "
                                     f"for {refit_every_days} days (setting effects_refit_every_days); fitted_on "
                                     "says its day."),
            dg.AssetSpec(CURVES_KEY, group_name=GROUP, kinds={"duckdb"}, deps=[USER_EFFECTS_KEY],
                         description="Qini and uplift curves of targeting by estimated benefit, by churn risk and "
                                     "at random, on held-out randomized users, with 90% bootstrap bands; "
                                     "simulation.uplift_summary has each policy's Qini coefficient and AUUC."),
        ],
        check_specs=[dg.AssetCheckSpec("effects_in_range_and_ordered", asset=USER_EFFECTS_KEY,
                                       description="Every effect lies in [-1, 1] inside its 90% interval, and "
                                                   "every probability in [0, 1].")],
    )
    def user_treatment_effects(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        started = time.perf_counter()
        with warehouse.reading() as (con, reader):
            experiments = reader.frame(EXPERIMENTS_SQL)
            buckets = warehouse.buckets(store.scored_users(con))
            results, skipped = estimate_user_effects(
                reader, experiments, lambda: pd.concat(list(store.active_covariates(con, buckets)), ignore_index=True),
                buckets, config, context.log, store.stored_uplift_fits(con), refit_every_days)
            if results:
                effects = pd.concat([r.effects for _, r in results], ignore_index=True)
                curves = pd.concat([r.curves for _, r in results], ignore_index=True)
                summary = pd.concat([r.summary for _, r in results], ignore_index=True)
            else:
                context.log.warning("no randomized campaign with enough follow-up in the data: no per-user effects")
                effects = curves = summary = pd.DataFrame()
            store.save_user_effects(con, effects, curves, summary)
            store.save_uplift_models(con, uplift_model_rows(results))
            tables = {key: table_metadata(con, key) for key in (USER_EFFECTS_KEY, CURVES_KEY)}
        seconds = round(time.perf_counter() - started, 2)
        plots = {f"qini_{cid}": uplift_plot(r.curves, warehouse.reports_folder / f"uplift_{cid}.png",
                                            title=f"{cid}: Qini curves, {config.horizon_days}-day churn")
                 for cid, r in results}
        info = pd.DataFrame({cid: r.info for cid, r in results}) if results else pd.DataFrame()
        yield dg.MaterializeResult(asset_key=USER_EFFECTS_KEY, metadata={
            **tables[USER_EFFECTS_KEY], "dagster/row_count": len(effects), "campaigns": len(results),
            "seconds": seconds,
            "horizon_days": config.horizon_days, "max_fit_users": config.max_fit_users,
            "mode": "; ".join(f"{cid}: {r.info['fit']}" for cid, r in results) or "no campaign fitted",
            "refit_every_days": refit_every_days,
            "fit_on_a_sample": ", ".join(cid for cid, r in results if r.info["fit_sampled"]) or "no",
            "skipped": "; ".join(skipped.values()) or "none",
            "counts": md_table(info, index=True) if len(info) else "none",
            **{name: md_image(path, f"{name}: Qini curves") for name, path in plots.items() if path},
        })
        shown = ["campaign_id", "policy", "users", "qini_coefficient", "qini_coefficient_lower_90",
                 "qini_coefficient_upper_90", "auuc", "auuc_over_random"]
        yield dg.MaterializeResult(asset_key=CURVES_KEY, metadata={
            **tables[CURVES_KEY], "dagster/row_count": len(curves),
            "summary": md_table(summary[[c for c in shown if c in summary]], floatfmt=".4f") if len(summary)
            else "none",
            **{name: md_image(path, f"{name}: Qini curves") for name, path in plots.items() if path},
        })
        probs = effects[["p_churn_control", "p_churn_treated"]].to_numpy() if len(effects) else None
        ok = bool(len(effects) == 0 or (
            effects["effect"].between(-1, 1).all() and (effects["lower_90"] <= effects["effect"] + 1e-12).all()
            and (effects["effect"] <= effects["upper_90"] + 1e-12).all() and ((probs >= 0) & (probs <= 1)).all()))
        yield dg.AssetCheckResult(asset_key=USER_EFFECTS_KEY, check_name="effects_in_range_and_ordered", passed=ok)

    return user_treatment_effects


def build_targeting_asset(spec: ScenarioSpec, path: Path) -> dg.AssetsDefinition:
    """A scenario with ``targeting``: the segment's N best-ranked users by each policy, what each keeps."""
    key = scenario_key(spec.name)
    t = spec.targeting
    assert t is not None
    size = f"{t.users:,} users" if t.users else (f"{t.share:.0%}" if t.share else f"budget {t.budget:g} at "
                                                                                   f"{t.cost_per_send:g} a send")

    @dg.asset(
        key=key, group_name=GROUP, kinds={"python", "duckdb"}, deps=[USER_EFFECTS_KEY, SEGMENT_BASE_KEY],
        description=f"{spec.description}\n\nSegment: {spec.segment.description}. Targeting {size} of it by "
                    f"{t.policy} (compared with risk and random targeting), campaign "
                    f"{spec.intervention.effect.campaign_id}, {spec.horizon_days} days. Spec: {path.name}. Writes "
                    "one row per policy in simulation.scenario_results (<name>:<policy>).",
        check_specs=[dg.AssetCheckSpec(name, asset=key, description=SCENARIO_CHECKS[name])
                     for name in ("simulated", "intervals_ordered_and_in_bounds")],
        metadata={"spec_file": str(path)},
    )
    def _targeting(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        with warehouse.reading() as (con, _reader):
            effects = store.user_effects(con)
            with naming_file(path):
                run = run_targeting(spec, store.segment_base(con), effects)
            as_of = pd.Timestamp(effects["as_of"].max()) if len(effects) else store.segment_as_of(con)
            results = run.results.assign(as_of=as_of)
            results.loc[results["status"] == "skipped", "status_reason"] = \
                f"{path.name}: " + results["status_reason"]
            store.save_targeting(con, spec.name, results, run.users.assign(as_of=as_of), as_of)
            table = table_metadata(con, RESULTS_TABLE)
        first = results.iloc[0]
        if first["status"] == "skipped":
            context.log.warning(f"{spec.name}: skipped: {first['status_reason']}")
        plot = targeting_plot(run.gains, warehouse.reports_folder / f"scenario_{spec.name}.png",
                              title=f"{spec.name}: users kept, {int(first['users_affected']):,} targeted")
        shown = ["policy", "users_affected", "expected_users_kept", "expected_users_kept_lower_90",
                 "expected_users_kept_upper_90", "gain_over_random", "gain_over_random_lower_90",
                 "gain_over_random_upper_90", "expected_value_kept", "expected_value_kept_lower_90",
                 "expected_value_kept_upper_90", "value_gain_over_random"]
        yield dg.MaterializeResult(metadata={
            **table, "status": first["status"], "status_reason": first["status_reason"],
            "users_affected": int(first["users_affected"]), "dagster/row_count": len(run.users),
            "value_kept": value_note(first, spec.horizon_days),
            "policies": md_table(results[[c for c in shown if c in results]], floatfmt=".2f"),
            "plot": md_image(plot, "users kept by policy", "nothing targeted"),
        })
        yield dg.AssetCheckResult(check_name="simulated", passed=first["status"] == "simulated",
                                  severity=dg.AssetCheckSeverity.WARN, metadata={"reason": first["status_reason"]})
        simulated = results[results["status"] == "simulated"]  # none when skipped (no targeting columns then)
        ordered = simulated.empty or all(
            (simulated[f"{m}_lower_90"] <= simulated[f"{m}_upper_90"]).all()
            for m in ("expected_users_kept", "gain_over_random", "retention_difference")) and not (
            simulated["expected_value_kept_lower_90"] > simulated["expected_value_kept_upper_90"]).any()
        yield dg.AssetCheckResult(check_name="intervals_ordered_and_in_bounds", passed=bool(ordered))

    return _targeting


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
            table = table_metadata(con, RANKING_KEY)
        finally:
            con.close()
        return dg.MaterializeResult(metadata={**table, "dagster/row_count": len(ranking), "ranking": md_table(ranking)})

    return _ranking


def simulation_assets(scenarios_dir: Path, settings: Settings | None = None) -> list[dg.AssetsDefinition]:
    """The layer's assets for the specs in ``scenarios_dir`` (a bad spec fails loading, naming file and field)."""
    specs = load_specs(scenarios_dir)
    config = UpliftConfig() if settings is None else UpliftConfig(horizon_days=settings.uplift_horizon_days,
                                                                  max_fit_users=settings.uplift_max_fit_users)
    refit = Settings.effects_refit_every_days if settings is None else settings.effects_refit_every_days
    assets = [build_campaign_effects_asset(refit), user_segment_base, build_user_effects_asset(config, refit)]
    assets += [build_targeting_asset(spec, path) if spec.targeting else build_scenario_asset(spec, path)
               for spec, path in specs.values()]
    if specs:
        assets.append(build_ranking_asset(sorted(specs)))
    return assets
