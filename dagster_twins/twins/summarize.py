"""From decayed statistics to readable beliefs: priors, posteriors, intervals, confidence, twin roll-up."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from dagster_twins.twins.catalog import BELIEFS
from dagster_twins.twins.families import confidence, posterior
from dagster_twins.twins.priors import beta_prior, dirichlet_prior, gamma_prior
from dagster_twins.twins.state import exposure_day_count, exposure_days


def _matrices(part: pd.DataFrame, users: pd.Index, cats: list[str]) -> dict[str, np.ndarray]:
    """One belief's state as (users x categories) matrices; zeros (and no last day) where there is none, so a
    new user, or one with no evidence for the belief, gets the prior."""
    shape = (len(users), len(cats))
    out = {name: np.zeros(shape) for name in ("stat_a", "stat_b", "n_evidence")}
    out["last_evidence_day"] = np.full(shape, np.datetime64("NaT"), dtype="datetime64[ns]")
    _scatter(part, users, cats, out)
    return out


def _scatter(part: pd.DataFrame, users: pd.Index, cats: list[str], into: dict[str, np.ndarray]) -> None:
    """Write ``part``'s rows into the (users x categories) matrices ``into`` (rows of other users are skipped)."""
    rows = users.get_indexer(part["user_id"])
    cols = pd.Index(cats).get_indexer(part["category"])
    keep = (rows >= 0) & (cols >= 0)
    for name, matrix in into.items():
        matrix[rows[keep], cols[keep]] = part[name].to_numpy()[keep]


def _state_by_belief(state: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return dict(tuple(state.groupby("belief", sort=False))) if len(state) else {}


def summarized_beliefs(categories: dict[str, list[str]]) -> list[tuple[str, list[str]]]:
    """The beliefs to summarize with their categories ("" for a scalar belief). A share needs two categories at
    least: over none it says nothing, and over one (a data set with a single channel) it is 1 for everyone, a
    degenerate Dirichlet whose prior cannot be estimated."""
    return [(name, categories.get(name) or [""]) for name, belief in BELIEFS.items()
            if belief.family != "dirichlet" or len(categories.get(name) or []) >= 2]


@dataclass(frozen=True)
class Priors:
    """Each belief's prior parameters per category, and the ``belief_priors`` rows that explain them."""

    params: dict[str, tuple[np.ndarray, np.ndarray]]  # belief -> (prior_1, prior_2), one value per category
    frame: pd.DataFrame


class PriorInputs:
    """The per-user statistics the empirical-Bayes priors need, gathered a bucket of users at a time into
    arrays in the population's user order, so the priors (moments over all users) are the same however the
    users were bucketed. About a hundred bytes a user."""

    def __init__(self, users: pd.DataFrame, categories: dict[str, list[str]], as_of: date, half_life_days: float):
        self.users = pd.Index(users["user_id"].to_numpy())
        self.as_of = as_of
        self.exposure = exposure_days(users["first_day"], as_of, half_life_days)
        self.raw_days = exposure_day_count(users["first_day"], as_of)
        self.beliefs = summarized_beliefs(categories)
        self.stats: dict[str, dict[str, np.ndarray]] = {}
        for name, cats in self.beliefs:
            wanted = ("stat_a", "stat_b", "n_evidence") if BELIEFS[name].family == "beta" else ("stat_a",)
            self.stats[name] = {s: np.zeros((len(self.users), len(cats))) for s in wanted}

    def add(self, state: pd.DataFrame) -> None:
        """Take in the state of a bucket of users."""
        by_belief = _state_by_belief(state)
        for name, cats in self.beliefs:
            if name in by_belief:
                _scatter(by_belief[name], self.users, cats, self.stats[name])

    def estimate(self) -> Priors:
        """Each belief's empirical-Bayes prior, for the beliefs with evidence somewhere in the population: a
        belief whose source the data lacks (no recommendation shown, no ticket, no channel) gets no prior, so
        no user gets a row of it (a prior alone would read as a finding)."""
        params, rows = {}, []
        for name, cats in self.beliefs:
            family, m = BELIEFS[name].family, self.stats[name]
            if not (m["stat_a"].any() or ("stat_b" in m and m["stat_b"].any())):
                continue
            if family == "beta":
                est = beta_prior(m["stat_a"][:, 0], m["stat_b"][:, 0], raw_trials=m["n_evidence"][:, 0])
                params[name] = (np.array([est.p1]), np.array([est.p2]))
                rows.append((name, "", est.family, est.p1, est.p2, est.n_users, est.method))
            elif family == "gamma":
                est = gamma_prior(m["stat_a"][:, 0], self.exposure, raw_exposure=self.raw_days)
                params[name] = (np.array([est.p1]), np.array([est.p2]))
                rows.append((name, "", est.family, est.p1, est.p2, est.n_users, est.method))
            else:
                alpha, est = dirichlet_prior(m["stat_a"])
                params[name] = (alpha, np.full(len(cats), est.p2))
                rows += [(name, c, est.family, x, est.p2, est.n_users, est.method)
                         for c, x in zip(cats, alpha, strict=True)]
        frame = pd.DataFrame(rows, columns=["belief", "category", "family", "param_1", "param_2", "n_users",
                                            "method"])
        frame["as_of"] = pd.Timestamp(self.as_of)
        return Priors(params, frame)


def posteriors(state: pd.DataFrame, users: pd.DataFrame, categories: dict[str, list[str]], priors: Priors,
               as_of: date, half_life_days: float) -> pd.DataFrame:
    """``user_beliefs`` rows (one per user, belief and category) for ``users`` (user_id, first_day: when the
    user's exposure starts, for rates), whose state is ``state``, under population ``priors``. Each belief is
    computed on (users x categories) arrays: at 100,000 users the long-table version spent most of its time in
    merges."""
    user_index = pd.Index(users["user_id"].to_numpy())
    exposure = exposure_days(users["first_day"], as_of, half_life_days)
    by_belief = _state_by_belief(state)
    frames = []
    for name, cats in summarized_beliefs(categories):
        if name not in priors.params:  # no evidence of this belief in the whole population
            continue
        m = _matrices(by_belief.get(name, state.iloc[:0]), user_index, cats)
        columns, keep = belief_columns(name, m, exposure, priors.params[name])
        frames.append(pd.DataFrame({
            "user_id": np.repeat(user_index.to_numpy(), len(cats)), "belief": name,
            "category": np.tile(np.asarray(cats, dtype=object), len(user_index)), "family": BELIEFS[name].family,
            **columns,
        })[keep])
    beliefs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=BELIEF_COLUMNS)
    beliefs["as_of"] = pd.Timestamp(as_of)
    return beliefs


def belief_columns(name: str, m: dict[str, np.ndarray], exposure: np.ndarray,
                   params: tuple[np.ndarray, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One belief's ``user_beliefs`` columns (param_1 .. prior_2) from its (users x categories) state matrices
    ``m`` (``_matrices``), the users' decayed exposure days and the belief's prior parameters, flattened user by
    user; and which of the flat rows to keep. The batch (``posteriors``, thousands of users) and the online refold
    (``online_fold``, one user) both summarize through this function."""
    family = BELIEFS[name].family
    # A propensity needs trials and a share needs observations: a user with none has no row (rates need only
    # time, so every user has one).
    has_evidence = np.ones(len(exposure), dtype=bool) if family == "gamma" else m["n_evidence"].sum(axis=1) > 0
    a = m["stat_a"]
    b = {"beta": m["stat_b"], "gamma": exposure[:, None]}.get(family)
    if b is None:  # dirichlet: the user's total over categories
        b = np.repeat(a.sum(axis=1, keepdims=True), a.shape[1], axis=1)
    p1, p2 = params
    flat = {"stat_a": a.ravel(), "stat_b": np.broadcast_to(b, a.shape).ravel(),
            "prior_1": np.broadcast_to(p1, a.shape).ravel(), "prior_2": np.broadcast_to(p2, a.shape).ravel()}
    post = posterior(family, flat["stat_a"], flat["stat_b"], flat["prior_1"], flat["prior_2"])
    zeros = np.zeros(a.size)
    prior = posterior(family, zeros, zeros, flat["prior_1"], flat["prior_2"])
    lo, hi = post.interval()
    return {
        "param_1": post.p1, "param_2": post.p2, "mean": post.mean, "lower_90": lo, "upper_90": hi,
        "confidence": confidence(post, prior, (lo, hi)),
        "evidence_weighted": flat["stat_a"], "exposure_weighted": flat["stat_b"],
        "n_evidence": m["n_evidence"].ravel(), "last_evidence_day": m["last_evidence_day"].ravel(),
        "prior_1": flat["prior_1"], "prior_2": flat["prior_2"],
    }, np.repeat(has_evidence, a.shape[1])


BELIEF_COLUMNS = ["user_id", "belief", "category", "family", "param_1", "param_2", "mean", "lower_90", "upper_90",
                  "confidence", "evidence_weighted", "exposure_weighted", "n_evidence", "last_evidence_day",
                  "prior_1", "prior_2"]


def summarize(state: pd.DataFrame, users: pd.DataFrame, categories: dict[str, list[str]], as_of: date,
              half_life_days: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``user_beliefs`` and the priors behind them, for a whole population held at once."""
    inputs = PriorInputs(users, categories, as_of, half_life_days)
    inputs.add(state)
    priors = inputs.estimate()
    return posteriors(state, users, categories, priors, as_of, half_life_days), priors.frame


def roll_up(beliefs: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """``user_twins``: one row a user with top interests, goal, preferences, key propensities and rates,
    an overall confidence (mean over beliefs of each belief's confidence) and when evidence last arrived."""
    users = pd.Index(beliefs["user_id"].unique())
    codes = users.get_indexer(beliefs["user_id"])
    names = beliefs["belief"].to_numpy()
    scalar = beliefs["category"].to_numpy() == ""

    def per_user(name: str, column: str) -> np.ndarray:
        """A scalar belief's column, one value per user."""
        rows = (names == name) & scalar
        out = np.full(len(users), np.nan)
        out[codes[rows]] = beliefs[column].to_numpy()[rows]
        return out

    def top(name: str, k: int) -> np.ndarray:
        """The k categories of a share belief with the highest posterior mean, per user (users x k)."""
        rows = names == name
        if not rows.any():
            return np.full((len(users), k), None, dtype=object)
        cats = pd.Index(beliefs["category"].to_numpy()[rows]).unique()
        means = np.full((len(users), len(cats)), -np.inf)
        means[codes[rows], cats.get_indexer(beliefs["category"].to_numpy()[rows])] = beliefs["mean"].to_numpy()[rows]
        order = np.argsort(-means, axis=1, kind="stable")[:, :k]
        out = cats.to_numpy(dtype=object)[order]
        out[np.take_along_axis(means, order, axis=1) == -np.inf] = None  # no row of the belief: no preference
        return out

    # Overall confidence: each belief's mean confidence (over its categories), averaged over the beliefs the user
    # has a row of (a belief without evidence neither raises nor lowers it).
    confidences = []
    for name in pd.unique(names):
        rows = names == name
        total = np.bincount(codes[rows], weights=beliefs["confidence"].to_numpy()[rows], minlength=len(users))
        count = np.bincount(codes[rows], minlength=len(users))
        confidences.append(np.where(count > 0, total / np.maximum(count, 1), np.nan))
    last = pd.Series(beliefs["last_evidence_day"].to_numpy()).groupby(codes).max().reindex(range(len(users)))
    topics = top("topic_interest", 3)
    twins = pd.DataFrame({
        "user_id": users.to_numpy(),
        "top_interests": [", ".join(c for c in row if c is not None) or None for row in topics],
        "top_interest": topics[:, 0],
        "primary_goal": top("goal", 1)[:, 0],
        "preferred_channel": top("channel_preference", 1)[:, 0],
        "preferred_format": top("format_preference", 1)[:, 0],
        "rec_click_propensity": per_user("rec_click", "mean"),
        "campaign_response_propensity": per_user("campaign_response", "mean"),
        "interactions_per_week": 7 * per_user("activity_rate", "mean"),
        "purchases_per_week": 7 * per_user("purchase_rate", "mean"),
        "tickets_per_30_days": 30 * per_user("ticket_rate", "mean"),
        "overall_confidence": np.nanmean(confidences, axis=0) if confidences else np.full(len(users), np.nan),
        "last_evidence_day": last.to_numpy(),
    })
    twins["last_updated"] = pd.Timestamp(as_of)
    return twins
