"""The simulation's daily reuse without Dagster: campaign effects and per-user campaign fits are reused when their
inputs did not change (equal to a fresh fit), or within the refit cadence (saying the day they were made), and
fitted afresh otherwise; a fit made after the day asked for is never used (no look-ahead)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest

from dagster_twins.simulation import store
from dagster_twins.simulation.effects import (
    ESTIMATED,
    REUSE_CADENCE,
    REUSE_UNCHANGED,
    design_fingerprint,
    estimate_campaign_effects,
    estimated_distribution,
    refresh_campaign_effects,
)
from dagster_twins.simulation.uplift import (
    REUSED_CADENCE,
    REUSED_UNCHANGED,
    UpliftConfig,
    campaign_user_effects,
    fit_campaign,
    fit_fingerprint,
    model_from_json,
    model_to_json,
    reuse_mode,
    stored_fit,
    thin_reason,
    with_active,
)
from tests.test_simulation_math import synthetic_experiment
from tests.test_uplift_math import experiment

DAY = date(2026, 6, 1)


def campaigns(seed: int = 1) -> pd.DataFrame:
    """Two randomized campaigns with user ids, followed up to 120 days."""
    frames = [synthetic_experiment(1_500, ratio, seed=seed + i).assign(campaign_id=cid)
              for i, (cid, ratio) in enumerate((("a", 0.6), ("b", 1.0)))]
    frame = pd.concat(frames, ignore_index=True)
    return frame.assign(user_id=[f"u{i}" for i in range(len(frame))])


def later(frame: pd.DataFrame) -> pd.DataFrame:
    """The same campaigns a day later: users still followed (not churned) are followed one more day."""
    out = frame.copy()
    alive = out["churned"] == 0
    out.loc[alive, "days_followed"] += 1.0
    return out


def _values(frame: pd.DataFrame) -> pd.DataFrame:
    columns = ["campaign_id", "followup_days", "hazard_ratio", "lower_90", "upper_90", "p_value", "treatment_users",
               "control_users", "treatment_churned", "control_churned"]
    return frame[columns].reset_index(drop=True)


def test_unchanged_inputs_reuse_the_estimate_and_it_equals_a_fresh_one():
    frame = campaigns()
    first = refresh_campaign_effects(frame, DAY, None, refit_every_days=1)
    assert (first["mode"] == ESTIMATED).all() and (first["estimated_on"] == pd.Timestamp(DAY)).all()
    pd.testing.assert_frame_equal(_values(first), _values(estimate_campaign_effects(frame)))
    # The warehouse returns rows in any order: the same rows are the same inputs.
    again = refresh_campaign_effects(frame.sample(frac=1.0, random_state=3), date(2026, 6, 9), first,
                                     refit_every_days=1)
    assert (again["mode"] == REUSE_UNCHANGED).all()
    pd.testing.assert_frame_equal(_values(again), _values(first))


def test_changed_inputs_reuse_within_the_cadence_and_refit_after_it():
    frame, next_day = campaigns(), later(campaigns())
    first = refresh_campaign_effects(frame, DAY, None)
    # Every user is followed past 30 days or churned by then: the 30-day windows did not change, the rest did.
    assert (design_fingerprint(frame[frame["campaign_id"] == "a"], 30)
            == design_fingerprint(next_day[next_day["campaign_id"] == "a"], 30))
    within = refresh_campaign_effects(next_day, date(2026, 6, 7), first, refit_every_days=7)
    modes = within.set_index(["campaign_id", within["followup_days"].fillna(-1)])["mode"]
    assert modes.xs(30.0, level=1).eq(REUSE_UNCHANGED).all()
    assert modes.xs(-1.0, level=1).eq(REUSE_CADENCE).all()  # the whole follow-up grew: reused, 6 days old
    assert (within["estimated_on"] == pd.Timestamp(DAY)).all()
    after = refresh_campaign_effects(next_day, date(2026, 6, 8), first, refit_every_days=7)
    changed = after["mode"] == ESTIMATED
    assert changed.sum() == (modes != REUSE_UNCHANGED).sum()
    assert (after.loc[changed, "estimated_on"] == pd.Timestamp("2026-06-08")).all()
    pd.testing.assert_frame_equal(_values(after), _values(estimate_campaign_effects(next_day)))


def test_an_estimate_from_after_the_day_is_never_used():
    frame = campaigns()
    stored = refresh_campaign_effects(frame, DAY, None)
    earlier = refresh_campaign_effects(frame, date(2026, 5, 20), stored, refit_every_days=30)
    assert (earlier["mode"] == ESTIMATED).all() and (earlier["estimated_on"] == pd.Timestamp("2026-05-20")).all()


def test_a_scenario_takes_the_stored_estimate_for_its_horizon():
    frame = campaigns()
    stored = refresh_campaign_effects(frame, DAY, None)
    fresh = estimated_distribution(frame, "a", 60)
    reused = estimated_distribution(frame.iloc[:0], "a", 60, stored, DAY)  # no rows needed: nothing refitted
    assert (reused.log_median, reused.log_sd) == (fresh.log_median, fresh.log_sd)
    assert "estimated on 2026-06-01" in reused.source
    # A horizon the table lacks, or an estimate made after the day, is fitted from the rows.
    assert estimated_distribution(frame, "a", 45, stored, DAY).source != reused.source
    assert "estimated on" not in estimated_distribution(frame, "a", 60, stored, date(2026, 5, 1)).source


# --- Per-user campaign effects ---------------------------------------------------------------------------------

CONFIG = UpliftConfig(horizon_days=60, draws=50)


def uplift_campaign(n: int = 3_000) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(experiment rows, covariates at the send, active users today) of one campaign 'c'."""
    frame = experiment(n, seed=8, trouble_ratio=0.3, other_ratio=0.8)
    rows = frame[["user_id", "treated", "days_followed", "churned"]].assign(
        campaign_id="c", sent_at=pd.Timestamp("2026-03-01 10:00"), churned_before_send=False, in_both_groups=False,
        as_of=pd.Timestamp("2026-07-01"))  # the end of observation: landing day 2026-06-30 closed
    at_send = frame.drop(columns=["treated", "days_followed", "churned", "true_effect"])
    active = at_send.iloc[:500].assign(as_of=pd.Timestamp("2026-06-30"))
    return rows, at_send, active


def _round_trip(fit_effects, con: duckdb.DuckDBPyConnection) -> dict:
    """Save a campaign's effects and fit as the asset does, and read the stored fit back."""
    from dagster_twins.simulation.assets import uplift_model_rows

    store.save_user_effects(con, fit_effects.effects, fit_effects.curves, fit_effects.summary)
    store.save_uplift_models(con, uplift_model_rows([("c", fit_effects)]))
    return store.stored_uplift_fits(con)["c"]


def test_a_stored_uplift_fit_scores_as_a_fresh_fit_does():
    rows, at_send, active = uplift_campaign()
    fitted_on = pd.Timestamp("2026-06-30")
    fit = fit_campaign("c", rows, at_send, CONFIG, fitted_on, replicates=20)
    fit = replace(fit, info={**fit.info, "inputs_fingerprint": fit_fingerprint(rows, CONFIG)})
    fresh = with_active(fit, active, CONFIG)
    model = model_from_json(model_to_json(fit.model))
    np.testing.assert_array_equal(model.covariance, fit.model.covariance)
    assert model.baseline_at_horizon == fit.model.baseline_at_horizon
    stored = _round_trip(fresh, duckdb.connect())
    assert stored["inputs_fingerprint"] == fit.info["inputs_fingerprint"]
    reused = with_active(stored_fit(stored), active, CONFIG)
    pd.testing.assert_frame_equal(reused.effects, fresh.effects, check_dtype=False)
    pd.testing.assert_frame_equal(reused.curves[fresh.curves.columns], fresh.curves, check_dtype=False)
    pd.testing.assert_frame_equal(reused.summary[fresh.summary.columns], fresh.summary, check_dtype=False)
    # The same as the one-call path the tools use.
    whole = campaign_user_effects("c", rows, at_send, active, CONFIG, replicates=20, fitted_on=fitted_on)
    pd.testing.assert_frame_equal(whole.effects, fresh.effects)


def test_uplift_reuse_follows_the_inputs_the_cadence_and_the_day():
    rows, _, _ = uplift_campaign()
    fingerprint = fit_fingerprint(rows, CONFIG)
    # Follow-up beyond the horizon does not change the fit; an outcome within it does.
    beyond = rows.assign(days_followed=np.where(rows["days_followed"] >= 60, rows["days_followed"] + 5,
                                                rows["days_followed"]))
    assert fit_fingerprint(beyond.sample(frac=1.0, random_state=1), CONFIG) == fingerprint
    within = rows.index[(rows["days_followed"] < 60) & (rows["churned"] == 1)][0]
    changed = rows.copy()
    changed.loc[within, "churned"] = 0  # a late activity row: not churned after all, followed so far
    assert fit_fingerprint(changed, CONFIG) != fingerprint
    stored = {"fitted_on": pd.Timestamp("2026-06-30"), "inputs_fingerprint": fingerprint}
    assert reuse_mode(stored, fingerprint, pd.Timestamp("2026-07-30"), 7) == REUSED_UNCHANGED
    assert reuse_mode(stored, "other", pd.Timestamp("2026-07-06"), 7) == REUSED_CADENCE
    assert reuse_mode(stored, "other", pd.Timestamp("2026-07-07"), 7) is None
    assert reuse_mode(stored, fingerprint, pd.Timestamp("2026-06-29"), 7) is None  # made after the day
    assert reuse_mode(None, fingerprint, pd.Timestamp("2026-06-30"), 7) is None


def test_a_thin_campaign_is_skipped_before_its_covariates_are_read():
    rows, _, _ = uplift_campaign()
    assert thin_reason("c", rows, CONFIG) is None
    assert "0 churn event" in thin_reason("c", rows.assign(churned=0), CONFIG)
    assert "too soon" in thin_reason("c", rows.assign(days_followed=np.minimum(rows["days_followed"], 30)).assign(
        churned=(rows["days_followed"] < 30) & (rows["churned"] == 1)), CONFIG)


@pytest.mark.parametrize("missing", ["uplift_models", "fitted_on"])
def test_no_stored_fit_without_its_tables(missing):
    """Effects written before fits were stored (no fitted_on), or without their model: refitted, never mixed."""
    rows, at_send, active = uplift_campaign(1_500)
    fit = fit_campaign("c", rows, at_send, CONFIG, pd.Timestamp("2026-06-30"), replicates=10)
    effects = with_active(replace(fit, info={**fit.info, "inputs_fingerprint": "x"}), active, CONFIG)
    con = duckdb.connect()
    if missing == "fitted_on":
        effects = replace(effects, effects=effects.effects.drop(columns=["fitted_on"]))
    store.save_user_effects(con, effects.effects, effects.curves, effects.summary)
    if missing != "uplift_models":
        from dagster_twins.simulation.assets import uplift_model_rows

        store.save_uplift_models(con, uplift_model_rows([("c", effects)]))
    assert store.stored_uplift_fits(con) == {}


class HistoryRead(AssertionError):
    pass


class NoReads:
    """A reader (or a loader of active users) that fails on any use: proof that nothing was read."""

    def __getattr__(self, name):
        raise HistoryRead(f"read through {name}")

    def __call__(self):
        raise HistoryRead("active users read")


def test_the_asset_helper_reuses_a_stored_fit_without_reading_histories():
    """``estimate_user_effects`` with a stored fit of the same inputs scores today's users with it: no pass over
    the population's history (the reader is never touched), and the effects equal the stored fit's."""
    import logging

    from dagster_twins.simulation.assets import estimate_user_effects

    rows, at_send, active = uplift_campaign(2_000)
    fit = fit_campaign("c", rows, at_send, CONFIG, pd.Timestamp("2026-06-23"), replicates=10)
    fresh = with_active(replace(fit, info={**fit.info, "inputs_fingerprint": fit_fingerprint(rows, CONFIG)}),
                        active, CONFIG)
    stored = {"c": _round_trip(fresh, duckdb.connect())}
    log = logging.getLogger("test")
    results, skipped = estimate_user_effects(NoReads(), rows, lambda: active, 1, CONFIG, log, stored,
                                             refit_every_days=1)
    assert not skipped and results[0][1].info["fit"] == f"{REUSED_UNCHANGED} (fitted on 2026-06-23)"
    pd.testing.assert_frame_equal(results[0][1].effects, fresh.effects, check_dtype=False)
    # Inputs changed (a churn within the horizon turned out not to be one): reused within the cadence only.
    within = rows.index[(rows["days_followed"] < 60) & (rows["churned"] == 1)][0]
    changed = rows.copy()
    changed.loc[within, "churned"] = 0
    results, _ = estimate_user_effects(NoReads(), changed, lambda: active, 1, CONFIG, log, stored,
                                       refit_every_days=8)
    assert results[0][1].info["fit"] == f"{REUSED_CADENCE} (fitted on 2026-06-23)"
    with pytest.raises(HistoryRead):  # 7 days old with a 7-day cadence: refitted, which reads histories
        estimate_user_effects(NoReads(), changed, lambda: active, 1, CONFIG, log, stored, refit_every_days=7)
    # Too thin whatever the covariates: skipped without reading them or the active users.
    thin = rows.assign(churned=0)
    results, skipped = estimate_user_effects(NoReads(), thin, NoReads(), 1, CONFIG, log, {}, refit_every_days=7)
    assert results == [] and "0 churn event" in skipped["c"]


# --- On real assets ----------------------------------------------------------------------------------------------

EFFECTS = ["simulation", "campaign_effects"]
TOP_RISK = ["simulation", "scenario_retention_campaign_top_risk_decile"]


def _effects_run(settings, demo):
    import dagster as dg

    from dagster_twins.pipeline import run_pipeline

    run = run_pipeline(settings, demo.start_date, demo.end_date, instance=dg.DagsterInstance.ephemeral(),
                       selection=[dg.AssetKey(EFFECTS), dg.AssetKey(TOP_RISK)])
    assert run.success and all(c.passed for c in run.get_asset_check_evaluations()
                               if c.asset_key.path == EFFECTS)
    metadata = {tuple(e.event_specific_data.materialization.asset_key.path):
                e.event_specific_data.materialization.metadata for e in run.get_asset_materialization_events()}
    return metadata[tuple(EFFECTS)]["mode"].value


def _read(settings, sql):
    from dagster_twins.warehouse.tables import connect

    con = connect(settings.warehouse_path, read_only=True)
    try:
        return con.execute(sql).df()
    finally:
        con.close()


def test_campaign_effects_reuse_on_a_rerun_and_refit_a_week_later_and_scenarios_read_them(built_copy):
    settings, demo = built_copy
    before = _read(settings, "select * from simulation.campaign_effects order by campaign_id, followup_days")
    day = pd.Timestamp(demo.end_date)
    assert (before["estimated_on"] == day).all()  # the build estimated every row as of its last landing day
    # The same day again: nothing changed, every row reused, values as they were.
    assert _effects_run(settings, demo) == f"{REUSE_UNCHANGED} {len(before)} (estimated on {demo.end_date})"
    again = _read(settings, "select * from simulation.campaign_effects order by campaign_id, followup_days")
    pd.testing.assert_frame_equal(_values(again), _values(before))
    # The scenario with the retention campaign's measured effect takes the stored 60-day estimate.
    result = _read(settings, "select * from simulation.scenario_results "
                             "where scenario = 'retention_campaign_top_risk_decile'").iloc[0]
    row = before[(before["campaign_id"] == "retention_q") & (before["followup_days"] == 60)].iloc[0]
    assert result["effect_hazard_ratio"] == pytest.approx(row["hazard_ratio"], rel=1e-12)
    assert f"estimated on {demo.end_date}" in result["effect_source"]
    # A week later, the users still followed followed a week longer: re-estimated (the default cadence, 7 days).
    from dagster_twins.warehouse.tables import connect

    con = connect(settings.warehouse_path)
    try:
        con.execute("update marts.fct_campaign_experiment_assignments set as_of = as_of + interval 7 day, "
                    "days_followed = days_followed + case when churned = 1 then 0 else 7 end")
    finally:
        con.close()
    mode = _effects_run(settings, demo)
    after = _read(settings, "select * from simulation.campaign_effects order by campaign_id, followup_days")
    week = (day + pd.Timedelta(days=7)).date()
    assert f"{ESTIMATED} " in mode
    assert (after.loc[after["mode"] == ESTIMATED, "estimated_on"] == pd.Timestamp(week)).all()
    experiments = _read(settings, "select * from marts.fct_campaign_experiment_assignments")
    fresh = estimate_campaign_effects(experiments).sort_values(["campaign_id", "followup_days"])
    estimated = after["mode"] == ESTIMATED
    pd.testing.assert_frame_equal(_values(after[estimated]), _values(fresh[estimated.to_numpy()]))
