"""The simulation layer on real assets: the demo's scenarios, a custom scenario folder, and the campaign's planted
hazard ratio recovered from its randomized groups."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from dagster_twins.pipeline import run_pipeline
from dagster_twins.settings import PROJECT_ROOT
from dagster_twins.simulation.effects import estimate_campaign_effects
from dagster_twins.simulation.specs import ScenarioSpecError
from dagster_twins.warehouse.tables import connect
from tests.conftest import make_settings

# The targeting example needs 60 days of follow-up after a campaign: the 45-day small demo has none, so there it
# is recorded as skipped (tests/test_uplift_pipeline.py checks that); the other shipped scenarios simulate.
TARGETING = "retention_campaign_budget_targeting"


def test_the_demo_scenarios_write_results_users_and_a_ranking(built):
    settings, result, _ = built
    checks = [c for c in result.get_asset_check_evaluations() if c.asset_key.path[0] == "simulation"
              and not (c.asset_key.path[-1] == f"scenario_{TARGETING}" and c.check_name == "simulated")]
    assert checks and all(c.passed for c in checks), [c.check_name for c in checks if not c.passed]
    con = connect(settings.warehouse_path, read_only=True)
    try:
        results = con.execute("select * from simulation.scenario_results order by scenario").df()
        users = con.execute("select scenario, count(*) as n, min(baseline_churn_probability) as lo, "
                            "max(baseline_churn_probability) as hi from simulation.scenario_user_effects "
                            "group by scenario order by scenario").df()
        ranking = con.execute("select * from simulation.scenario_policy_ranking order by rank").df()
        segment_base = con.execute("select count(*) from simulation.user_segment_base").fetchone()[0]
        alive = con.execute("select count(*) from churn.churn_predictions where question = 'churn'").fetchone()[0]
    finally:
        con.close()
    shipped = sorted(p.stem for p in (PROJECT_ROOT / "scenarios").glob("*.yaml") if p.stem != TARGETING)
    assert results.loc[results["scenario"] == TARGETING, "status"].tolist() == ["skipped"]
    results = results[results["scenario"] != TARGETING]
    assert results["scenario"].tolist() == shipped
    assert users["n"].tolist() == results["users_affected"].tolist()
    assert (users["lo"] >= 0).all() and (users["hi"] <= 1).all()
    assert segment_base == alive
    assert set(results["effect_kind"]) == {"estimated", "assumed", "covariate_shift"}
    assert ranking["users_kept_per_user_treated"].is_monotonic_decreasing
    assert sorted(ranking["scenario"]) == shipped


def _write_spec(folder: Path, name: str, effect: str, where: str = "[]", draws: int = 200) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(
        f"description: test\nsegment: {{description: s, where: {where}}}\n"
        f"intervention: {{description: i, effect: {effect}}}\nhorizon_days: 30\ndraws: {draws}\nseed: 1\n")


def test_a_null_scenario_keeps_nobody_and_reruns_reproduce(built_copy, tmp_path):
    settings, demo = built_copy
    folder = tmp_path / "scenarios"
    _write_spec(folder, "nothing", "{kind: assumed, hazard_ratio: {median: 1, lower_90: 1, upper_90: 1}}")
    _write_spec(folder, "halve_churn", "{kind: assumed, hazard_ratio: {median: 0.5, lower_90: 0.4, upper_90: 0.6}}",
                where='[{column: risk_tier, op: "!=", value: "none"}]')
    settings = replace(settings, scenarios_dir=folder)
    outputs = []
    for _ in range(2):
        run = run_pipeline(settings, demo.start_date, demo.end_date, instance=dg.DagsterInstance.ephemeral(),
                           layer="simulation")
        assert all(c.passed for c in run.get_asset_check_evaluations())
        con = connect(settings.warehouse_path, read_only=True)
        try:
            outputs.append(con.execute("select * exclude (as_of, fitted_on) from simulation.scenario_results "
                                       "order by scenario").df())
        finally:
            con.close()
    first, second = outputs
    assert first.equals(second)  # seeded: the same spec on the same data gives the same numbers
    halve, nothing = first.set_index("scenario").loc["halve_churn"], first.set_index("scenario").loc["nothing"]
    assert nothing["retention_difference"] == 0 and nothing["expected_users_kept_upper_90"] == 0
    assert halve["retention_difference_lower_90"] > 0 and halve["users_affected"] > 0
    assert halve["scenario_retention"] > halve["baseline_retention"]


def test_a_bad_spec_stops_the_code_location_naming_file_and_field(tmp_path):
    from dagster_twins.location import build_definitions

    folder = tmp_path / "scenarios"
    _write_spec(folder, "broken", "{kind: estimated}")
    with pytest.raises(ScenarioSpecError, match=r"broken.yaml: intervention.effect: .*needs campaign_id"):
        build_definitions(replace(make_settings(tmp_path), scenarios_dir=folder))


def test_a_segment_on_an_unknown_column_fails_the_run_naming_file_and_field(built_copy, tmp_path):
    settings, demo = built_copy
    folder = tmp_path / "scenarios"
    _write_spec(folder, "typo", "{kind: assumed, hazard_ratio: {median: 0.9, lower_90: 0.8, upper_90: 1}}",
                where='[{column: p_churn_31d, op: ">", value: 0.5}]')
    run = run_pipeline(replace(settings, scenarios_dir=folder), demo.start_date, demo.end_date,
                       instance=dg.DagsterInstance.ephemeral(), layer="simulation", raise_on_error=False)
    assert not run.success
    failure = next(e for e in run.all_events if e.is_step_failure)
    assert "typo.yaml: segment.where[0].column: no column 'p_churn_31d'" in str(failure.event_specific_data.error)


# Since issue 19 the demo plants 0.3 for users with recent support trouble and 0.9 for the others (geometric mean
# 0.73, Hazard.campaign_hazard_ratio); one ratio fitted to that mix weighs the users who churn more (those with
# trouble) more, and its interval still covers 0.6 here (re-run after the change: passed).
PLANTED_HAZARD_RATIO = 0.6


def test_the_campaign_estimate_covers_the_planted_hazard_ratio(tmp_path_factory):
    """A moderate demo (4,000 users over 120 days, fixed seed) through ingestion and dbt: the randomized
    campaign's 90% interval over 60 days of follow-up contains the planted ratio."""
    from dagster_twins.demo import generate_demo

    root = tmp_path_factory.mktemp("campaign")
    demo = generate_demo(root / "demo", n_users=4000, n_days=120, end_date=date(2026, 3, 31), seed=5)
    shutil.copytree(demo.landing_dir, root / "landing")
    settings = make_settings(root)
    instance = dg.DagsterInstance.ephemeral()
    for layer in ("ingestion", "transform"):
        run_pipeline(settings, demo.start_date, demo.end_date, instance=instance, layer=layer)
    con = connect(settings.warehouse_path, read_only=True)
    try:
        experiments = con.execute("select * from marts.fct_campaign_experiment_assignments").df()
    finally:
        con.close()
    effects = estimate_campaign_effects(experiments, followups=(60,)).iloc[0]
    assert effects["treatment_users"] > 1000 and effects["control_users"] > 1000
    assert effects["lower_90"] < PLANTED_HAZARD_RATIO < effects["upper_90"], effects.to_dict()
