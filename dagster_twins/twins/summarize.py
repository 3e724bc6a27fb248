"""From decayed statistics to readable beliefs: priors, posteriors, intervals, confidence, twin roll-up."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from dagster_twins.twins.catalog import BELIEFS
from dagster_twins.twins.families import confidence, posterior
from dagster_twins.twins.priors import beta_prior, dirichlet_prior, gamma_prior
from dagster_twins.twins.state import exposure_days


def belief_grid(state: pd.DataFrame, users: pd.DataFrame, categories: dict[str, list[str]]) -> pd.DataFrame:
    """Every user x belief (x category for shares), with the user's statistics or zeros: a new user, or one
    with no evidence for a belief, gets the prior."""
    keys = [pd.DataFrame({"belief": name, "category": cats or [""]}) for name, cats in categories.items()]
    grid = users[["user_id"]].merge(pd.concat(keys, ignore_index=True), how="cross")
    out = grid.merge(state, on=["user_id", "belief", "category"], how="left")
    out[["stat_a", "stat_b", "n_evidence"]] = out[["stat_a", "stat_b", "n_evidence"]].fillna(0.0)
    return out


def summarize(state: pd.DataFrame, users: pd.DataFrame, categories: dict[str, list[str]], as_of: date,
              half_life_days: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``user_beliefs`` (a row per user, belief and category) and the priors behind them.

    ``users`` has user_id and first_day (when the user's exposure starts, for rates).
    """
    beliefs = belief_grid(state, users, categories)
    first_day = beliefs["user_id"].map(users.set_index("user_id")["first_day"])
    gamma_rows = beliefs["belief"].map(lambda b: BELIEFS[b].family == "gamma").to_numpy()
    beliefs.loc[gamma_rows, "stat_b"] = exposure_days(first_day[gamma_rows], as_of, half_life_days)
    share_rows = beliefs["belief"].map(lambda b: BELIEFS[b].family == "dirichlet").to_numpy()
    totals = beliefs[share_rows].groupby(["user_id", "belief"])["stat_a"].transform("sum")
    beliefs.loc[share_rows, "stat_b"] = totals

    prior_rows = []
    beliefs["prior_1"], beliefs["prior_2"] = np.nan, np.nan
    for name, belief in BELIEFS.items():
        rows = (beliefs["belief"] == name).to_numpy()
        part = beliefs[rows]
        if belief.family == "beta":
            est = beta_prior(part["stat_a"].to_numpy(), part["stat_b"].to_numpy())
            beliefs.loc[rows, ["prior_1", "prior_2"]] = (est.p1, est.p2)
            prior_rows.append((name, "", est.family, est.p1, est.p2, est.n_users, est.method))
        elif belief.family == "gamma":
            est = gamma_prior(part["stat_a"].to_numpy(), part["stat_b"].to_numpy())
            beliefs.loc[rows, ["prior_1", "prior_2"]] = (est.p1, est.p2)
            prior_rows.append((name, "", est.family, est.p1, est.p2, est.n_users, est.method))
        else:
            matrix = part.pivot_table(index="user_id", columns="category", values="stat_a", aggfunc="sum",
                                      fill_value=0.0)
            alpha, est = dirichlet_prior(matrix.to_numpy())
            by_category = dict(zip(matrix.columns, alpha, strict=True))
            beliefs.loc[rows, "prior_1"] = part["category"].map(by_category).to_numpy()
            beliefs.loc[rows, "prior_2"] = est.p2
            prior_rows += [(name, c, est.family, a, est.p2, est.n_users, est.method) for c, a in by_category.items()]

    for family in ("beta", "gamma", "dirichlet"):
        rows = beliefs["belief"].map(lambda b, f=family: BELIEFS[b].family == f).to_numpy()
        if not rows.any():
            continue
        part = beliefs[rows]
        zeros = np.zeros(rows.sum())
        post = posterior(family, part["stat_a"].to_numpy(), part["stat_b"].to_numpy(),
                         part["prior_1"].to_numpy(), part["prior_2"].to_numpy())
        prior = posterior(family, zeros, zeros, part["prior_1"].to_numpy(), part["prior_2"].to_numpy())
        lo, hi = post.interval()
        beliefs.loc[rows, "param_1"], beliefs.loc[rows, "param_2"] = post.p1, post.p2
        beliefs.loc[rows, "mean"], beliefs.loc[rows, "lower_90"], beliefs.loc[rows, "upper_90"] = post.mean, lo, hi
        beliefs.loc[rows, "confidence"] = confidence(post, prior)
    beliefs["family"] = beliefs["belief"].map(lambda b: BELIEFS[b].family)
    beliefs["as_of"] = pd.Timestamp(as_of)
    priors = pd.DataFrame(prior_rows, columns=["belief", "category", "family", "param_1", "param_2", "n_users",
                                               "method"])
    priors["as_of"] = pd.Timestamp(as_of)
    columns = ["user_id", "belief", "category", "family", "param_1", "param_2", "mean", "lower_90", "upper_90",
               "confidence", "stat_a", "stat_b", "n_evidence", "last_evidence_day", "prior_1", "prior_2", "as_of"]
    return beliefs[columns].rename(columns={"stat_a": "evidence_weighted", "stat_b": "exposure_weighted"}), priors


def roll_up(beliefs: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """``user_twins``: one row a user with top interests, goal, preferences, key propensities and rates,
    an overall confidence (mean over beliefs of each belief's confidence) and when evidence last arrived."""
    scalar = beliefs[beliefs["category"] == ""].pivot(index="user_id", columns="belief", values="mean")
    shares = beliefs[beliefs["category"] != ""]
    shares = shares.sort_values(["user_id", "belief", "mean"], ascending=[True, True, False])
    top = shares.groupby(["user_id", "belief"]).head(3)
    top_lists = top.groupby(["user_id", "belief"])["category"].agg(", ".join).unstack()
    first = shares.groupby(["user_id", "belief"]).head(1).pivot(index="user_id", columns="belief", values="category")
    per_belief = beliefs.groupby(["user_id", "belief"])["confidence"].mean().groupby("user_id").mean()
    last = beliefs.groupby("user_id")["last_evidence_day"].max()
    twins = pd.DataFrame({
        "user_id": scalar.index,
        "top_interests": top_lists.get("topic_interest", pd.Series(dtype=object)).reindex(scalar.index).to_numpy(),
        "top_interest": first.get("topic_interest", pd.Series(dtype=object)).reindex(scalar.index).to_numpy(),
        "primary_goal": first.get("goal", pd.Series(dtype=object)).reindex(scalar.index).to_numpy(),
        "preferred_channel": first.get("channel_preference", pd.Series(dtype=object)).reindex(scalar.index).to_numpy(),
        "preferred_format": first.get("format_preference", pd.Series(dtype=object)).reindex(scalar.index).to_numpy(),
        "rec_click_propensity": scalar["rec_click"].to_numpy(),
        "campaign_response_propensity": scalar["campaign_response"].to_numpy(),
        "interactions_per_week": 7 * scalar["activity_rate"].to_numpy(),
        "purchases_per_week": 7 * scalar["purchase_rate"].to_numpy(),
        "tickets_per_30_days": 30 * scalar["ticket_rate"].to_numpy(),
        "overall_confidence": per_belief.reindex(scalar.index).to_numpy(),
        "last_evidence_day": last.reindex(scalar.index).to_numpy(),
    })
    twins["last_updated"] = pd.Timestamp(as_of)
    return twins
