"""How well the twins recover the demo's planted truth (for tests and docs/model-quality.md only)."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd


def recovery_metrics(con: duckdb.DuckDBPyConnection, truth: pd.DataFrame, min_evidence: float = 20.0) -> dict:
    """Correlations of estimated vs planted propensity and activity rate (users with at least ``min_evidence``
    raw observations), top-topic agreement, and empirical coverage of the 90% intervals."""
    beliefs = con.execute(
        "select user_id, belief, category, mean, lower_90, upper_90, n_evidence from twins.user_beliefs "
        "where belief in ('rec_click', 'activity_rate') or belief = 'topic_interest'"
    ).df()
    twins = con.execute("select user_id, top_interest from twins.user_twins").df()
    scalar = beliefs[beliefs["category"] == ""].pivot(index="user_id", columns="belief",
                                                       values=["mean", "lower_90", "upper_90", "n_evidence"])
    scalar.columns = [f"{b}_{v}" for v, b in scalar.columns]
    joined = scalar.reset_index().merge(truth, on="user_id").merge(twins, on="user_id")
    recs = joined[joined["rec_click_n_evidence"] >= min_evidence]
    active = joined[joined["activity_rate_n_evidence"] >= min_evidence]
    truth_p = recs["click_propensity"]
    covered = (recs["rec_click_lower_90"] <= truth_p) & (truth_p <= recs["rec_click_upper_90"])
    return {
        "users": int(len(joined)),
        "users_with_enough_rec_evidence": int(len(recs)),
        "rec_click_correlation": float(np.corrcoef(recs["rec_click_mean"], recs["click_propensity"])[0, 1]),
        "rec_click_interval_coverage": float(covered.mean()),
        "users_with_enough_activity_evidence": int(len(active)),
        "activity_rate_correlation": float(np.corrcoef(np.log(active["activity_rate_mean"]),
                                                       np.log(active["activity_rate"]))[0, 1]),
        "top_topic_match": float((active["top_interest"] == active["top_topic"]).mean()),
    }
