"""The functions the twins' Spark tasks call, without Spark: a bucket's frame as the task receives it (its known
users left-joined with their state), summarized bucket by bucket under the population's priors, equals the
summary of the whole population at once (``summarize.summarize``, ``roll_up``). The Spark run of the same is in
tests/test_spark_parity.py (marked spark)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from dagster_twins.twins.spark_fold import fold_bucket, roll_up_bucket, summarize_bucket_rows
from dagster_twins.twins.state import STATE_COLUMNS
from dagster_twins.twins.summarize import PriorInputs, roll_up, summarize

END = date(2026, 3, 1)
AS_OF = END - timedelta(days=1)
TOPICS = ["news", "sport", "tech"]
CATEGORIES = {"topic_interest": TOPICS, "channel_preference": [], "format_preference": [], "goal": [],
              "rec_click": [], "campaign_response": [], "activity_rate": [], "purchase_rate": [], "ticket_rate": []}


def evidence(users: int, seed: int = 3) -> pd.DataFrame:
    """Daily evidence of three beliefs for ``users`` users over 40 days (some users have none; one row dated
    after the last landed day, which the fold clips)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        if u % 7 == 0:
            continue  # known, but no evidence: the priors' rows only
        for d in rng.choice(40, size=rng.integers(1, 12), replace=False):
            day = END - timedelta(days=int(d) + 1)
            shown = int(rng.integers(1, 6))
            rows += [(f"u{u:03d}", "rec_click", "", float(rng.binomial(shown, 0.2 + u % 5 / 10)), float(shown), day),
                     (f"u{u:03d}", "activity_rate", "", float(rng.poisson(2 + u % 3)), 0.0, day),
                     (f"u{u:03d}", "topic_interest", TOPICS[int(rng.integers(3))], 1.0, 0.0, day)]
    rows.append(("u001", "activity_rate", "", 1.0, 0.0, END + timedelta(days=2)))
    return pd.DataFrame(rows, columns=["user_id", "belief", "category", "stat_a", "stat_b", "day"])


def test_the_summary_bucket_by_bucket_equals_the_whole_populations():
    users = pd.DataFrame({"user_id": [f"u{u:03d}" for u in range(60)],
                          "first_day": pd.to_datetime(END - timedelta(days=50)) + pd.to_timedelta(
                              np.arange(60) % 20, unit="D")})
    state = fold_bucket(evidence(60), END, 30.0)
    assert state["last_evidence_day"].max() == pd.Timestamp(AS_OF)  # the late row counts from the last landed day
    beliefs, _ = summarize(state, users, CATEGORIES, AS_OF, 30.0)
    twins = roll_up(beliefs, AS_OF)

    inputs = PriorInputs(users, CATEGORIES, AS_OF, 30.0)
    bucket_of = users["user_id"].str[-1].astype(int) % 3
    for b in range(3):  # the priors from the state read a bucket at a time, as summarize_on_spark reads it
        inputs.add(state[state["user_id"].isin(users["user_id"][bucket_of == b])])
    priors = inputs.estimate()
    # What a task receives: the bucket's users left-joined with their state, in no particular order.
    joined = users.merge(state, on="user_id", how="left").sample(frac=1.0, random_state=1)
    joined = joined[["user_id", "first_day", *STATE_COLUMNS[1:]]]
    assert joined["belief"].isna().sum() == len(range(0, 60, 7))  # users without evidence: one row of nulls
    bucket = joined["user_id"].str[-1].astype(int) % 3
    parts = [summarize_bucket_rows(joined[bucket == b], CATEGORIES, priors, AS_OF, 30.0) for b in range(3)]
    by_bucket = pd.concat(parts, ignore_index=True)
    twins_by_bucket = pd.concat([roll_up_bucket(p, AS_OF) for p in parts], ignore_index=True)

    def ordered(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
        return frame.sort_values(key, ignore_index=True)

    pd.testing.assert_frame_equal(ordered(by_bucket, ["user_id", "belief", "category"]),
                                  ordered(beliefs, ["user_id", "belief", "category"]), check_exact=False, rtol=1e-12)
    pd.testing.assert_frame_equal(ordered(twins_by_bucket, ["user_id"]), ordered(twins, ["user_id"]),
                                  check_exact=False, rtol=1e-12)
    assert twins["user_id"].nunique() == 60  # every known user has a twin, with evidence or not
    assert set(beliefs.loc[beliefs["user_id"] == "u000", "belief"]) == {"activity_rate"}  # a rate needs only time
