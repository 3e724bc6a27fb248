"""The view ``twins.user_beliefs`` carries stored summaries to a later day in closed form: for a user with no new
evidence it reads what summarizing their decayed state on that day gives (parameters, mean, evidence)."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from dagster_twins.twins import store
from dagster_twins.twins.state import advance, empty_state, full_recompute
from dagster_twins.twins.summarize import PriorInputs, posteriors

CATEGORIES = {"rec_click": [], "campaign_response": [], "activity_rate": [], "purchase_rate": [], "ticket_rate": [],
              "topic_interest": ["a", "b", "c"], "channel_preference": ["app", "web"], "format_preference": [],
              "goal": []}
CLOSED_FORM = ["param_1", "param_2", "mean", "evidence_weighted", "exposure_weighted", "prior_1", "prior_2",
               "n_evidence"]
START = date(2026, 1, 1)


def _evidence(rng: np.random.Generator, users: list[str], days: int) -> pd.DataFrame:
    rows = []
    for u in users:
        for d in rng.choice(days, size=rng.integers(1, 6), replace=False):
            day = pd.Timestamp(START + timedelta(days=int(d)))
            trials = int(rng.integers(1, 5))
            rows += [(u, "rec_click", "", float(rng.integers(0, trials + 1)), float(trials), day),
                     (u, "activity_rate", "", float(rng.integers(1, 9)), 0.0, day),
                     (u, "ticket_rate", "", float(rng.integers(0, 2)), 0.0, day),
                     (u, "topic_interest", str(rng.choice(["a", "b", "c"])), float(rng.integers(1, 4)), 0.0, day),
                     (u, "channel_preference", str(rng.choice(["app", "web"])), 1.0, 0.0, day)]
    return pd.DataFrame(rows, columns=["user_id", "belief", "category", "stat_a", "stat_b", "day"])


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), history=st.integers(5, 40), quiet=st.integers(1, 30),
       half_life=st.floats(5.0, 120.0))
def test_view_of_a_later_day_equals_summarizing_the_decayed_state(seed, history, quiet, half_life):
    rng = np.random.default_rng(seed)
    ids = [f"u{i:03d}" for i in range(30)]
    users = pd.DataFrame({"user_id": ids, "first_day": pd.to_datetime(
        [START + timedelta(days=int(d)) for d in rng.integers(0, history, len(ids))])})
    evidence = _evidence(rng, ids, history)
    evidence = evidence[evidence["day"] >= users.set_index("user_id").loc[evidence["user_id"], "first_day"].to_numpy()]
    summarized_on = START + timedelta(days=history)
    later = summarized_on + timedelta(days=quiet)
    state = full_recompute(evidence, summarized_on, half_life)
    # The priors of the later day (estimated from every user's decayed state, as a run does), used by both sides.
    decayed = advance(state, summarized_on, empty_state(), later, half_life)
    inputs = PriorInputs(users, CATEGORIES, later, half_life)
    inputs.add(decayed)
    priors = inputs.estimate()

    con = duckdb.connect()
    con.execute(f"create schema {store.SCHEMA}")
    stored = posteriors(state, users, CATEGORIES, priors, summarized_on, half_life)
    con.register("stored", stored)
    con.execute(f"create table {store.SCHEMA}.{store.SUMMARIES} as select * from stored")
    con.register("priors", priors.frame)
    con.execute(f"create table {store.SCHEMA}.belief_priors as select * from priors")
    con.execute(store.beliefs_view(later, half_life))
    view = con.sql(f"select * from {store.SCHEMA}.user_beliefs order by user_id, belief, category").df()
    expected = posteriors(decayed, users, CATEGORIES, priors, later, half_life).sort_values(
        ["user_id", "belief", "category"]).reset_index(drop=True)

    assert len(view) == len(expected) == len(stored)
    assert (view[["user_id", "belief", "category", "family"]].to_numpy()
            == expected[["user_id", "belief", "category", "family"]].to_numpy()).all()
    for column in CLOSED_FORM:
        np.testing.assert_allclose(view[column], expected[column], rtol=1e-9, atol=1e-12, err_msg=column)
    assert (pd.to_datetime(view["as_of"]) == pd.Timestamp(later)).all()
    assert (pd.to_datetime(view["summarized_on"]) == pd.Timestamp(summarized_on)).all()
    # The interval and confidence are those of the day the row was summarized.
    np.testing.assert_array_equal(view["lower_90"], stored.sort_values(["user_id", "belief", "category"])["lower_90"])
