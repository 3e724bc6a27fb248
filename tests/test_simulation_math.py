"""The simulation's math without Dagster: closed forms, Monte Carlo error, effect estimates, spec validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dagster_twins.churn.models import SurvivalModel
from dagster_twins.settings import PROJECT_ROOT
from dagster_twins.simulation.effects import Z90, HazardRatioDistribution, estimate_campaign_effect
from dagster_twins.simulation.engine import (
    ParameterDraws,
    draw_parameters,
    horizon_cumulative_hazard,
    simulate,
    summarize_outcome,
)
from dagster_twins.simulation.scenario import policy_ranking
from dagster_twins.simulation.specs import ScenarioSpecError, load_spec, load_specs, naming_file, segment_mask

RNG = np.random.default_rng(0)
X = RNG.normal(size=(400, 2))
TENURE = RNG.uniform(5, 150, 400)


def cox_model(se: float = 0.1, events: int = 200) -> SurvivalModel:
    """A Cox model with a linear baseline H0(t) = 0.002 t over 0..400 days."""
    times = np.arange(1.0, 401.0)
    return SurvivalModel(kind="cox", columns=["a", "b"], coef=np.array([0.5, -0.3]), center=np.zeros(2),
                         baseline_times=times, baseline_cumhaz=0.002 * times, coef_se=np.array([se, se]),
                         param_cov=np.diag([se**2, se**2]), events=events)


def fixed(model: SurvivalModel, n: int) -> ParameterDraws:
    return ParameterDraws(np.tile(model.coef, (n, 1)), np.ones(n), np.full(n, model.intercept), np.full(n, model.rho))


def test_cox_horizon_churn_matches_the_closed_form():
    model = cox_model()
    hazard = horizon_cumulative_hazard(model, fixed(model, 3), X, TENURE, 30)
    expected = 0.002 * 30 * np.exp(X @ model.coef)  # linear baseline: H0(a + 30) - H0(a) = 0.06 within range
    inside = TENURE + 30 <= 400
    np.testing.assert_allclose(hazard[inside, 0], expected[inside], rtol=1e-12)
    out = simulate(model, fixed(model, 3), X, TENURE, 30, hazard_ratio=np.full(3, 0.5))
    np.testing.assert_allclose(out.user_p_scenario, 1 - np.exp(-0.5 * hazard[:, 0]), rtol=1e-12)


def test_weibull_horizon_churn_matches_the_closed_form():
    model = SurvivalModel(kind="weibull", columns=["a", "b"], coef=np.array([0.2, 0.1]), center=np.zeros(2),
                          baseline_times=np.array([]), baseline_cumhaz=np.array([]), intercept=5.0, rho=1.3)
    hazard = horizon_cumulative_hazard(model, fixed(model, 2), X, TENURE, 45)
    scale = np.exp(5.0 + X @ model.coef)
    np.testing.assert_allclose(hazard[:, 1], ((TENURE + 45) / scale) ** 1.3 - (TENURE / scale) ** 1.3, rtol=1e-10)


def test_parameter_draws_follow_the_fit_covariance():
    model = cox_model(se=0.2, events=100)
    draws = draw_parameters(model, np.random.default_rng(1), 20_000)
    np.testing.assert_allclose(draws.coef.mean(axis=0), model.coef, atol=0.01)
    np.testing.assert_allclose(draws.coef.std(axis=0), [0.2, 0.2], rtol=0.03)
    assert np.log(draws.baseline_multiplier).std() == pytest.approx(0.1, rel=0.03)  # 1 / sqrt(100 events)


def run(draws: int, seed: int, effect: HazardRatioDistribution, model: SurvivalModel | None = None) -> dict:
    model = model or cox_model()
    rng = np.random.default_rng(seed)
    params = draw_parameters(model, rng, draws)
    out = simulate(model, params, X, TENURE, 30, hazard_ratio=effect.draw(rng, draws),
                   placebo_ratio=effect.placebo().draw(rng, draws), chunk_users=128)
    return summarize_outcome(out)


NULL = HazardRatioDistribution.from_interval(1.0, 0.8, 1.25, "no effect on average")
HALF = HazardRatioDistribution.from_interval(0.5, 0.4, 0.625, "halves the hazard")


def test_a_null_intervention_gives_zero_difference_up_to_monte_carlo_error():
    result = run(2000, seed=3, effect=NULL)
    # The hazard ratio is log-symmetric around 1, so the retention difference is zero up to a second-order term
    # (E[exp(-H r)] over r); it must be within Monte Carlo error, and its interval must cover zero.
    assert abs(result["retention_difference"]) < 4 * result["retention_difference_mc_error"] + 1e-4
    assert result["retention_difference_lower_90"] < 0 < result["retention_difference_upper_90"]
    exact_null = run(200, seed=3, effect=HazardRatioDistribution(0.0, 0.0, "assumed", "exactly none"))
    assert exact_null["retention_difference"] == 0.0 and exact_null["expected_users_kept_upper_90"] == 0.0


def test_doubling_draws_narrows_the_monte_carlo_error_by_root_two():
    # Empirically: the spread of the mean difference over independent seeds.
    means = {k: np.array([run(k, seed, HALF)["retention_difference"] for seed in range(40)]) for k in (100, 200)}
    empirical = means[200].std(ddof=1) / means[100].std(ddof=1)
    assert 0.5 < empirical < 0.95, empirical
    # And as the results report it (sd / sqrt(draws)).
    reported = run(4000, 1, HALF)["retention_difference_mc_error"] / run(2000, 1, HALF)["retention_difference_mc_error"]
    assert reported == pytest.approx(1 / np.sqrt(2), rel=0.08)


def test_a_halved_hazard_keeps_the_expected_users():
    model = cox_model(se=1e-9, events=0)
    result = run(50, seed=0, effect=HazardRatioDistribution(np.log(0.5), 0.0, "assumed", "half"), model=model)
    hazard = horizon_cumulative_hazard(model, fixed(model, 1), X, TENURE, 30)[:, 0]
    kept = (np.exp(-0.5 * hazard) - np.exp(-hazard)).sum()
    assert result["expected_users_kept"] == pytest.approx(kept, rel=1e-6)
    assert result["users_kept_per_user_treated"] == pytest.approx(kept / len(X), rel=1e-6)


@settings(max_examples=15, deadline=None)
@given(chunk=st.integers(min_value=1, max_value=500), seed=st.integers(min_value=0, max_value=10_000))
def test_chunking_users_does_not_change_the_result(chunk: int, seed: int):
    model = cox_model()
    params = draw_parameters(model, np.random.default_rng(seed), 30)
    ratio = HALF.draw(np.random.default_rng(seed + 1), 30)
    whole = simulate(model, params, X, TENURE, 30, hazard_ratio=ratio, chunk_users=len(X))
    parts = simulate(model, params, X, TENURE, 30, hazard_ratio=ratio, chunk_users=chunk)
    np.testing.assert_allclose(parts.churners_scenario, whole.churners_scenario, rtol=1e-12)
    np.testing.assert_allclose(parts.user_kept_lower, whole.user_kept_lower, rtol=1e-12)


def test_the_same_seed_gives_the_same_result():
    assert run(100, 5, HALF) == run(100, 5, HALF)
    assert run(100, 5, HALF) != run(100, 6, HALF)


def test_an_assumed_effect_draws_its_stated_interval():
    effect = HazardRatioDistribution.from_interval(0.8, 0.65, 0.98, "stated")
    draws = effect.draw(np.random.default_rng(0), 200_000)
    lower, upper = np.quantile(draws, [0.05, 0.95])
    # Log-symmetric: the wider side in log (0.8 / 0.65 against 0.98 / 0.8) sets the spread.
    assert lower == pytest.approx(0.65, rel=0.01) and upper == pytest.approx(0.8**2 / 0.65, rel=0.01)
    assert effect.log_sd == pytest.approx(np.log(0.8 / 0.65) / Z90)


def synthetic_experiment(n: int, hazard_ratio: float, seed: int) -> pd.DataFrame:
    """Exponential churn with a frailty the estimate can see through pre-send engagement."""
    rng = np.random.default_rng(seed)
    engagement = rng.gamma(2.0, 2.0, n)
    treated = rng.random(n) < 0.5
    rate = 0.004 * np.exp(-0.3 * np.log(engagement)) * np.where(treated, hazard_ratio, 1.0)
    time = rng.exponential(1 / rate)
    return pd.DataFrame({
        "campaign_id": "c", "treated": treated.astype(int), "churned_before_send": False, "in_both_groups": False,
        "days_followed": np.minimum(time, 120.0), "churned": (time <= 120).astype(int),
        "days_before_send_observed": 56.0, "events_before_send": rng.poisson(engagement * 56),
        "active_days_before_send": np.minimum(rng.poisson(engagement * 10), 56),
    })


def test_a_randomized_campaign_recovers_its_hazard_ratio():
    estimate = estimate_campaign_effect(synthetic_experiment(20_000, 0.6, seed=1))
    assert estimate["lower_90"] < 0.6 < estimate["upper_90"]
    assert estimate["lower_95"] < estimate["lower_90"] < estimate["hazard_ratio"] < estimate["upper_90"]
    short = estimate_campaign_effect(synthetic_experiment(20_000, 0.6, seed=1), followup_days=30)
    assert short["treatment_churned"] + short["control_churned"] < estimate["treatment_churned"] + \
        estimate["control_churned"]


def test_users_gone_before_the_send_or_in_both_groups_are_left_out_and_counted():
    frame = synthetic_experiment(2000, 0.6, seed=2)
    frame.loc[:9, "churned_before_send"] = True
    frame.loc[10:14, "in_both_groups"] = True
    estimate = estimate_campaign_effect(frame)
    assert estimate["excluded_churned_before_send"] == 10 and estimate["excluded_in_both_groups"] == 5
    assert estimate["treatment_users"] + estimate["control_users"] == 2000 - 15


def test_the_shipped_scenarios_load():
    specs = load_specs(PROJECT_ROOT / "scenarios")
    assert len(specs) >= 3
    assert {s.intervention.effect.kind for s, _ in specs.values()} == {"estimated", "assumed", "covariate_shift"}


GOOD = """
description: d
segment: {description: s, where: [{column: p_churn_30d, op: ">=", value: 0.5}]}
intervention: {description: i, effect: {kind: assumed, hazard_ratio: {median: 0.8, lower_90: 0.6, upper_90: 1.0}}}
horizon_days: 30
"""


@pytest.mark.parametrize("change, field", [
    (("horizon_days: 30", "horizon_days: 0"), "horizon_days"),
    (("median: 0.8", "median: -1"), "intervention.effect.hazard_ratio.median"),
    (("median: 0.8", "median: 1.5"), "intervention.effect.hazard_ratio"),
    (('op: ">="', 'op: "~"'), "segment.where[0].op"),
    (("kind: assumed, hazard_ratio", "kind: estimated, hazard_ratio"), "intervention.effect"),
    (("description: d\n", ""), "description"),
    (("horizon_days: 30", "horizon_days: 30\nhorizon: 30"), "horizon"),
])
def test_a_bad_spec_names_the_file_and_the_field(tmp_path: Path, change, field):
    path = tmp_path / "bad_spec.yaml"
    path.write_text(GOOD.replace(*change))
    with pytest.raises(ScenarioSpecError) as err:
        load_spec(path)
    assert str(path) in str(err.value) and f"{field}:" in str(err.value)


def test_a_good_spec_loads_with_its_file_name(tmp_path: Path):
    path = tmp_path / "good_one.yaml"
    path.write_text(GOOD)
    spec = load_spec(path)
    assert spec.name == "good_one" and spec.draws == 1000


def test_two_specs_with_one_name_fail(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("name: same\n" + GOOD)
    (tmp_path / "b.yaml").write_text("name: same\n" + GOOD)
    with pytest.raises(ScenarioSpecError, match="b.yaml: name: 'same' is also the name of"):
        load_specs(tmp_path)


def test_segments_filter_and_name_unknown_columns(tmp_path: Path):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD.replace('[{column: p_churn_30d, op: ">=", value: 0.5}]',
                                 '[{column: p_churn_30d, op: ">=", value: 0.5}, {column: tier, op: in, '
                                 'value: [high, top]}, {column: note, op: is null}]'))
    spec = load_spec(path)
    frame = pd.DataFrame({"p_churn_30d": [0.9, 0.9, 0.1, 0.9], "tier": ["high", "low", "high", "top"],
                          "note": [None, None, None, "x"]})
    assert segment_mask(frame, spec.segment).tolist() == [True, False, False, False]
    with pytest.raises(ScenarioSpecError, match=r"s.yaml: segment.where\[1\].column: no column 'tier'"), \
            naming_file(path):
        segment_mask(frame.drop(columns="tier"), spec.segment)
    with pytest.raises(ScenarioSpecError, match=r"segment.where\[0\].value"):
        segment_mask(frame.assign(p_churn_30d="high"), spec.segment)


def test_policy_ranking_orders_by_users_kept_per_user_treated():
    results = pd.DataFrame({"scenario": ["a", "b", "c", "d"], "users_kept_per_user_treated": [0.01, 0.05, 0.02, None],
                            "status": ["simulated", "simulated", "simulated", "skipped"]})
    for column in ("segment", "effect_kind", "users_affected", "horizon_days", "expected_users_kept",
                   "expected_users_kept_lower_90", "expected_users_kept_upper_90", "retention_difference",
                   "retention_difference_lower_90", "retention_difference_upper_90",
                   "probability_difference_positive"):
        results[column] = 0
    ranking = policy_ranking(results)
    assert ranking["scenario"].tolist() == ["b", "c", "a"] and ranking["rank"].tolist() == [1, 2, 3]
