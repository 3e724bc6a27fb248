"""As-of landmark frames: what a landmark sees, lapses and returns, and the leakage property: results as of day D
do not change when later data arrives."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from dagster_twins.churn.backtest import ForecastConfig, run_forecast
from dagster_twins.churn.landmarks import (
    History,
    LandmarkSpec,
    campaign_known_days,
    day_number,
    landmark_features,
    landmark_grid,
    landmark_outcomes,
    lapse_times,
)
from dagster_twins.churn.pipeline import Forecast, score_history
from tests.churn_histories import START, synthetic_history


def tiny_history(daily_rows, subs_rows=(), ticket_rows=()) -> History:
    daily = pd.DataFrame(daily_rows, columns=["user_id", "day", "landing_day"]).assign(
        events=1.0, initiated=1.0, purchases=0.0, spend=0.0, recs_shown=0.0, recs_clicked=0.0)
    campaigns = pd.DataFrame(columns=["user_id", "campaign_id", "campaign_group", "sent", "landing_day"])
    return History(
        daily=daily.astype({"day": float, "landing_day": float}),
        subscriptions=pd.DataFrame(list(subs_rows), columns=["user_id", "at", "landing_day", "action", "plan"]),
        tickets=pd.DataFrame(list(ticket_rows), columns=["user_id", "opened", "closed", "landing_day"]),
        campaigns=campaigns, campaign_known=campaign_known_days(campaigns),
        users=pd.DataFrame(columns=["user_id", "signup", "landing_day", "plan", "acquisition_channel"]))


def test_a_late_row_is_not_known_before_it_lands():
    history = tiny_history([("a", 0, 0), ("a", 5, 9)])
    frame = landmark_features(history, [7, 10], data_start=0).set_index("landmark_day")
    assert frame.loc[7, "interactions_total"] == 1 and frame.loc[7, "days_since_last_active"] == 7  # active on day 0
    assert frame.loc[10, "interactions_total"] == 2 and frame.loc[10, "days_since_last_active"] == 5


def test_inactivity_lapse_churn_and_return_times():
    spec = LandmarkSpec(inactivity_days=30)
    history = tiny_history([("a", 0, 0), ("a", 1, 1), ("a", 40, 40)])
    lapses = lapse_times(history.daily[["user_id", "day"]], 30, as_of=100)
    assert lapses["time"].tolist() == [32.0, 71.0]  # 30 full silent days after days 1 and 40
    frame = landmark_outcomes(landmark_features(history, [7, 35], 0, spec), history, 100, spec)
    at = frame.set_index("landmark_day")
    assert at.loc[7, "state"] == "active" and at.loc[7, "churn_days"] == 25
    assert at.loc[35, "state"] == "lapsed" and at.loc[35, "return_days"] == 6  # active on day 40, known at its end
    censored = landmark_outcomes(landmark_features(history, [7], 0, spec), history, 20, spec)
    assert np.isnan(censored["churn_days"].iloc[0]) and censored["followup_days"].iloc[0] == 13


def test_a_cancellation_is_the_churn_of_a_subscription_user():
    history = tiny_history([("s", 0, 0), ("s", 19, 19)],
                           [("s", 0.2, 0, "started", "pro"), ("s", 20.5, 20, "cancelled", "pro")])
    frame = landmark_outcomes(landmark_features(history, [14, 21], 0), history, 60).set_index("landmark_day")
    assert frame.loc[14, "state"] == "active" and frame.loc[14, "churn_days"] == 6.5
    assert frame.loc[14, "plan"] == "pro" and frame.loc[14, "has_subscription"] == 1
    assert frame.loc[21, "state"] == "lapsed"


def test_the_landmark_grid_is_on_a_fixed_calendar():
    assert landmark_grid(3.5, 30, 7) == [7, 14, 21, 28]
    assert landmark_grid(3.5, 60, 7)[:4] == [7, 14, 21, 28]  # later data adds landmarks, never moves them


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.integers(30, 100), late=st.sampled_from([0.0, 0.2]))
def test_frames_as_of_a_day_ignore_everything_after_it(seed, cut, late):
    """The leakage property on the frames: covariates at every landmark up to D and outcomes as known at D are
    identical whether the history holds data up to D or up to D + 60 (with late rows landing after D)."""
    full = synthetic_history(seed, users=40, days=cut + 60, late_share=late)
    as_of = START + cut
    known = full.known_until(as_of)
    grid = landmark_grid(START, as_of, 7)
    pd.testing.assert_frame_equal(landmark_features(full, grid, START), landmark_features(known, grid, START))
    frame = landmark_features(known, grid, START)
    pd.testing.assert_frame_equal(landmark_outcomes(frame, full, as_of), landmark_outcomes(frame, known, as_of))


def test_predictions_as_of_a_day_do_not_change_when_later_data_arrives():
    """The leakage property end to end: fit (backtests, recalibration, both questions) and scores as of D."""
    full = synthetic_history(11, users=500, days=150, late_share=0.1)
    as_of = START + 90
    config = ForecastConfig(horizons=(7, 30))
    results = []
    for history in (full, full.known_until(as_of)):
        grid = landmark_grid(START, as_of, 7)
        features = landmark_features(history, [d for d in grid if d < as_of], START, config.spec)
        run = run_forecast(features, history, as_of, config)
        scored, _ = score_history(Forecast(run.models, config, START), history, _date(as_of))
        results.append((run.metrics, scored))
    assert results[0][0]["kind"].eq("cox").any()  # a real fit, not the fallback
    pd.testing.assert_frame_equal(results[0][0], results[1][0])
    pd.testing.assert_frame_equal(results[0][1], results[1][1])


def _date(day: int):
    return (pd.Timestamp("1970-01-01") + pd.Timedelta(days=day)).date()


def test_a_day_landing_in_two_files_is_one_active_day():
    history = tiny_history([("a", 3, 3), ("a", 3, 5)])
    frame = landmark_features(history, [10], data_start=0)
    assert frame["active_days_total"].iloc[0] == 1 and frame["interactions_total"].iloc[0] == 2


def test_a_sign_up_without_activity_lapses_and_a_resubscription_is_a_return():
    spec = LandmarkSpec(inactivity_days=30)
    silent = tiny_history([("x", 0, 0)])  # one interaction on day 0, then nothing: lapses on day 31
    frame = landmark_outcomes(landmark_features(silent, [10], 0, spec), silent, 100, spec)
    assert frame["churn_days"].iloc[0] == 21
    subscriber = tiny_history([("s", 0, 0)], [("s", 0.2, 0, "started", "basic"), ("s", 20.5, 20, "cancelled", "basic"),
                                              ("s", 40.3, 40, "started", "pro")])
    frame = landmark_outcomes(landmark_features(subscriber, [21], 0, spec), subscriber, 100, spec)
    assert frame["state"].iloc[0] == "lapsed" and abs(frame["return_days"].iloc[0] - 19.3) < 1e-9


def test_the_users_row_is_not_known_before_it_lands():
    history = tiny_history([("u", 0, 0)])
    users = pd.DataFrame({"user_id": ["u"], "signup": [0.0], "landing_day": [20.0], "plan": ["pro"],
                          "acquisition_channel": ["ads"]})
    history = History(history.daily, history.subscriptions, history.tickets, history.campaigns,
                      history.campaign_known, users)
    frame = landmark_features(history, [10, 21], 0).set_index("landmark_day")
    assert frame.loc[10, "plan"] is None and frame.loc[10, "acquisition_channel"] is None
    assert frame.loc[21, "plan"] == "pro" and frame.loc[21, "acquisition_channel"] == "ads"


def test_day_number_reads_datetime_columns_dates_and_missing_values_alike():
    stamps = pd.Series([pd.Timestamp("1970-01-02"), pd.Timestamp("2026-03-31 12:00"), pd.NaT], dtype="datetime64[us]")
    expected = np.array([1.0, 20_543.5, np.nan])
    np.testing.assert_array_equal(day_number(stamps), expected)
    np.testing.assert_array_equal(day_number([date(1970, 1, 2), datetime(2026, 3, 31, 12), None]), expected)
