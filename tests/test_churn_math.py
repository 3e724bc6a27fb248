"""Churn math against closed forms and known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dagster_twins.churn.covariates import fit_design, stratified_cap
from dagster_twins.churn.metrics import auc, brier, calibration_by_decile, concordance
from dagster_twins.churn.models import SurvivalModel, fit_cox


def test_driver_contributions_sum_to_the_linear_predictor():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 4))
    model = SurvivalModel("cox", list("abcd"), rng.normal(size=4), rng.normal(size=4), np.array([1.0]),
                          np.array([0.1]))
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
    assert concordance(duration.to_numpy(), cox.linear_predictor(xs.to_numpy()), event.to_numpy()) > 0.6


def test_top_drivers_name_the_largest_terms_as_the_row_loop_did():
    """The vectorized drivers against the plain per-row reading of the definition."""
    from dagster_twins.churn.forecast import CHURN, QuestionModel, readable, top_drivers

    rng = np.random.default_rng(4)
    columns = ["events_per_day", "days_since_last_active", "plan=pro", "open_tickets"]
    model = SurvivalModel(kind="cox", columns=columns, coef=np.array([-0.8, 0.5, 0.0, 0.3]), center=np.zeros(4),
                          baseline_times=np.arange(1.0, 10.0), baseline_cumhaz=0.01 * np.arange(1.0, 10.0))
    x = rng.normal(size=(500, 4))
    x[:50, 3] = 0.0  # a term of exactly zero is left out
    drivers = top_drivers(QuestionModel(CHURN, model, None), x)
    contrib = model.contributions(x)
    for i in range(len(x)):
        order = np.argsort(-np.abs(contrib[i]))[:3]
        expected = "; ".join(f"{readable(columns[j], x[i, j] > 0)} "
                             f"({'raises churn risk' if contrib[i, j] > 0 else 'lowers churn risk'})"
                             for j in order if abs(contrib[i, j]) > 1e-9)
        assert drivers[i] == expected
    assert top_drivers(QuestionModel(CHURN, model, None), x[:0]) == []
