"""Churn math against closed forms and known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dagster_twins.churn.covariates import fit_design, stratified_cap
from dagster_twins.churn.metrics import auc, brier, calibration_by_decile, concordance
from dagster_twins.churn.models import LN2, SurvivalModel, fit_cox, fit_weibull
from dagster_twins.churn.score import conditional_churn, median_residual_life, risk_tier


def weibull(scale_intercept: float, rho: float, coef: list[float]) -> SurvivalModel:
    k = len(coef)
    return SurvivalModel("weibull", [f"x{i}" for i in range(k)], np.array(coef), np.zeros(k), np.array([]),
                         np.array([]), intercept=scale_intercept, rho=rho)


def test_conditional_survival_against_a_hand_computed_weibull():
    model = weibull(np.log(100.0), 1.5, [0.5])
    x = np.array([[0.0], [1.0]])
    tenure = np.array([20.0, 20.0])
    probs = conditional_churn(model, x, tenure, horizons=(30,))
    for i, scale in enumerate((100.0, 100.0 * np.exp(0.5))):
        s = lambda t, sc=scale: np.exp(-((t / sc) ** 1.5))  # noqa: E731
        assert probs[i, 0] == pytest.approx(1 - s(50) / s(20))


def test_cox_conditional_survival_with_a_step_baseline():
    model = SurvivalModel("cox", ["x"], np.array([np.log(2.0)]), np.array([0.0]), np.array([10.0, 20.0, 40.0]),
                          np.array([0.1, 0.3, 0.6]))
    probs = conditional_churn(model, np.array([[0.0], [1.0]]), np.array([15.0, 15.0]), horizons=(7, 30))
    # H0(15) = 0.1, H0(22) = 0.3, H0(45) = 0.6 (held after the last event time)
    np.testing.assert_allclose(probs[0], [1 - np.exp(-0.2), 1 - np.exp(-0.5)])
    np.testing.assert_allclose(probs[1], [1 - np.exp(-0.4), 1 - np.exp(-1.0)])


def test_probabilities_in_range_and_non_decreasing_in_horizon():
    rng = np.random.default_rng(0)
    model = weibull(np.log(80.0), 0.8, [0.3, -0.7])
    probs = conditional_churn(model, rng.normal(size=(500, 2)), rng.uniform(0, 300, 500))
    assert ((probs >= 0) & (probs <= 1)).all()
    assert (np.diff(probs, axis=1) >= 0).all()


def test_median_residual_life_of_an_exponential_is_ln2_over_lambda():
    model = weibull(np.log(50.0), 1.0, [0.0])  # exponential with rate 1/50: memoryless
    r, capped = median_residual_life(model, np.zeros((3, 1)), np.array([0.0, 10.0, 100.0]))
    np.testing.assert_allclose(r, 50 * LN2)
    assert not capped.any()
    r, capped = median_residual_life(weibull(np.log(5000.0), 1.0, [0.0]), np.zeros((1, 1)), np.array([0.0]))
    assert capped[0] and r[0] == 365


def test_driver_contributions_sum_to_the_linear_predictor():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 4))
    for model in (weibull(3.0, 1.3, [0.2, -0.5, 0.1, 0.9]),
                  SurvivalModel("cox", list("abcd"), rng.normal(size=4), rng.normal(size=4), np.array([1.0]),
                                np.array([0.1]))):
        np.testing.assert_allclose(model.contributions(x).sum(axis=1), model.linear_predictor(x))


def test_constant_and_collinear_columns_are_dropped_not_fatal():
    rng = np.random.default_rng(2)
    a = rng.normal(size=200)
    frame = pd.DataFrame({"a": a, "a_twice": 2 * a + 1, "constant": 1.0, "b": rng.normal(size=200),
                          "with_gaps": np.where(rng.random(200) < 0.2, np.nan, rng.normal(size=200)),
                          "plan": rng.choice(["basic", "pro"], 200)})
    design = fit_design(frame, ["a", "a_twice", "constant", "b", "with_gaps"], ["plan"])
    assert design.dropped["constant"] == "constant"
    assert design.dropped["a_twice"].startswith("collinear with a")
    assert {"a", "b", "with_gaps", "with_gaps_missing", "plan=pro"} <= set(design.columns)
    x = design.transform(frame)
    np.testing.assert_allclose(x.mean(), 0, atol=1e-12)
    duration = pd.Series(rng.exponential(50, 200))
    fit_cox(x, duration, pd.Series(rng.integers(0, 2, 200)))  # fits without singular-matrix errors


def test_stratified_cap_keeps_the_event_share():
    frame = pd.DataFrame({"event": [1] * 300 + [0] * 700})
    capped = stratified_cap(frame, "event", 100)
    assert len(capped) == 100 and capped["event"].mean() == pytest.approx(0.3)


def test_metrics_known_answers():
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert brier(np.array([0.0, 1.0]), np.array([0, 0])) == pytest.approx(0.5)
    assert concordance(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0]), np.array([1, 1, 1])) == 1.0
    table, ece = calibration_by_decile(np.linspace(0, 1, 100), np.linspace(0, 1, 100) > 0.5)
    assert len(table) == 10 and 0 <= ece <= 1


def test_planted_hazard_ratio_is_recovered():
    rng = np.random.default_rng(3)
    n = 4000
    x = rng.normal(size=n)
    t = rng.exponential(100 * np.exp(-0.7 * x))  # hazard ratio exp(0.7) per unit of x
    censor = rng.uniform(20, 200, n)
    frame = pd.DataFrame({"x": x})
    design = fit_design(frame, ["x"], [])
    xs = design.transform(frame)
    duration, event = pd.Series(np.minimum(t, censor)), pd.Series((t <= censor).astype(int))
    cox = fit_cox(xs, duration, event, penalizer=0.0)
    per_unit = cox.coef[0] / design.sds["x"]
    se = cox.coef_se[0] / design.sds["x"]
    assert per_unit - 2 * se < 0.7 < per_unit + 2 * se
    aft = fit_weibull(xs, duration, event, penalizer=0.0)
    assert aft.coefficients_frame()["hazard_ratio"].iloc[0] > 1
    probs = conditional_churn(cox, xs.to_numpy(), np.zeros(n), horizons=(30,))[:, 0]
    assert auc(probs, (t <= 30) & (censor >= 30) | (t <= 30)) > 0.6
    assert concordance(duration.to_numpy(), cox.linear_predictor(xs.to_numpy()), event.to_numpy()) > 0.6
    assert set(risk_tier(np.array([0.01, 0.1, 0.2, 0.9]))) == {"low", "medium", "high", "very high"}
