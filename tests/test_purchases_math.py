"""The purchase model's maths against lifetimes 0.11.3 (the reference implementation) on its own CDNOW sample,
against closed forms and quadrature, and against a simulation of the model; the statistics' fold as a law."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy import integrate

from dagster_twins.twins import purchases as P
from dagster_twins.twins.purchase_state import empty_state, fit_population, fold, statistics

lifetimes = pytest.importorskip("lifetimes")


@pytest.fixture(scope="module")
def cdnow_sample() -> pd.DataFrame:
    """lifetimes' CDNOW summary: 2,357 customers' frequency, recency, T (in weeks) and mean repeat spend."""
    from lifetimes.datasets import load_cdnow_summary_data_with_monetary_value

    return load_cdnow_summary_data_with_monetary_value()


@pytest.fixture(scope="module")
def reference(cdnow_sample):
    return lifetimes.ParetoNBDFitter().fit(cdnow_sample["frequency"], cdnow_sample["recency"], cdnow_sample["T"])


def _xtT(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return frame["frequency"].to_numpy(float), frame["recency"].to_numpy(float), frame["T"].to_numpy(float)


def _as_model(fitter) -> P.ParetoNBD:
    p = fitter.params_
    return P.ParetoNBD(p["r"], p["alpha"], p["s"], p["beta"])


def test_the_likelihood_and_the_fit_match_lifetimes(cdnow_sample, reference):
    x, t_x, T = _xtT(cdnow_sample)
    model = _as_model(reference)
    # lifetimes' own per-customer log-likelihood at its optimum.
    theirs = lifetimes.ParetoNBDFitter._conditional_log_likelihood(
        [model.r, model.alpha, model.s, model.beta], x, t_x, T)
    np.testing.assert_allclose(P.log_likelihood(model, x, t_x, T), theirs, rtol=1e-9)
    fit = P.fit_pareto_nbd(x, t_x, T)
    assert P.log_likelihood(fit, x, t_x, T).sum() >= P.log_likelihood(model, x, t_x, T).sum() - 1e-3
    for ours_p, theirs_p in zip(fit.as_dict().values(), model.as_dict().values(), strict=True):
        assert ours_p == pytest.approx(theirs_p, rel=2e-3)


def test_conditional_expectations_match_lifetimes(cdnow_sample, reference):
    x, t_x, T = _xtT(cdnow_sample)
    model = _as_model(reference)
    np.testing.assert_allclose(P.p_alive(model, x, t_x, T), reference.conditional_probability_alive(x, t_x, T),
                               rtol=1e-9, atol=1e-12)
    for t in (4.0, 39.0):
        np.testing.assert_allclose(P.expected_purchases(model, x, t_x, T, t),
                                   reference.conditional_expected_number_of_purchases_up_to_time(t, x, t_x, T),
                                   rtol=1e-9, atol=1e-12)
    rows = slice(0, 40)  # lifetimes integrates numerically per customer: slow
    theirs = reference.conditional_probability_of_n_purchases_up_to_time(0, 39.0, x[rows], t_x[rows], T[rows])
    np.testing.assert_allclose(1 - P.p_purchase_within(model, x[rows], t_x[rows], T[rows], 39.0), theirs,
                               rtol=1e-6, atol=1e-9)


def test_closed_forms():
    model = P.ParetoNBD(0.6, 80.0, 0.5, 60.0)
    # Born today: nothing known, alive for sure; the expected purchases are the prior's, E[lambda] E[days alive].
    assert P.p_alive(model, [0.0], [0.0], [0.0])[0] == pytest.approx(1.0)
    t = 90.0
    prior = 0.6 / 80.0 * 60.0 / (0.5 - 1) * (1 - (60.0 / (60.0 + t)) ** (0.5 - 1))
    assert P.expected_purchases(model, [0.0], [0.0], [0.0], t)[0] == pytest.approx(prior, rel=1e-12)
    # The s -> 1 limit of E[days alive within t] is B log(1 + t / B).
    near_one = P.ParetoNBD(0.6, 80.0, 1.0 + 1e-7, 60.0)
    limit = P.ParetoNBD(0.6, 80.0, 1.0, 60.0)
    assert (P.expected_purchases(limit, [2.0], [10.0], [50.0], t)[0]
            == pytest.approx(P.expected_purchases(near_one, [2.0], [10.0], [50.0], t)[0], rel=1e-5))
    # Undiscounted, the discounted expectation is the plain one; discounting lowers it.
    args = ([0.0, 3.0, 10.0], [0.0, 20.0, 100.0], [5.0, 60.0, 120.0])
    plain = P.expected_purchases(model, *args, t)
    np.testing.assert_allclose(P.expected_discounted_purchases(model, *args, t, 0.0), plain, rtol=1e-12)
    assert (P.expected_discounted_purchases(model, *args, t, 0.001) < plain).all()
    # The median wait, if alive, solves (A / (A + w))^k = 1/2.
    k, A = 0.6 + 3.0, 80.0 + 60.0
    w = P.median_days_to_next_purchase(model, [3.0], [60.0])[0]
    assert (A / (A + w)) ** k == pytest.approx(0.5)


def test_no_purchase_probability_against_adaptive_quadrature():
    model = P.ParetoNBD(0.6, 81.0, 0.52, 62.0)
    x, T, t = np.array([0.0, 1.0, 5.0, 30.0]), np.array([1.0, 50.0, 300.0, 1000.0]), 365.0
    got = P.p_no_purchase_if_alive(model, x, T, t)
    for i in range(len(x)):
        k, A, B = model.r + x[i], model.alpha + T[i], model.beta + T[i]
        dies, _ = integrate.quad(lambda u, k=k, A=A, B=B: model.s / B * (B / (B + u)) ** (model.s + 1)
                                 * (A / (A + u)) ** k, 0, t, epsabs=1e-13)
        assert got[i] == pytest.approx((A / (A + t)) ** k * (B / (B + t)) ** model.s + dies, abs=1e-9)


def test_gamma_gamma_matches_lifetimes(cdnow_sample):
    repeat = cdnow_sample[cdnow_sample["frequency"] > 0]
    n, mean = repeat["frequency"], repeat["monetary_value"]
    theirs = lifetimes.GammaGammaFitter().fit(n, mean)
    ours = P.fit_gamma_gamma(n, mean)
    for name, value in (("p", ours.p), ("q", ours.q), ("v", ours.gamma)):
        assert value == pytest.approx(theirs.params_[name], rel=1e-3)
    np.testing.assert_allclose(P.expected_spend(ours, n, mean), theirs.conditional_expected_average_profit(n, mean),
                               rtol=1e-3)
    # No valued purchase: the population's mean; many: close to the customer's own.
    assert P.expected_spend(ours, [0.0], [np.nan])[0] == pytest.approx(ours.mean_spend)
    assert P.expected_spend(ours, [1000.0], [50.0])[0] == pytest.approx(50.0, rel=0.02)


def test_closed_form_value_and_intervals_agree_with_simulating_the_model():
    model, spend = P.ParetoNBD(0.6, 80.0, 0.5, 60.0), P.GammaGamma(6.0, 4.0, 15.0)
    rng = np.random.default_rng(3)
    n = 400
    T = rng.integers(1, 300, n).astype(float)
    x = rng.poisson(3, n).astype(float)
    t_x = np.where(x > 0, np.floor(rng.random(n) * T), 0.0)
    spend_n, spend_mean = x + 1, rng.gamma(5, 6, n)
    daily = 0.0003
    sim = P.simulate(model, spend, x, t_x, T, spend_n, spend_mean, (90,), daily, draws=4000, seed=1, chunk=100)
    expected_value = P.expected_discounted_purchases(model, x, t_x, T, 90, daily) * P.expected_spend(
        spend, spend_n, spend_mean)
    # The simulated mean value converges on the closed form (Monte Carlo error ~ 1/sqrt(4000) of the spread).
    assert np.corrcoef(sim.value_mean[90], expected_value)[0, 1] > 0.99
    assert sim.value_mean[90].sum() == pytest.approx(expected_value.sum(), rel=0.03)
    # The closed-form purchase interval is the simulated one, within a purchase for nearly everyone.
    low, high = P.purchase_interval(model, x, t_x, T, 90)
    sim_low, sim_high = sim.purchases[90]
    assert np.mean(np.abs(low - sim_low) <= 1) > 0.95
    assert np.mean(np.abs(high - sim_high) <= 1) > 0.9


def _transactions(seed: int, users: int = 60, days: int = 80) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    start = date(2026, 1, 1)
    for u in range(users):
        birth = int(rng.integers(0, days // 2))
        rows.append((f"u{u}", start + timedelta(days=birth), 1, float(rng.gamma(2, 10))))
        for d in range(birth, days):
            if rng.random() < 0.08:
                rows.append((f"u{u}", start + timedelta(days=d), int(rng.integers(1, 3)), float(rng.gamma(2, 10))))
    frame = pd.DataFrame(rows, columns=["user_id", "day", "purchases", "value"])
    frame["day"] = pd.to_datetime(frame["day"])
    return frame


def _evidence(transactions: pd.DataFrame) -> pd.DataFrame:
    return transactions.assign(spend_n=transactions["purchases"], spend_sum=transactions["value"] * transactions[
        "purchases"]).groupby(["user_id", "day"], as_index=False)[["purchases", "spend_n", "spend_sum"]].sum()


def test_statistics_fold_a_day_at_a_time_and_match_lifetimes_summary():
    transactions = _transactions(5)
    users = transactions.groupby("user_id", as_index=False)["day"].min().rename(columns={"day": "first_day"})
    as_of = date(2026, 3, 21)
    evidence = _evidence(transactions)
    whole = fold(empty_state(), evidence, users)
    state = empty_state()
    for day in pd.date_range("2026-01-01", as_of):
        state = fold(state, evidence[evidence["day"] == day], users)
    pd.testing.assert_frame_equal(state.sort_values("user_id").reset_index(drop=True),
                                  whole.sort_values("user_id").reset_index(drop=True))
    ours = statistics(whole, as_of).set_index("user_id").sort_index()
    from lifetimes.utils import summary_data_from_transaction_data

    theirs = summary_data_from_transaction_data(transactions, "user_id", "day", observation_period_end=str(as_of),
                                                freq="D").sort_index()
    np.testing.assert_array_equal(ours["x"], theirs["frequency"])
    np.testing.assert_array_equal(ours["t_x"], theirs["recency"])
    np.testing.assert_array_equal(ours["T"], theirs["T"])
    spend = (transactions["value"] * transactions["purchases"]).groupby(transactions["user_id"]).sum()
    np.testing.assert_allclose(ours["spend_mean"] * ours["spend_n"], spend.sort_index())


def test_a_population_fit_needs_repeat_purchases():
    stats = pd.DataFrame({"user_id": ["a", "b"], "x": [0.0, 0.0], "t_x": [0.0, 0.0], "T": [10.0, 5.0],
                          "spend_n": [1.0, 0.0], "spend_mean": [5.0, np.nan]})
    with pytest.raises(ValueError, match="needs purchases to learn from"):
        fit_population(stats, 100)


def test_scores_are_valid_for_every_kind_of_user():
    model, spend = P.ParetoNBD(0.6, 80.0, 0.5, 60.0), P.GammaGamma(6.0, 4.0, 15.0)
    stats = pd.DataFrame({"x": [0.0, 0.0, 5.0, 40.0, 3.0], "t_x": [0.0, 0.0, 100.0, 299.0, 10.0],
                          "T": [0.0, 200.0, 120.0, 300.0, 300.0], "spend_n": [0.0, 1.0, 6.0, 41.0, 4.0],
                          "spend_mean": [np.nan, 20.0, 35.0, 10.0, 500.0]})
    scored = P.score(P.Population(model, spend), stats, (30, 90, 365), 0.0003)
    assert scored.notna().all().all() and (scored >= 0).all().all()
    assert scored["p_alive"].between(0, 1).all()
    for h in (30, 90, 365):
        assert (scored[f"expected_purchases_{h}d_lower_90"] <= scored[f"expected_purchases_{h}d_upper_90"]).all()
        assert scored[f"p_purchase_{h}d"].between(0, 1).all()
    # More horizon, more purchases; the frequent buyer seen lately expects the most.
    assert (scored["expected_purchases_365d"] >= scored["expected_purchases_90d"]).all()
    assert scored["expected_purchases_90d"].idxmax() == 3


def test_the_discounted_expectation_holds_when_nobody_is_seen_to_leave():
    # A short history can put s at its lower bound (no dropout seen): nothing may turn into NaN.
    model = P.ParetoNBD(0.8, 53.0, 6e-6, 124.0)
    x, t_x, T = np.array([0.0, 9.0]), np.array([0.0, 40.0]), np.array([44.0, 44.0])
    got = P.expected_discounted_purchases(model, x, t_x, T, 365, 0.0003)
    assert np.isfinite(got).all()
    k, A = model.r + x, model.alpha + T  # s -> 0: alive throughout, E[lambda] x the discounted days
    np.testing.assert_allclose(got, P.p_alive(model, x, t_x, T) * k / A * -np.expm1(-0.0003 * 365) / 0.0003,
                               rtol=1e-4)
