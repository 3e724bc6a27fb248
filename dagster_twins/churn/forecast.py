"""Landmark survival models: P(churn within h days) for active users and P(return within h days) for lapsed
ones, as of a day, from landmark frames (``dagster_twins.churn.landmarks``).

Each question is a Cox model in *time since the landmark* fitted on stacked landmark rows (a user appears once
per landmark at which they were at risk; their rows share a cluster, so the coefficients' covariance is the
robust one). Because every row starts at its landmark, P(event within h | x) = 1 - exp(-H0(h) exp(x'b)) for every
horizon from one fit, non-decreasing in h by construction. With too few events for a model a question falls back
to a constant rate (events over days of follow-up, Jeffreys prior), said so in ``kind``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.stats import gamma

from dagster_twins.churn.covariates import Design, fit_design, stratified_cap
from dagster_twins.churn.landmarks import ACTIVE, DEFAULT_SPEC, LAPSED, LandmarkSpec
from dagster_twins.churn.models import SurvivalModel, fit_cox

CHURN, RETURN = "churn", "return"
QUESTION_STATE = {CHURN: ACTIVE, RETURN: LAPSED}
EVENT_COLUMN = {CHURN: "churn_days", RETURN: "return_days"}
DEFAULT_HORIZONS = (7, 14, 30, 90)
Z90 = 1.6448536269514722
MIN_EVENTS = 10  # users with an event: fewer than this and the question gets a constant rate, not a model
FULL_STRENGTH_EVENTS = 200  # below this many users with an event the ridge penalty grows (see fit_question)

# Model columns derived from a landmark frame's raw covariates (see ``derive``).
NUMERIC = ["log_activity_rate", "log_lifetime_rate", "log_active_day_rate", "events_per_day", "active_day_share",
           "log_days_since_last_active", "log_tenure", "engagement_trend", "rec_click_rate", "tickets_in_window",
           "tickets_last_week", "log_days_since_ticket", "open_tickets", "tickets_per_30d", "purchases_per_30d",
           "spend_per_30d", "campaign_treated", "has_subscription"]
CATEGORICAL = ["plan", "acquisition_channel"]


def derive(frame: pd.DataFrame, spec: LandmarkSpec = DEFAULT_SPEC) -> pd.DataFrame:
    """Exposure-adjusted model columns from a landmark frame's counts: rates over the days a user was observed
    (raw counts grow with tenure, so new users would look disengaged), logs of skewed rates and days."""
    out = frame.copy()
    tenure = np.maximum(out["tenure_days"].astype(float), 1.0)
    observed = np.maximum(out["observed_days"].astype(float), 1.0)
    in_window = np.maximum(np.minimum(observed, spec.window_days), 1.0)
    months = np.maximum(observed / 30.0, 1.0)
    # The twin's activity belief recomputed as of the landmark: the posterior mean of a Gamma-Poisson rate over
    # evidence decayed with the twins' half-life (a weak Gamma(0.5, 1) prior keeps silent users finite).
    out["log_activity_rate"] = np.log((0.5 + out["decayed_interactions"]) / (1.0 + out["decayed_exposure_days"]))
    out["log_lifetime_rate"] = np.log((0.5 + out["interactions_total"]) / (1.0 + observed))
    out["log_active_day_rate"] = np.log((0.5 + out["active_days_total"]) / (1.0 + observed))
    # Days since the last support ticket, the whole observation for users who never opened one.
    since_ticket = out["days_since_last_ticket"].astype(float).fillna(observed)
    out["log_days_since_ticket"] = np.log1p(np.minimum(since_ticket, observed))
    out["events_per_day"] = np.log1p(out["events_in_window"] / in_window)
    out["active_day_share"] = np.minimum(out["active_days_in_window"] / in_window, 1.0)
    out["log_days_since_last_active"] = np.log1p(np.maximum(out["days_since_last_active"].astype(float), 0.0))
    out["log_tenure"] = np.log1p(tenure)
    trend = out["events_per_day"] - np.log1p(out["events_previous_window"] / spec.window_days)
    out["engagement_trend"] = trend.where(observed >= 2 * spec.window_days)  # unknown, not zero, without two windows
    out["rec_click_rate"] = (out["recs_clicked"] + 1.0) / (out["recs_shown"] + 2.0)
    out["tickets_per_30d"] = out["tickets_total"] / months
    out["purchases_per_30d"] = np.log1p(out["purchases"] / months)
    out["spend_per_30d"] = np.log1p(out["spend"] / months)
    return out


@dataclass(frozen=True)
class Calibrator:
    """Recalibration of a survival probability on the complementary log-log scale (Platt scaling's analogue for
    a hazard model): cloglog(p') = intercept + slope * cloglog(p), i.e. H' = exp(intercept) * H ** slope. Two
    parameters, so it is stable with few events, and strictly increasing (slope > 0), so it never changes a
    ranking. The default is the identity."""

    intercept: float = 0.0
    slope: float = 1.0

    def __call__(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=float)
        if self.identity:
            return p
        log_h = np.log(-np.log1p(-np.clip(p, 1e-12, 1 - 1e-12)))
        return -np.expm1(-np.exp(self.intercept + self.slope * log_h))

    @property
    def identity(self) -> bool:
        return self.intercept == 0.0 and self.slope == 1.0


def fit_calibrator(p: np.ndarray, y: np.ndarray) -> Calibrator:
    """Maximum-likelihood intercept and slope of the cloglog recalibration of ``p`` against outcomes ``y``
    (Bernoulli likelihood); the identity when the outcomes are all one value."""
    y = np.asarray(y, dtype=float)
    if len(y) == 0 or y.min() == y.max():
        return Calibrator()
    log_h = np.log(-np.log1p(-np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)))

    def loss(theta: np.ndarray) -> float:
        eta = np.clip(theta[0] + np.exp(theta[1]) * log_h, -30, 5)
        q = np.clip(-np.expm1(-np.exp(eta)), 1e-12, 1 - 1e-12)
        return -float(np.sum(y * np.log(q) + (1 - y) * np.log1p(-q)))

    result = minimize(loss, np.zeros(2), method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-9})
    return Calibrator(float(result.x[0]), float(np.exp(result.x[1])))


@dataclass(frozen=True)
class QuestionModel:
    """One question's fit: a Cox model in time since the landmark, or (``model`` None) a constant rate."""

    question: str
    model: SurvivalModel | None
    design: Design | None
    rate_events: float = 0.0  # the constant-rate fallback: events and days of follow-up
    rate_days: float = 0.0
    rows: int = 0
    users: int = 0
    calibrators: dict[int, Calibrator] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "cox" if self.model is not None else "constant_rate"

    def with_calibrators(self, calibrators: dict[int, Calibrator]) -> QuestionModel:
        return QuestionModel(self.question, self.model, self.design, self.rate_events, self.rate_days, self.rows,
                             self.users, calibrators)

    def matrix(self, derived: pd.DataFrame) -> np.ndarray:
        if self.design is None:
            return np.zeros((len(derived), 0))
        return self.design.transform(derived).to_numpy()

    def raw(self, derived: pd.DataFrame, horizons: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Uncalibrated P(event within h) per row and horizon, with a 90% interval from the parameters'
        uncertainty: the coefficients' (robust) covariance and the baseline's level (delta method on the log
        cumulative hazard), or the rate's Gamma posterior."""
        n = len(derived)
        h = np.asarray(horizons, dtype=float)
        if self.model is None:
            if self.rate_days <= 0:
                nan = np.full((n, len(h)), np.nan)
                return nan, nan, nan
            shape, scale = self.rate_events + 0.5, 1.0 / self.rate_days
            rates = np.array([shape * scale, gamma.ppf(0.05, shape, scale=scale), gamma.ppf(0.95, shape, scale=scale)])
            p = -np.expm1(-np.outer(rates, h))  # (3, horizons)
            return (np.broadcast_to(p[0], (n, len(h))).copy(), np.broadcast_to(p[1], (n, len(h))).copy(),
                    np.broadcast_to(p[2], (n, len(h))).copy())
        x = self.matrix(derived)
        model = self.model
        lp = model.linear_predictor(x)
        z = x - model.center
        cov = model.param_cov if model.param_cov is not None else np.diag(model.coef_se ** 2)
        var = np.einsum("ij,jk,ik->i", z, cov, z) + (1.0 / model.events if model.events else 0.0)
        sd = np.sqrt(np.maximum(var, 0.0))
        base = np.maximum(model.baseline_at(h), 1e-12)
        log_h = np.log(base)[None, :] + lp[:, None]
        def prob(v):
            return -np.expm1(-np.exp(v))
        return prob(log_h), prob(log_h - Z90 * sd[:, None]), prob(log_h + Z90 * sd[:, None])

    def predict(self, derived: pd.DataFrame, horizons: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Calibrated probabilities and interval ends (each horizon's calibrator maps all three), non-decreasing
        in the horizon."""
        p, lo, hi = self.raw(derived, horizons)
        for j, h in enumerate(horizons):
            calibrate = self.calibrators.get(int(h), Calibrator())
            p[:, j], lo[:, j], hi[:, j] = calibrate(p[:, j]), calibrate(lo[:, j]), calibrate(hi[:, j])
        ordered = [np.clip(np.fmax.accumulate(a, axis=1), 0.0, 1.0) for a in (p, lo, hi)]
        return ordered[0], np.minimum(ordered[1], ordered[0]), np.maximum(ordered[2], ordered[0])


def survival_data(rows: pd.DataFrame, question: str, max_horizon: float) -> tuple[np.ndarray, np.ndarray]:
    """Durations and event flags of a question's rows (outcomes from ``landmark_outcomes``), censored at the
    follow-up and at the longest horizon."""
    event_days = rows[EVENT_COLUMN[question]].to_numpy(float)
    limit = np.minimum(rows["followup_days"].to_numpy(float), max_horizon)
    happened = np.isfinite(event_days) & (event_days <= limit)
    duration = np.where(happened, event_days, limit)
    return np.maximum(duration, 1e-3), happened.astype(int)


def fit_question(rows: pd.DataFrame, question: str, max_horizon: float, *, covariates: Sequence[str] = NUMERIC,
                 max_rows: int = 200_000, seed: int = 0, penalizer: float = 0.01,
                 spec: LandmarkSpec = DEFAULT_SPEC) -> QuestionModel:
    """Fit one question on its at-risk rows (landmark rows in its state, with follow-up)."""
    rows = rows[(rows["state"] == QUESTION_STATE[question]) & (rows["followup_days"] > 0)]
    duration, event = survival_data(rows, question, max_horizon)
    rows = rows.assign(_duration=duration, _event=event)
    rows = stratified_cap(rows, "_event", max_rows, seed)
    users = int(rows["user_id"].nunique())
    events = int(rows["_event"].sum())
    # A user's one churn shows in the rows of several landmarks: count users with an event, not rows.
    distinct_events = rows.loc[rows["_event"] == 1, "user_id"].nunique()
    if distinct_events < MIN_EVENTS:
        # A user's rows at several landmarks are one user's evidence: events and days count once per user (on
        # average), so the rate's interval is not narrowed by the stacking; the rate itself is unchanged.
        per_user = users / max(len(rows), 1)
        return QuestionModel(question, None, None, events * per_user, float(rows["_duration"].sum()) * per_user,
                             len(rows), users)
    # With few events a model of twenty columns overfits: the ridge penalty grows as the events shrink, so a small
    # data set gets a cautious model (coefficients pulled towards no effect) rather than none.
    penalizer = penalizer * max(1.0, FULL_STRENGTH_EVENTS / distinct_events)
    derived = derive(rows, spec)
    design = fit_design(derived, [c for c in covariates if c in derived], [c for c in CATEGORICAL if c in derived])
    model = fit_cox(design.transform(derived), rows["_duration"], rows["_event"], penalizer=penalizer,
                    cluster=rows["user_id"].to_numpy())
    # The baseline's precision is that of the distinct users with an event, not of their repeated rows.
    model = replace(model, events=int(distinct_events))
    return QuestionModel(question, model, design, float(events), float(rows["_duration"].sum()), len(rows), users)


# Plain words for each model column's push on the log-hazard, by whether the user's value is above or below the
# population's: what a product or growth person reads in ``top_drivers``.
LABELS = {
    "log_activity_rate": ("more active than most users lately", "less active than most users lately"),
    "log_lifetime_rate": ("more active than most users overall", "less active than most users overall"),
    "log_active_day_rate": ("active on more days than most users", "active on fewer days than most users"),
    "log_days_since_ticket": ("no support ticket for a long time", "a support ticket not long ago"),
    "events_per_day": ("more product events than usual lately", "fewer product events than usual lately"),
    "active_day_share": ("active on more days lately", "active on fewer days lately"),
    "log_days_since_last_active": ("a long time since last active", "active recently"),
    "log_tenure": ("a long-standing user", "a newer user"),
    "engagement_trend": ("activity rising", "activity falling"),
    "engagement_trend_missing": ("too new for an activity trend", "has an activity trend"),
    "rec_click_rate": ("clicks recommendations often", "rarely clicks recommendations"),
    "tickets_in_window": ("support tickets recently", "no support tickets recently"),
    "tickets_last_week": ("a support ticket this week", "no support ticket this week"),
    "open_tickets": ("an open support ticket", "no open support ticket"),
    "tickets_per_30d": ("often needs support", "rarely needs support"),
    "purchases_per_30d": ("buys often", "buys rarely"),
    "spend_per_30d": ("spends more than most", "spends less than most"),
    "campaign_treated": ("received the retention campaign", "not in the retention campaign"),
    "has_subscription": ("has a subscription", "no subscription"),
}


def readable(column: str, above: bool) -> str:
    if column in LABELS:
        return LABELS[column][0 if above else 1]
    if "=" in column:  # a one-hot level
        name, level = (part.replace("_", " ") for part in column.split("=", 1))
        return f"{name} is {level}" if above else f"{name} is not {level}"
    return f"{'high' if above else 'low'} {column.replace('_', ' ')}"


def top_drivers(qm: QuestionModel, x: np.ndarray, k: int = 3) -> list[str]:
    """The k model columns that move each row's log-hazard most, in plain words with their direction:
    'fewer product events than usual lately (raises churn risk)'."""
    if qm.model is None or x.shape[1] == 0:
        return ["no model: too few events to tell users apart"] * len(x)
    contrib = qm.model.contributions(x)
    z = x - qm.model.center
    order = np.argsort(-np.abs(contrib), axis=1)[:, :k]
    effect = {CHURN: ("raises churn risk", "lowers churn risk"), RETURN: ("makes a return likelier",
                                                                         "makes a return less likely")}[qm.question]
    # Every (column, above the centre, raises) phrase once, picked per row by index: no Python loop over users
    # (the loop took about 5% of daily scoring; 0.5 s a day at 100,000 users).
    phrases = np.array([f"{readable(name, above)} ({effect[0] if raises else effect[1]})"
                        for name in qm.model.columns for above in (False, True) for raises in (False, True)],
                       dtype=object)
    rows = np.arange(len(x))[:, None]
    picked = contrib[rows, order]
    code = order * 4 + (z[rows, order] > 0) * 2 + (picked > 0)
    parts = np.where(np.abs(picked) > 1e-9, phrases[code], "")
    out = parts[:, 0] if len(x) else np.array([], dtype=object)
    for j in range(1, parts.shape[1]):
        nxt = parts[:, j]
        out = np.where(nxt == "", out, np.where(out == "", nxt, out + "; " + nxt))
    return list(out)
