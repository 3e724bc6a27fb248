"""Who should we treat? Per-user effects of a randomized campaign on churn within a horizon, and the uplift
(Qini) curves that check them on held-out users. Plain functions over frames and arrays, no Dagster.

The model: a Cox model of churn after the send with the treatment, the user's covariates as of the send
(standardized) and treatment x covariate interactions,

    log h(t | x, T) = log h0(t) + x.beta + T * (gamma + x.delta)

so a user's hazard ratio under treatment is exp(gamma + x.delta) and their effect on churning within h days is

    effect(x) = P(churn <= h | x, T=1) - P(churn <= h | x, T=0),   P = 1 - exp(-H0(h) exp(lp))

(negative: the campaign keeps the user). Why this and not a meta-learner over two models: one model shares the
baseline and the covariates' main effects between the groups, so the data pays only for the interactions; the
ridge penalty is heavier on the interactions than on the main effects, which shrinks them to "the same ratio for
everyone" unless the data insist (a placebo's come out near zero). The ratio is proportional in time, which is
how the simulation layer already models a campaign.

Honesty: every randomized user's effect is *cross-fitted*: predicted by the model fitted without their fold (K
folds), so the Qini curves below are on held-out users by construction. Intervals: 90% over draws of the
coefficients from their covariance (the baseline H0 held at its estimate). Held-out is not yet independent: a
user's outcome also shaped the models that scored the other folds, so the curves rank users within their fold and
their bootstrap intervals are widened for that (``within_fold_ranks``, ``CROSS_FIT_VARIANCE``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter

# Covariates as of the send (the churn layer's landmark covariates) and how each enters the model.
FEATURES: dict[str, Callable[[pd.Series], pd.Series]] = {
    "tenure_days": np.log1p,
    "days_since_last_active": np.log1p,
    "events_in_window": np.log1p,
    "active_days_in_window": lambda s: s,
    "purchases": np.log1p,
    "tickets_in_window": lambda s: s,
    "open_tickets": lambda s: s,
    "days_since_last_ticket": lambda s: np.log1p(s.clip(upper=365)),  # no ticket ever: 365 (filled below)
    "has_subscription": lambda s: s,
}
FILL = {"days_since_last_ticket": 365.0}
INTERVAL = (0.05, 0.95)


@dataclass(frozen=True)
class UpliftConfig:
    horizon_days: int = 60
    folds: int = 5
    penalizer_main: float = 0.001  # ridge on the treatment and the covariates' main effects
    penalizer_interaction: float = 0.05  # ridge on the treatment x covariate interactions
    draws: int = 200  # coefficient draws for the per-user intervals
    max_fit_users: int = 200_000  # fit on at most this many randomized users (a random sample); score everyone
    seed: int = 0
    chunk_users: int = 50_000
    min_events_per_group: int = 20  # fewer churn events within the horizon in a group: the campaign is skipped


class UpliftUnavailable(ValueError):
    """The data cannot give a campaign's per-user effects (too little follow-up or too few churn events)."""


@dataclass(frozen=True)
class UpliftModel:
    """A fitted interacted Cox model: standardization, coefficients (treated, x..., treated:x...), their
    covariance and the Breslow cumulative baseline hazard at the horizon (at x = 0, untreated)."""

    columns: list[str]
    means: np.ndarray
    sds: np.ndarray
    params: np.ndarray
    covariance: np.ndarray
    baseline_at_horizon: float
    horizon_days: int
    fitted_users: int

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        return (feature_frame(frame)[self.columns].to_numpy(float) - self.means) / self.sds

    def probabilities(self, x: np.ndarray, params: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """P(churn within the horizon) untreated and treated, per row of the standardized ``x``; with ``params``
        of shape (coefficients, draws): one column per draw."""
        theta = self.params if params is None else params
        p = len(self.columns)
        beta, gamma, delta = theta[1:1 + p], theta[0], theta[1 + p:]
        lp0 = x @ beta
        lp1 = lp0 + gamma + x @ delta
        h0 = self.baseline_at_horizon
        return -np.expm1(-h0 * np.exp(lp0)), -np.expm1(-h0 * np.exp(lp1))


def feature_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's raw features from landmark covariates (missing values: the fill, else 0)."""
    out = pd.DataFrame(index=frame.index)
    for column, transform in FEATURES.items():
        values = pd.to_numeric(frame[column], errors="coerce").astype(float) if column in frame else pd.Series(
            np.nan, index=frame.index)
        out[column] = transform(values.fillna(FILL.get(column, 0.0)))
    return out


def outcome(days_followed: np.ndarray, churned: np.ndarray, horizon_days: int) -> tuple[np.ndarray, np.ndarray]:
    """(duration cut at the horizon, event within it) for the fit, from days followed after the send."""
    days = np.asarray(days_followed, float)
    event = (np.asarray(churned).astype(bool) & (days <= horizon_days)).astype(int)
    return np.maximum(np.minimum(days, horizon_days), 1e-3), event


def retained_known(days_followed: np.ndarray, churned: np.ndarray, horizon_days: int) -> tuple[np.ndarray, np.ndarray]:
    """(retained at the horizon, outcome known): unknown for users followed less than the horizon who had not
    churned (censored early); the Qini curves use the known ones."""
    days = np.asarray(days_followed, float)
    churned_in = np.asarray(churned).astype(bool) & (days <= horizon_days)
    return (~churned_in).astype(float), churned_in | (days >= horizon_days)


def breslow_at(duration: np.ndarray, event: np.ndarray, lp: np.ndarray, horizon: float) -> float:
    """Breslow's cumulative baseline hazard at ``horizon``: sum over event times t <= horizon of
    deaths(t) / sum of exp(lp) over those at risk at t."""
    order = np.argsort(-duration, kind="stable")
    risk = np.cumsum(np.exp(lp[order]))  # at risk: duration >= t, accumulated from the longest
    d_sorted, e_sorted = duration[order], event[order]
    # ties: everyone with the same duration is at risk at it: use the risk sum at the last of the tie
    last_of_tie = np.searchsorted(-d_sorted, -d_sorted, side="right") - 1
    at_risk = risk[last_of_tie]
    hit = (e_sorted == 1) & (d_sorted <= horizon)
    return float(np.sum(1.0 / at_risk[hit]))


def fit_uplift_model(frame: pd.DataFrame, config: UpliftConfig) -> UpliftModel:
    """Fit on randomized users: ``frame`` has the landmark covariates, ``treated`` (0/1), ``days_followed`` and
    ``churned`` (after the send)."""
    raw = feature_frame(frame)
    sds = raw.std().to_numpy(float)
    keep = np.isfinite(sds) & (sds > 1e-9)
    columns = [c for c, k in zip(raw.columns, keep, strict=True) if k]
    means, sds = raw[columns].mean().to_numpy(float), raw[columns].std().to_numpy(float)
    x = (raw[columns].to_numpy(float) - means) / sds
    treated = frame["treated"].to_numpy(float)
    duration, event = outcome(frame["days_followed"].to_numpy(), frame["churned"].to_numpy(), config.horizon_days)
    names = ["treated", *columns, *[f"treated:{c}" for c in columns]]
    design = pd.DataFrame(np.column_stack([treated, x, treated[:, None] * x]), columns=names)
    design["duration"], design["event"] = duration, event
    penalizer = np.r_[np.full(1 + len(columns), config.penalizer_main),
                      np.full(len(columns), config.penalizer_interaction)]
    fit = CoxPHFitter(penalizer=penalizer).fit(design, "duration", "event")
    params = fit.params_[names].to_numpy(float)
    covariance = fit.variance_matrix_.loc[names, names].to_numpy(float)
    lp = design[names].to_numpy(float) @ params
    return UpliftModel(columns, means, sds, params, covariance, breslow_at(duration, event, lp, config.horizon_days),
                       config.horizon_days, len(frame))


def score(model: UpliftModel, frame: pd.DataFrame, config: UpliftConfig) -> pd.DataFrame:
    """Per row of ``frame``: P(churn) untreated (the risk) and treated, the effect (treated minus untreated) and
    its 90% interval over coefficient draws. Vectorized over users x draws, ``chunk_users`` rows at a time."""
    rng = np.random.default_rng(config.seed)
    draws = rng.multivariate_normal(model.params, model.covariance, size=config.draws, method="eigh").T
    parts = []
    for start in range(0, len(frame), config.chunk_users):
        x = model.matrix(frame.iloc[start:start + config.chunk_users])
        p0, p1 = model.probabilities(x)
        d0, d1 = model.probabilities(x, draws)
        lo, hi = np.quantile(d1 - d0, INTERVAL, axis=1)
        parts.append(pd.DataFrame({"p_churn_control": p0, "p_churn_treated": p1, "effect": p1 - p0,
                                   "lower_90": lo, "upper_90": hi}))
    columns = ["p_churn_control", "p_churn_treated", "effect", "lower_90", "upper_90"]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns, dtype=float)
    out.index = frame.index
    return out


@dataclass(frozen=True)
class CrossFit:
    effects: pd.DataFrame  # per randomized user: score columns, fold (-1: outside the fitted sample), cross_fitted
    model: UpliftModel  # fitted on the whole (sampled) randomized set: scores users outside it
    sampled: bool  # the fit used a sample of the randomized users


def cross_fit(frame: pd.DataFrame, config: UpliftConfig) -> CrossFit:
    """Every randomized user's effect from a model that did not see them: K folds over the fitted sample (at most
    ``max_fit_users``, drawn at random); users outside the sample are scored by the model fitted on all of it.
    Returns the per-user frame (index of ``frame``) and the full-sample model (for scoring other users)."""
    rng = np.random.default_rng(config.seed)
    n = len(frame)
    in_sample = np.zeros(n, dtype=bool)
    in_sample[rng.permutation(n)[:min(n, config.max_fit_users)]] = True
    fold = np.full(n, -1)
    fold[in_sample] = rng.permutation(np.arange(in_sample.sum()) % config.folds)
    sample = frame[in_sample]
    model = fit_uplift_model(sample, config)
    parts = []
    for k in range(config.folds):
        held = fold == k
        parts.append(score(fit_uplift_model(frame[in_sample & ~held], config), frame[held], config))
    if (~in_sample).any():
        parts.append(score(model, frame[~in_sample], config))
    effects = pd.concat(parts).reindex(frame.index)
    return CrossFit(effects.assign(fold=fold, cross_fitted=True), model, bool((~in_sample).any()))


# --- Uplift and Qini curves -----------------------------------------------------------------------------------


def _cumulative(score: np.ndarray, treated: np.ndarray, retained: np.ndarray, weights: np.ndarray
                ) -> tuple[np.ndarray, ...]:
    """Cumulative treated/control counts and retained counts down the ranking (highest score first); ``weights``
    is (replicates, users)."""
    order = np.argsort(-np.asarray(score, float), kind="stable")
    t, y, w = treated[order], retained[order], weights[:, order]
    nt, nc = np.cumsum(w * t, axis=1), np.cumsum(w * (1 - t), axis=1)
    rt, rc = np.cumsum(w * t * y, axis=1), np.cumsum(w * (1 - t) * y, axis=1)
    return nt, nc, rt, rc


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=float), where=b > 0)


def curve_points(score: np.ndarray, treated: np.ndarray, retained: np.ndarray, weights: np.ndarray | None = None
                 ) -> dict[str, np.ndarray]:
    """Down the ranking by ``score`` (highest first), after each of the n users (rows: replicates of ``weights``):

    - ``qini``: Radcliffe's Qini, retained treated minus retained controls scaled to the treated count,
      R_T(k) - R_C(k) N_T(k) / N_C(k), per randomized user (divided by the total weight);
    - ``uplift``: the cumulative uplift, (R_T/N_T - R_C/N_C)(k) x (N_T + N_C)(k), per randomized user;
    - ``rate``: the retention difference among the targeted, R_T/N_T - R_C/N_C (users kept per user targeted).
    """
    treated = np.asarray(treated, float)
    retained = np.asarray(retained, float)
    w = np.ones((1, len(treated))) if weights is None else np.atleast_2d(weights)
    nt, nc, rt, rc = _cumulative(score, treated, retained, w)
    total = w.sum(axis=1, keepdims=True)
    rate = _ratio(rt, nt) - _ratio(rc, nc)
    return {"qini": (rt - _ratio(rc * nt, nc)) / total, "uplift": rate * (nt + nc) / total, "rate": rate,
            "share": (nt + nc) / total}


def _area(share: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Trapezoid area under y(share) from (0, 0), per row."""
    x = np.concatenate([np.zeros((share.shape[0], 1)), share], axis=1)
    v = np.concatenate([np.zeros((y.shape[0], 1)), y], axis=1)
    return np.sum(np.diff(x, axis=1) * (v[:, 1:] + v[:, :-1]) / 2, axis=1)


def curve_summary(points: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per replicate: the Qini coefficient (area between the Qini curve and the random-targeting line, in users
    kept per randomized user; 0: no better than random) and the AUUC (area under the cumulative uplift curve) with
    its random-line counterpart subtracted too (``auuc_over_random``)."""
    share = points["share"]
    qini_random = points["qini"][:, -1:] * share
    uplift_random = points["uplift"][:, -1:] * share
    auuc = _area(share, points["uplift"])
    return {"qini_coefficient": _area(share, points["qini"] - qini_random), "auuc": auuc,
            "auuc_over_random": auuc - _area(share, uplift_random)}


def poisson_weights(n: int, replicates: int, seed: int) -> Iterator[np.ndarray]:
    """The bootstrap over users as Poisson(1) weights, a block of replicates at a time (bounded memory)."""
    rng = np.random.default_rng(seed)
    block = max(1, min(replicates, 2_000_000 // max(n, 1)))
    for start in range(0, replicates, block):
        yield rng.poisson(1.0, size=(min(block, replicates - start), n)).astype(float)


def grid_index(share: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """For each share of the grid, the position in the ranking where that share of users is targeted."""
    return np.clip(np.searchsorted(share, grid - 1e-12), 0, len(share) - 1)


def within_fold_ranks(score: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Each user's score as its percentile among the users of its own fold, (rank - 1/2) / fold size (ties:
    average rank), so that ranking by it takes the same share from every fold.

    Why: a cross-fitted user is scored by the model fitted on the *other* folds, so a fold whose own data show a
    stronger effect than the rest gets a model that saw a weaker one, and its users are pushed down a pooled
    ranking. Comparing users across folds thus ranks against the very noise each fold held out, and under a null
    campaign the pooled Qini coefficient comes out negative with a user-bootstrap interval that misses zero (the
    demo's placebo: -0.0016, -0.0035 to -0.0002; on synthetic null experiments, see docs/model-quality.md). Within
    a fold every score comes from one model that never saw that fold, so it is independent of the fold's outcomes:
    ranking by within-fold percentiles keeps that independence, and the bootstrap over users, with the fitted
    models held fixed, is then a valid interval for how these models' rankings do on users they did not see (under a
    null campaign that is zero for any model). Users outside the fitted sample (fold -1) are a group of their own."""
    ranks = pd.Series(np.asarray(score, float)).groupby(np.asarray(folds)).rank(method="average")
    sizes = pd.Series(np.asarray(folds)).map(pd.Series(np.asarray(folds)).value_counts())
    return ((ranks - 0.5) / sizes).to_numpy(float)


def _ranked_within_folds(scores: dict[str, np.ndarray], folds: np.ndarray | None) -> dict[str, np.ndarray]:
    return scores if folds is None else {name: within_fold_ranks(s, folds) for name, s in scores.items()}


# The variance of a cross-fitted Qini over the variance the user bootstrap sees. Each user's outcome enters the
# Qini twice: once as a held-out outcome of its own fold, and once through the K - 1 models fitted on it that rank
# the other folds. With no effect for anyone the Qini is, to first order, a sum over pairs of folds of the same
# product twice (fold j's noise learned by model k times fold k's noise evaluated, and the reverse), so the two
# add up coherently; the bootstrap over users holds the models fixed and counts them as independent: half the
# variance. Measured on 34 synthetic null experiments of 8,000 users: the plain bootstrap's 90% interval covered
# zero in 74% (1.645 / sqrt(2) standard errors: 75% expected), widened by sqrt(2) in 88%. With a real
# heterogeneity the models' noise along it rescales the ranking and barely moves it, so the factor is conservative
# there. Bootstrap deviations from the estimate are scaled by sqrt(CROSS_FIT_VARIANCE) for cross-fitted scores
# (a bootstrap that refits would cost K + 1 Cox fits per replicate).
CROSS_FIT_VARIANCE = 2.0


def _widened(replicates: np.ndarray, estimate: np.ndarray | float, folds: np.ndarray | None) -> np.ndarray:
    """Bootstrap replicates of a statistic of cross-fitted scores (``folds`` given), their deviations from the
    estimate scaled by sqrt(CROSS_FIT_VARIANCE); unchanged for fixed scores."""
    if folds is None:
        return replicates
    return estimate + np.sqrt(CROSS_FIT_VARIANCE) * (replicates - estimate)


def uplift_curves(scores: dict[str, np.ndarray], treated: np.ndarray, retained: np.ndarray,
                  grid: np.ndarray | None = None, replicates: int = 200, seed: int = 0,
                  folds: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Curves of each targeting policy (a score per policy; ``random`` is added: the straight line) on a grid of
    shares targeted, with 90% bootstrap intervals over users, and one summary row per policy (Qini coefficient,
    AUUC, with intervals). ``treated`` and ``retained`` are 0/1 of held-out randomized users; ``folds``, their
    cross-fitting folds: given, each policy ranks users within their fold (``within_fold_ranks``) and the intervals
    carry the models' share of the variance (``CROSS_FIT_VARIANCE``): what cross-fitted scores need for honest
    curves and intervals."""
    grid = np.linspace(0.01, 1.0, 100) if grid is None else grid
    treated, retained = np.asarray(treated, float), np.asarray(retained, float)
    rows, summaries = [], []
    for policy, s in _ranked_within_folds(scores, folds).items():
        point = curve_points(s, treated, retained)
        at = grid_index(point["share"][0], grid)
        boot: dict[str, list[np.ndarray]] = {"qini": [], "rate": [], "qini_coefficient": [], "auuc": [],
                                             "auuc_over_random": []}
        for w in poisson_weights(len(treated), replicates, seed):
            p = curve_points(s, treated, retained, w)
            boot["qini"].append(p["qini"][:, at])
            boot["rate"].append(p["rate"][:, at])
            for name, value in curve_summary(p).items():
                boot[name].append(value)
        summary = curve_summary(point)
        estimate = {"qini": point["qini"][0, at], "rate": point["rate"][0, at],
                    **{name: summary[name][0] for name in summary}}
        b = {k: _widened(np.concatenate(v), estimate[k], folds) for k, v in boot.items()}
        qlo, qhi = np.quantile(b["qini"], INTERVAL, axis=0)
        rlo, rhi = np.quantile(b["rate"], INTERVAL, axis=0)
        rows.append(pd.DataFrame({
            "policy": policy, "share_targeted": grid, "users_targeted": at + 1,
            "qini": point["qini"][0, at], "qini_lower_90": qlo, "qini_upper_90": qhi,
            "cumulative_uplift": point["uplift"][0, at], "random_qini": point["qini"][0, -1] * grid,
            "uplift_rate": point["rate"][0, at], "uplift_rate_lower_90": rlo, "uplift_rate_upper_90": rhi}))
        summaries.append({"policy": policy, "users": len(treated),
                          **{name: float(summary[name][0]) for name in summary},
                          **{f"{name}_{side}_90": float(np.quantile(b[name], q))
                             for name in summary for side, q in zip(("lower", "upper"), INTERVAL, strict=True)}})
    return pd.concat(rows, ignore_index=True), pd.DataFrame(summaries)


def policy_gains(scores: dict[str, np.ndarray], treated: np.ndarray, retained: np.ndarray, share: float,
                 replicates: int = 500, seed: int = 0, folds: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Bootstrap replicates (users resampled, the same replicates for every policy, so differences are paired)
    of the users kept per user targeted when each policy targets the top ``share`` of held-out randomized users by
    its score (within each cross-fitting fold when ``folds`` is given, as in ``uplift_curves``); ``random`` is the
    whole group's retention difference (targeting at random keeps that on average). For cross-fitted scores the
    deviations of each policy's gain over random are widened as in ``uplift_curves`` (random's own, which no model
    touches, are not)."""
    treated, retained = np.asarray(treated, float), np.asarray(retained, float)
    scores = _ranked_within_folds(scores, folds)
    out: dict[str, list[np.ndarray]] = {name: [] for name in [*scores, "random"]}
    ones = np.ones(len(treated))
    top = min(len(treated), max(1, int(round(share * len(treated))))) - 1  # the last targeted position
    for w in poisson_weights(len(treated), replicates, seed):
        for name, s in scores.items():
            out[name].append(curve_points(s, treated, retained, w)["rate"][:, top])
        out["random"].append(curve_points(ones, treated, retained, w)["rate"][:, -1])
    gains = {name: np.concatenate(v) for name, v in out.items()}
    random = gains["random"]
    overall = curve_points(ones, treated, retained)["rate"][0, -1]
    for name, s in scores.items():
        over = curve_points(s, treated, retained)["rate"][0, top] - overall
        gains[name] = random + _widened(gains[name] - random, over, folds)
    return gains


def users_to_target(population: int, users: int | None, share: float | None, budget: float | None,
                    cost_per_send: float | None) -> int:
    """How many users a targeting spec treats out of ``population``: N users, a share, or budget / cost."""
    if users is not None:
        n = users
    elif share is not None:
        n = int(round(share * population))
    else:
        assert budget is not None and cost_per_send
        n = int(budget // cost_per_send)
    return max(0, min(n, population))


def policy_scores(effects: pd.DataFrame) -> dict[str, np.ndarray]:
    """The targeting policies' scores, higher first: ``benefit``, the estimated reduction in churn; ``risk``, the
    churn probability without the campaign (what a risk model alone ranks by)."""
    return {"benefit": -effects["effect"].to_numpy(float), "risk": effects["p_churn_control"].to_numpy(float)}


EFFECT_COLUMNS = ["user_id", "campaign_id", "population", "horizon_days", "effect", "lower_90", "upper_90",
                  "p_churn_control", "p_churn_treated", "treated", "retained", "fold", "cross_fitted", "as_of",
                  "fitted_on"]


@dataclass(frozen=True)
class CampaignFit:
    """What fitting one campaign leaves, all of it fixed by the randomized users' covariates at the send and their
    outcome within the horizon (``fit_fingerprint``): the model, the cross-fitted randomized users' rows, the
    curves and summaries that check them, counts."""

    model: UpliftModel
    randomized: pd.DataFrame  # EFFECT_COLUMNS rows of population "randomized"
    curves: pd.DataFrame
    summary: pd.DataFrame
    info: dict
    fitted_on: pd.Timestamp  # the day the fit was made (as of the data it read)


@dataclass(frozen=True)
class CampaignEffects:
    effects: pd.DataFrame  # EFFECT_COLUMNS: randomized users (cross-fitted, as of the send) and active users
    curves: pd.DataFrame  # uplift / Qini curves per policy on a grid of shares
    summary: pd.DataFrame  # per policy: Qini coefficient and AUUC with 90% intervals
    info: dict  # counts for metadata
    fit: CampaignFit | None = None  # the fit behind them (stored, so a later day can reuse it)


def _usable(experiment: pd.DataFrame) -> pd.DataFrame:
    return experiment[~experiment["churned_before_send"].astype(bool) & ~experiment["in_both_groups"].astype(bool)]


def _thin(campaign_id: str, frame: pd.DataFrame, config: UpliftConfig, of: str) -> str | None:
    """Why ``frame`` (randomized users with ``treated``, ``days_followed``, ``churned``) is too thin to fit, or
    None."""
    _, event = outcome(frame["days_followed"].to_numpy(), frame["churned"].to_numpy(), config.horizon_days)
    treated = frame["treated"].to_numpy() == 1
    fewest = min(int(event[treated].sum()), int(event[~treated].sum()))
    if fewest < config.min_events_per_group:
        return (f"campaign {campaign_id!r}: {fewest} churn event(s) within {config.horizon_days} days of the send in "
                f"its smaller group, fewer than {config.min_events_per_group} (of {len(frame):,} {of})")
    followed = int((frame["days_followed"].to_numpy(float) >= config.horizon_days).sum())
    if followed < config.min_events_per_group:
        return (f"campaign {campaign_id!r}: {followed} user(s) followed for {config.horizon_days} days after the "
                "send so far: too soon to measure whom it keeps")
    return None


def thin_reason(campaign_id: str, experiment: pd.DataFrame, config: UpliftConfig) -> str | None:
    """Why a campaign cannot be fitted whatever its users' covariates at the send (too few churn events or users
    followed over the horizon among all its usable randomized users), or None: checked before the covariates are
    read, which costs a pass over the population's history."""
    return _thin(campaign_id, _usable(experiment), config, "usable randomized users")


def fit_fingerprint(experiment: pd.DataFrame, config: UpliftConfig) -> str:
    """A digest of everything ``fit_campaign`` reads of a campaign apart from the covariates at the send (which
    only the send day fixes: they use what was known by then): the send day, the configuration, and each usable
    randomized user's group and outcome within the horizon. Equal digests, equal fits. The outcome stops changing
    once every user has been followed for the horizon (or churned within it)."""
    usable = _usable(experiment).sort_values("user_id", kind="stable")
    duration, event = outcome(usable["days_followed"].to_numpy(), usable["churned"].to_numpy(), config.horizon_days)
    frame = pd.DataFrame({"user_id": usable["user_id"].astype(str).to_numpy(),
                          "treated": usable["treated"].to_numpy(float), "duration": duration, "event": event})
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    send_day = pd.Timestamp(experiment["sent_at"].min()).normalize()
    digest.update(repr((str(send_day.date()), len(experiment), config)).encode())
    return digest.hexdigest()[:32]


def fit_campaign(campaign_id: str, experiment: pd.DataFrame, at_send: pd.DataFrame, config: UpliftConfig,
                 fitted_on: pd.Timestamp | None = None, replicates: int = 200) -> CampaignFit:
    """Fit one randomized campaign: ``experiment`` its rows of marts.fct_campaign_experiment_assignments,
    ``at_send`` every user's covariates as of the send day. Cross-fitted effects of the randomized users, the
    model fitted on all of them (or its bounded sample), and the curves on held-out users."""
    send_day = pd.Timestamp(experiment["sent_at"].min()).normalize()
    usable = _usable(experiment)
    frame = usable[["user_id", "treated", "days_followed", "churned"]].merge(
        at_send.drop(columns=["landmark_day"], errors="ignore"), on="user_id", how="inner").reset_index(drop=True)
    reason = _thin(campaign_id, frame, config, "randomized users known at the send")
    if reason:
        raise UpliftUnavailable(reason)
    fitted_on = pd.Timestamp(fitted_on) if fitted_on is not None else pd.NaT
    fit = cross_fit(frame, config)
    retained, known = retained_known(frame["days_followed"].to_numpy(), frame["churned"].to_numpy(),
                                     config.horizon_days)
    common = {"campaign_id": campaign_id, "horizon_days": config.horizon_days}
    randomized = pd.DataFrame({"user_id": frame["user_id"].to_numpy(), **common, "population": "randomized",
                               **{c: fit.effects[c].to_numpy() for c in ("effect", "lower_90", "upper_90",
                                                                         "p_churn_control", "p_churn_treated")},
                               "treated": frame["treated"].to_numpy(float),
                               "retained": np.where(known, retained, np.nan), "fold": fit.effects["fold"].to_numpy(),
                               "cross_fitted": True, "as_of": send_day, "fitted_on": fitted_on})
    evaluated = randomized[known]
    curves, summary = uplift_curves(policy_scores(evaluated), evaluated["treated"].to_numpy(),
                                    evaluated["retained"].to_numpy(), replicates=replicates, seed=config.seed,
                                    folds=evaluated["fold"].to_numpy())
    first = curves[curves["policy"] == curves["policy"].iloc[0]]
    overall = float(first["uplift_rate"].iloc[-1])
    random = first.assign(policy="random", qini=first["random_qini"], qini_lower_90=np.nan, qini_upper_90=np.nan,
                          cumulative_uplift=first["cumulative_uplift"].iloc[-1] * first["share_targeted"],
                          uplift_rate=overall, uplift_rate_lower_90=np.nan, uplift_rate_upper_90=np.nan)
    curves = pd.concat([curves, random], ignore_index=True).assign(**common, fitted_on=fitted_on)
    summary = pd.concat([summary, pd.DataFrame([{"policy": "random", "users": len(evaluated), "qini_coefficient": 0.0,
                                                 "auuc_over_random": 0.0}])], ignore_index=True).assign(
        **common, fitted_on=fitted_on)
    info = {"randomized_users": len(experiment), "usable_users": len(usable), "modelled_users": len(frame),
            "unknown_at_send": len(usable) - len(frame), "evaluated_users": int(known.sum()),
            "censored_before_horizon": int((~known).sum()), "fitted_users": fit.model.fitted_users,
            "fit_sampled": fit.sampled, "send_day": str(send_day.date()),
            "model_columns": ", ".join(fit.model.columns)}
    return CampaignFit(fit.model, randomized[EFFECT_COLUMNS], curves, summary, info, fitted_on)


def score_active(campaign_id: str, model: UpliftModel, active: pd.DataFrame, config: UpliftConfig,
                 fitted_on: pd.Timestamp | None = None) -> pd.DataFrame:
    """The active users' effects today (``active``: their covariates as of today) from a campaign's model."""
    scored = score(model, active, config)
    today = pd.Timestamp(active["as_of"].max()) if "as_of" in active and len(active) else pd.NaT
    return pd.DataFrame({"user_id": active["user_id"].to_numpy(), "campaign_id": campaign_id,
                         "population": "active", "horizon_days": config.horizon_days,
                         **{c: scored[c].to_numpy() for c in scored.columns}, "treated": np.nan,
                         "retained": np.nan, "fold": -1, "cross_fitted": False, "as_of": today,
                         "fitted_on": pd.Timestamp(fitted_on) if fitted_on is not None else pd.NaT})[EFFECT_COLUMNS]


def with_active(fit: CampaignFit, active: pd.DataFrame, config: UpliftConfig) -> CampaignEffects:
    """A campaign's fit (new or stored) with today's active users scored by its model."""
    current = score_active(str(fit.curves["campaign_id"].iloc[0]), fit.model, active, config, fit.fitted_on)
    return CampaignEffects(pd.concat([fit.randomized, current], ignore_index=True)[EFFECT_COLUMNS], fit.curves,
                           fit.summary, {**fit.info, "active_users_scored": len(current)}, fit)


def stored_fit(stored: dict) -> CampaignFit:
    """A fit back from its tables (``simulation.store.stored_uplift_fits``' entry for one campaign)."""
    info = json.loads(stored["info_json"])
    return CampaignFit(model_from_json(stored["model_json"]), stored["randomized"][EFFECT_COLUMNS],
                       stored["curves"], stored["summary"], info, pd.Timestamp(stored["fitted_on"]))


REUSED_UNCHANGED = "reused: inputs unchanged"
REUSED_CADENCE = "reused: within the refit cadence"
FITTED = "fitted"


def reuse_mode(stored: dict | None, fingerprint: str, as_of: pd.Timestamp, refit_every_days: int) -> str | None:
    """How a campaign's stored fit may serve as of ``as_of``: unchanged inputs (the same fit a refit would give),
    within the refit cadence (a fit fewer than ``refit_every_days`` days old), or None (refit). A fit made after
    ``as_of`` (a backfill of an earlier day) never serves: no look-ahead."""
    if stored is None or pd.isna(stored["fitted_on"]) or pd.Timestamp(stored["fitted_on"]) > as_of:
        return None
    if stored["inputs_fingerprint"] == fingerprint:
        return REUSED_UNCHANGED
    if (as_of - pd.Timestamp(stored["fitted_on"])).days < refit_every_days:
        return REUSED_CADENCE
    return None


def campaign_user_effects(campaign_id: str, experiment: pd.DataFrame, at_send: pd.DataFrame,
                          active: pd.DataFrame, config: UpliftConfig, replicates: int = 200,
                          fitted_on: pd.Timestamp | None = None) -> CampaignEffects:
    """One randomized campaign: ``experiment`` its rows of marts.fct_campaign_experiment_assignments,
    ``at_send`` every user's covariates as of the send day, ``active`` the active users' covariates today (scored
    by the model fitted on all randomized users, or its bounded sample)."""
    return with_active(fit_campaign(campaign_id, experiment, at_send, config, fitted_on, replicates), active, config)


def model_to_json(model: UpliftModel) -> str:
    """A fitted model as JSON (stored beside its effects, so a later day can score with it)."""
    return json.dumps({"columns": model.columns, "means": model.means.tolist(), "sds": model.sds.tolist(),
                       "params": model.params.tolist(), "covariance": model.covariance.tolist(),
                       "baseline_at_horizon": model.baseline_at_horizon, "horizon_days": model.horizon_days,
                       "fitted_users": model.fitted_users})


def model_from_json(text: str) -> UpliftModel:
    d = json.loads(text)
    return UpliftModel(list(d["columns"]), np.asarray(d["means"], float), np.asarray(d["sds"], float),
                       np.asarray(d["params"], float), np.asarray(d["covariance"], float),
                       float(d["baseline_at_horizon"]), int(d["horizon_days"]), int(d["fitted_users"]))
