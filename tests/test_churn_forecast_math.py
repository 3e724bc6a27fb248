"""The landmark models' math against closed forms: probabilities from a step baseline, intervals, the
constant-rate fallback, recalibration, the vectorized cluster-robust covariance, tiers; and the demo's oracle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from scipy.stats import gamma

from dagster_twins.churn.covariates import Design
from dagster_twins.churn.forecast import CHURN, RETURN, Calibrator, QuestionModel, fit_calibrator, readable
from dagster_twins.churn.metrics import auc
from dagster_twins.churn.models import SurvivalModel, cluster_robust_cov, fit_cox
from dagster_twins.churn.pipeline import tier


def one_column_model(coef: float, cov: float = 0.0, events: int = 0) -> QuestionModel:
    model = SurvivalModel("cox", ["x"], np.array([coef]), np.array([0.0]), np.array([5.0, 10.0, 40.0]),
                          np.array([0.1, 0.3, 0.6]), coef_se=np.array([np.sqrt(cov)]), param_cov=np.array([[cov]]),
                          events=events)
    design = Design(["x"], {}, {"x": 0.0}, {"x": 0.0}, {"x": 1.0}, ["x"])
    return QuestionModel(CHURN, model, design)


def test_probability_from_the_landmark_is_one_minus_exp_of_the_baseline_times_the_hazard_ratio():
    qm = one_column_model(np.log(2.0))
    p, lo, hi = qm.raw(pd.DataFrame({"x": [0.0, 1.0]}), [7, 30, 90])
    # H0(7) = 0.1, H0(30) = 0.3, H0(90) = 0.6 (held after the last event time); x = 1 doubles the hazard
    np.testing.assert_allclose(p[0], 1 - np.exp(-np.array([0.1, 0.3, 0.6])))
    np.testing.assert_allclose(p[1], 1 - np.exp(-2 * np.array([0.1, 0.3, 0.6])))
    np.testing.assert_allclose(lo, p)  # no parameter uncertainty: the interval is the point
    np.testing.assert_allclose(hi, p)


def test_interval_is_the_delta_method_on_the_log_cumulative_hazard():
    qm = one_column_model(0.5, cov=0.04, events=100)
    p, lo, hi = qm.raw(pd.DataFrame({"x": [2.0]}), [30])
    sd = np.sqrt(4 * 0.04 + 1 / 100)  # x' cov x + the baseline level's 1 / events
    log_h = np.log(0.3) + 1.0
    assert lo[0, 0] == pytest.approx(1 - np.exp(-np.exp(log_h - 1.6448536 * sd)), rel=1e-6)
    assert hi[0, 0] == pytest.approx(1 - np.exp(-np.exp(log_h + 1.6448536 * sd)), rel=1e-6)
    assert lo[0, 0] < p[0, 0] < hi[0, 0]


def test_constant_rate_fallback_is_the_gamma_posterior_of_events_per_day():
    qm = QuestionModel(RETURN, None, None, rate_events=3.0, rate_days=1000.0)
    p, lo, hi = qm.raw(pd.DataFrame({"x": [0.0, 5.0]}), [10, 30])
    rate = 3.5 / 1000.0
    np.testing.assert_allclose(p[0], 1 - np.exp(-rate * np.array([10, 30])))
    np.testing.assert_allclose(p[0], p[1])  # nothing tells users apart
    assert lo[0, 1] == pytest.approx(1 - np.exp(-gamma.ppf(0.05, 3.5, scale=1 / 1000) * 30))
    assert hi[0, 1] == pytest.approx(1 - np.exp(-gamma.ppf(0.95, 3.5, scale=1 / 1000) * 30))
    assert qm.kind == "constant_rate" and QuestionModel(RETURN, None, None).raw(pd.DataFrame({"x": [1]}), [7])[0].size


def test_recalibration_recovers_a_known_distortion_and_keeps_the_ranking():
    rng = np.random.default_rng(4)
    true_h = rng.gamma(2.0, 0.05, 20_000)
    p_true = 1 - np.exp(-true_h)
    y = (rng.random(len(p_true)) < p_true).astype(float)
    p_raw = 1 - np.exp(-(2.0 * true_h ** 0.8))  # H' = 2 H^0.8: too high and too flat
    calibrator = fit_calibrator(p_raw, y)
    assert calibrator.slope == pytest.approx(1 / 0.8, rel=0.1)
    assert calibrator.intercept == pytest.approx(-np.log(2.0) / 0.8, abs=0.15)
    fixed = calibrator(p_raw)
    assert np.abs(fixed - p_true).mean() < 0.01 < np.abs(p_raw - p_true).mean()
    assert auc(fixed, y) == pytest.approx(auc(p_raw, y))
    assert Calibrator().identity and np.array_equal(Calibrator()(p_raw), p_raw)
    assert fit_calibrator(p_raw, np.zeros_like(y)).identity  # nothing to learn from one outcome


def test_cluster_robust_covariance_equals_lifelines_without_ties():
    rng = np.random.default_rng(5)
    n, users = 1500, rng.integers(0, 400, 1500)
    x = pd.DataFrame({"a": rng.normal(size=n) + 0.5 * rng.normal(size=400)[users], "b": rng.normal(size=n)})
    t = rng.exponential(1 / np.exp(0.5 * x["a"] - 0.3 * x["b"])) + 1e-4 * rng.random(n)
    event = (t < 2).astype(int)
    t = np.minimum(t, 2 + rng.random(n))
    ours = fit_cox(x, pd.Series(t), pd.Series(event), penalizer=0.0, cluster=users)
    theirs = CoxPHFitter(penalizer=0.0).fit(x.assign(T=t, E=event, C=users), "T", "E", cluster_col="C")
    np.testing.assert_allclose(ours.coef, theirs.params_.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(ours.coef_se, theirs.standard_errors_.to_numpy(), rtol=1e-4)
    naive = fit_cox(x, pd.Series(t), pd.Series(event), penalizer=0.0)
    assert (ours.coef_se > naive.coef_se).any()  # repeated users: the robust errors are wider
    assert cluster_robust_cov(x.to_numpy(), t, event, ours.coef, np.eye(2), users).shape == (2, 2)


def test_tiers_and_readable_drivers():
    assert list(tier(np.array([0.01, 0.1, 0.2, 0.9]))) == ["low", "medium", "high", "very high"]
    assert readable("open_tickets", True) == "an open support ticket"
    assert readable("acquisition_channel=paid_search", True) == "acquisition channel is paid search"
    assert readable("some_new_column", False) == "low some new column"


def test_the_ranking_gate_judges_only_backtests_with_enough_events_of_each_class():
    from dagster_twins.churn.backtest import MIN_GATED_USERS, MIN_RANKED_EVENTS, gate_failures

    def row(events: int) -> dict:
        # Clearly worse than recency (the whole gap interval below zero), well calibrated.
        return {"question": CHURN, "horizon_days": 14, "kind": "cox", "users_scored": 3 * MIN_GATED_USERS,
                "events": events, "auc": 0.60, "auc_recency": 0.75, "auc_gap_recency_upper_90": -0.05,
                "calibration_error": 0.01, "calibration_noise": 0.0}

    few, enough = row(MIN_RANKED_EVENTS - 1), row(MIN_RANKED_EVENTS)
    assert gate_failures(pd.DataFrame([few]), 0.05, baselines=("recency",)) == []
    assert len(gate_failures(pd.DataFrame([enough]), 0.05, baselines=("recency",))) == 1
    # Too few non-events is as uninformative as too few events.
    mostly_churned = row(3 * MIN_GATED_USERS - MIN_RANKED_EVENTS + 1)
    assert gate_failures(pd.DataFrame([mostly_churned]), 0.05, baselines=("recency",)) == []
    # Calibration is still judged on few events.
    assert len(gate_failures(pd.DataFrame([{**few, "calibration_error": 0.5}]), 0.05, baselines=("recency",))) == 1
