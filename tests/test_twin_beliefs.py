"""Twin belief math against closed forms, empirical Bayes recovery, and incremental = full recompute."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from dagster_twins.twins.families import confidence, decay_factor, posterior
from dagster_twins.twins.priors import beta_prior, dirichlet_prior, gamma_prior
from dagster_twins.twins.state import advance, empty_state, exposure_days, full_recompute

START = date(2026, 1, 1)


def test_beta_posterior_of_a_known_sequence():
    clicks = np.array([1, 0, 0, 1, 1, 0, 0, 0, 1, 0])
    post = posterior("beta", np.array([clicks.sum()]), np.array([len(clicks)]), np.array(2.0), np.array(8.0))
    assert (post.p1[0], post.p2[0]) == (6.0, 14.0)  # Beta(2 + 4, 8 + 6)
    assert post.mean[0] == pytest.approx(6 / 20)
    lo, hi = post.interval()
    assert lo[0] == pytest.approx(stats.beta.ppf(0.05, 6, 14)) and hi[0] == pytest.approx(stats.beta.ppf(0.95, 6, 14))


def test_gamma_poisson_posterior():
    post = posterior("gamma", np.array([12.0]), np.array([30.0]), np.array(2.0), np.array(4.0))
    assert (post.p1[0], post.p2[0]) == (14.0, 34.0)
    assert post.mean[0] == pytest.approx(14 / 34)


def test_dirichlet_marginals():
    prior_alpha = np.array([1.0, 2.0, 3.0])
    counts = np.array([5.0, 0.0, 1.0])
    post = posterior("dirichlet", counts, np.full(3, counts.sum()), prior_alpha, np.full(3, prior_alpha.sum()))
    alpha = prior_alpha + counts
    np.testing.assert_allclose(post.mean, alpha / alpha.sum())
    assert post.mean.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(post.p2, alpha.sum() - alpha)


def test_decay_of_a_known_statistic():
    assert decay_factor(14, 7) == pytest.approx(0.25)
    state = full_recompute(pd.DataFrame({"user_id": ["u"], "belief": ["b"], "category": [""], "stat_a": [8.0],
                                         "stat_b": [16.0], "day": [START]}), START + timedelta(days=14), 7)
    assert state.loc[0, "stat_a"] == pytest.approx(2.0) and state.loc[0, "stat_b"] == pytest.approx(4.0)
    assert state.loc[0, "n_evidence"] == 16.0  # raw evidence is not decayed


def test_exposure_closed_form_equals_daily_sum():
    first = pd.Series(pd.to_datetime([START, START + timedelta(days=5)]))
    as_of = START + timedelta(days=20)
    expected = [sum(0.5 ** ((20 - d) / 10) for d in range(s, 21)) for s in (0, 5)]
    np.testing.assert_allclose(exposure_days(first, as_of, 10), expected)


def test_confidence_zero_at_prior_and_rising_with_evidence():
    prior = posterior("beta", np.zeros(1), np.zeros(1), np.array(2.0), np.array(8.0))
    values = [confidence(posterior("beta", np.array([n * 0.2]), np.array([float(n)]), np.array(2.0),
                                   np.array(8.0)), prior)[0] for n in (0, 5, 50, 500)]
    assert values[0] == pytest.approx(0.0)
    assert all(0 <= v <= 1 for v in values) and values == sorted(values) and values[-1] > 0.8


def test_method_of_moments_recovers_beta_and_gamma_populations():
    rng = np.random.default_rng(0)
    p = rng.beta(2, 8, 20_000)
    trials = rng.integers(20, 80, 20_000)
    prior = beta_prior(rng.binomial(trials, p), trials, max_strength=1e6)
    assert prior.p1 / (prior.p1 + prior.p2) == pytest.approx(0.2, rel=0.03)
    assert prior.p1 + prior.p2 == pytest.approx(10, rel=0.15)
    capped = beta_prior(rng.binomial(trials, p), trials, max_strength=5)
    assert capped.p1 + capped.p2 == pytest.approx(5) and "capped" in capped.method
    lam = rng.gamma(2.0, 0.25, 20_000)
    exposure = rng.integers(60, 180, 20_000).astype(float)
    g = gamma_prior(rng.poisson(lam * exposure), exposure, max_strength_days=1e6)
    assert g.p1 / g.p2 == pytest.approx(0.5, rel=0.03)
    assert g.p1 == pytest.approx(2.0, rel=0.15)


def test_method_of_moments_recovers_dirichlet_mean():
    rng = np.random.default_rng(1)
    base = np.array([0.5, 0.3, 0.2])
    shares = rng.dirichlet(base * 4, 20_000)
    counts = np.array([rng.multinomial(60, s) for s in shares])
    alpha, estimate = dirichlet_prior(counts, max_strength=1e6)
    np.testing.assert_allclose(alpha / alpha.sum(), base, rtol=0.03)
    assert estimate.p2 == pytest.approx(4, rel=0.2)


def test_users_without_evidence_keep_their_state_decayed_and_new_users_appear():
    first = full_recompute(pd.DataFrame({"user_id": ["old"], "belief": ["b"], "category": [""], "stat_a": [4.0],
                                         "stat_b": [8.0], "day": [START]}), START, 7)
    later = advance(first, START, pd.DataFrame({"user_id": ["new"], "belief": ["b"], "category": [""],
                                                "stat_a": [1.0], "stat_b": [1.0], "day": [START + timedelta(days=7)]}),
                    START + timedelta(days=7), 7)
    by_user = later.set_index("user_id")
    assert by_user.loc["old", "stat_a"] == pytest.approx(2.0)
    assert by_user.loc["old", "last_evidence_day"] == pd.Timestamp(START)
    assert by_user.loc["new", "stat_a"] == pytest.approx(1.0)


evidence_rows = st.lists(
    st.tuples(st.sampled_from(["u1", "u2", "u3"]), st.sampled_from(["clicks", "topic"]),
              st.sampled_from(["", "a", "b"]), st.floats(0, 50), st.floats(0, 50), st.integers(0, 59)),
    min_size=1, max_size=60,
)


@settings(max_examples=50, deadline=None)
@given(rows=evidence_rows, cuts=st.lists(st.integers(0, 59), max_size=6), half_life=st.floats(1.0, 90.0))
def test_chained_daily_updates_equal_a_full_recompute(rows, cuts, half_life):
    evidence = pd.DataFrame(rows, columns=["user_id", "belief", "category", "stat_a", "stat_b", "day"])
    evidence["day"] = [START + timedelta(days=int(d)) for d in evidence["day"]]
    as_of = START + timedelta(days=59)
    full = full_recompute(evidence, as_of, half_life)
    state, state_as_of = empty_state(), None
    for cut in [*sorted(set(cuts)), 59]:
        day = START + timedelta(days=cut)
        if state_as_of is not None and day <= state_as_of:
            continue
        state = advance(state, state_as_of, evidence, day, half_life)
        state_as_of = day
    merged = full.merge(state, on=["user_id", "belief", "category"], suffixes=("_full", "_inc"), how="outer")
    assert len(merged) == len(full) == len(state)
    for col in ("stat_a", "stat_b", "n_evidence"):
        np.testing.assert_allclose(merged[f"{col}_inc"], merged[f"{col}_full"], rtol=1e-9, atol=1e-12)
    assert (merged["last_evidence_day_inc"].fillna(pd.Timestamp(0)) ==
            merged["last_evidence_day_full"].fillna(pd.Timestamp(0))).all()


def test_a_share_over_a_single_category_is_left_out():
    """One channel in the whole data set: the channel share is 1 for everyone and says nothing, so there is no
    channel belief (its Dirichlet would be degenerate); the other beliefs are unaffected."""
    from dagster_twins.twins.summarize import summarize

    as_of = date(2026, 5, 10)
    users = pd.DataFrame({"user_id": ["a", "b"], "first_day": pd.to_datetime(["2026-05-01", "2026-05-01"])})
    state = pd.DataFrame({
        "user_id": ["a", "b", "a", "b", "a"],
        "belief": ["channel_preference", "channel_preference", "topic_interest", "topic_interest", "activity_rate"],
        "category": ["web", "web", "jazz", "rock", ""], "stat_a": [3.0, 2.0, 3.0, 2.0, 3.0],
        "stat_b": [0.0] * 5, "n_evidence": [3.0, 2.0, 3.0, 2.0, 3.0],
        "last_evidence_day": pd.to_datetime(["2026-05-09"] * 5)})
    categories = {"channel_preference": ["web"], "topic_interest": ["jazz", "rock"]}
    beliefs, _ = summarize(state, users, categories, as_of, 60.0)
    assert "channel_preference" not in set(beliefs["belief"])
    assert set(beliefs["belief"]) == {"topic_interest", "activity_rate"}
    assert np.isfinite(beliefs[["param_1", "param_2", "mean"]].to_numpy()).all()
