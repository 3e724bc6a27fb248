"""The scenario simulation: churn within a horizon for every user of a segment, with and without an
intervention, over draws of the churn model's parameters and of the intervention's effect.

Each draw is one plausible world: coefficients (and the baseline's level) from the fit's sampling distribution,
a hazard ratio from the effect's distribution. Within a draw each user's churn probability over the horizon is
computed exactly (no outcome sampling), so the spread over draws is the uncertainty about the model and the
effect, and the Monte Carlo error of a mean over draws is its standard deviation over sqrt(draws).
Users are processed in chunks so memory stays at chunk x draws, whatever the segment's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

INTERVAL = (0.05, 0.95)  # a 90% interval


class HazardModel(Protocol):
    """What the simulation needs of a fitted survival model (the churn layer's ``SurvivalModel`` is one): its
    coefficients with their sampling covariance, the covariates' centre, and a Cox baseline (or Weibull shape)."""

    kind: Literal["cox", "weibull"]
    coef: np.ndarray
    center: np.ndarray
    coef_se: np.ndarray | None
    param_cov: np.ndarray | None
    intercept: float
    rho: float
    events: int
    baseline_times: np.ndarray

    def baseline_at(self, t: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ParameterDraws:
    """Draws of a survival model's parameters: coefficients (draws x covariates) and, per draw, the Cox
    baseline's multiplier or the Weibull intercept and shape."""

    coef: np.ndarray
    baseline_multiplier: np.ndarray  # Cox: H0 scaled by this (1 = the fitted baseline)
    intercept: np.ndarray  # Weibull
    rho: np.ndarray  # Weibull

    @property
    def n(self) -> int:
        return len(self.coef)


def draw_parameters(model: HazardModel, rng: np.random.Generator, n: int) -> ParameterDraws:
    """Normal approximation to the fit's sampling distribution (the full covariance where stored, else the
    standard errors). The Cox baseline's level varies as a Poisson count of the fit's events would."""
    p = len(model.coef)
    if model.kind == "cox":
        mean = model.coef
        cov = model.param_cov if model.param_cov is not None else np.diag(_se(model) ** 2)
    else:
        mean = np.concatenate([model.coef, [model.intercept, np.log(model.rho)]])
        cov = model.param_cov if model.param_cov is not None else np.diag(np.concatenate([_se(model) ** 2, [0, 0]]))
    theta = rng.multivariate_normal(mean, cov, size=n, method="eigh")
    if model.kind == "cox":
        log_level_sd = 1.0 / np.sqrt(model.events) if model.events > 0 else 0.0
        return ParameterDraws(theta, np.exp(log_level_sd * rng.standard_normal(n)), np.zeros(n), np.ones(n))
    return ParameterDraws(theta[:, :p], np.ones(n), theta[:, p], np.exp(theta[:, p + 1]))


def _se(model: HazardModel) -> np.ndarray:
    return model.coef_se if model.coef_se is not None else np.zeros(len(model.coef))


def horizon_cumulative_hazard(model: HazardModel, params: ParameterDraws, x: np.ndarray, tenure: np.ndarray,
                              horizon: float) -> np.ndarray:
    """H(a + h | x) - H(a | x) per user (rows) and draw (columns): the hazard accumulated over the horizon by a
    user who has survived to tenure a."""
    z = x - model.center
    a = np.asarray(tenure, dtype=float)
    if model.kind == "cox":
        base = model.baseline_at(a + horizon) - model.baseline_at(a)
        return base[:, None] * params.baseline_multiplier[None, :] * np.exp(z @ params.coef.T)
    log_scale = params.intercept[None, :] + z @ params.coef.T
    rho = params.rho[None, :]
    later = np.exp(rho * (np.log(a + horizon)[:, None] - log_scale))
    now = np.exp(rho * (np.log(np.maximum(a, 1e-9))[:, None] - log_scale))
    return later - now


def churn_probability(cumulative_hazard: np.ndarray) -> np.ndarray:
    return -np.expm1(-cumulative_hazard)


@dataclass(frozen=True)
class SimulationOutcome:
    """Per draw: expected churners in the segment without and with the intervention (and with its placebo).
    Per user: mean churn probabilities over draws and a 90% interval of the user's difference."""

    users: int
    churners_baseline: np.ndarray  # (draws,)
    churners_scenario: np.ndarray
    churners_placebo: np.ndarray
    user_p_baseline: np.ndarray  # (users,)
    user_p_scenario: np.ndarray
    user_kept_lower: np.ndarray
    user_kept_upper: np.ndarray
    value_kept: np.ndarray | None = None  # (draws,): sum over users of churn reduction x the user's value

    @property
    def draws(self) -> int:
        return len(self.churners_baseline)

    def retention(self, churners: np.ndarray) -> np.ndarray:
        return 1.0 - churners / max(self.users, 1)

    def differences(self) -> tuple[np.ndarray, np.ndarray]:
        """Per draw: retention with the intervention minus without, and the same for the placebo."""
        baseline = self.retention(self.churners_baseline)
        return self.retention(self.churners_scenario) - baseline, self.retention(self.churners_placebo) - baseline


def simulate(model: HazardModel, params: ParameterDraws, x: np.ndarray, tenure: np.ndarray, horizon: float, *,
             hazard_ratio: np.ndarray | None = None, placebo_ratio: np.ndarray | None = None,
             x_scenario: np.ndarray | None = None, chunk_users: int = 5000,
             values: np.ndarray | None = None) -> SimulationOutcome:
    """Simulate a segment (``x``: its users' model columns, ``tenure``: days survived so far) over ``horizon``
    days. The intervention multiplies each user's hazard by ``hazard_ratio`` (one per draw), and/or moves the
    users' covariates to ``x_scenario``; the placebo multiplies it by ``placebo_ratio`` (the effect's own
    uncertainty around no effect), so an unbiased simulation must give it a difference near zero. ``values``
    (one per user, e.g. the twin's expected value over the horizon) adds up, per draw, the value kept: each user's
    reduction of churn probability times their value."""
    n, k = len(x), params.n
    base_sum, scen_sum, placebo_sum = np.zeros(k), np.zeros(k), np.zeros(k)
    p_base, p_scen = np.empty(n), np.empty(n)
    kept_lo, kept_hi = np.empty(n), np.empty(n)
    value_kept = np.zeros(k) if values is not None else None
    for start in range(0, n, chunk_users):
        rows = slice(start, min(start + chunk_users, n))
        hazard = horizon_cumulative_hazard(model, params, x[rows], tenure[rows], horizon)
        baseline = churn_probability(hazard)
        placebo = churn_probability(hazard * placebo_ratio[None, :]) if placebo_ratio is not None else baseline
        if x_scenario is not None:
            hazard = horizon_cumulative_hazard(model, params, x_scenario[rows], tenure[rows], horizon)
        scenario = churn_probability(hazard * hazard_ratio[None, :] if hazard_ratio is not None else hazard)
        del hazard
        base_sum += baseline.sum(axis=0)
        scen_sum += scenario.sum(axis=0)
        placebo_sum += placebo.sum(axis=0)
        p_base[rows], p_scen[rows] = baseline.mean(axis=1), scenario.mean(axis=1)
        kept_lo[rows], kept_hi[rows] = np.quantile(baseline - scenario, INTERVAL, axis=1)
        if value_kept is not None:
            value_kept += values[rows] @ (baseline - scenario)
    return SimulationOutcome(n, base_sum, scen_sum, placebo_sum, p_base, p_scen, kept_lo, kept_hi, value_kept)


def combine(outcomes: list[SimulationOutcome], draws: int) -> SimulationOutcome:
    """One outcome from the outcomes of disjoint buckets of a segment (simulated with the same draws)."""
    if not outcomes:
        zeros, empty = np.zeros(draws), np.empty(0)
        return SimulationOutcome(0, zeros, zeros, zeros, empty, empty, empty, empty)
    total = sum(o.users for o in outcomes)
    per_draw = [np.sum([getattr(o, f) for o in outcomes], axis=0)
                for f in ("churners_baseline", "churners_scenario", "churners_placebo")]
    per_user = [np.concatenate([getattr(o, f) for o in outcomes])
                for f in ("user_p_baseline", "user_p_scenario", "user_kept_lower", "user_kept_upper")]
    values = [o.value_kept for o in outcomes]
    value_kept = None if any(v is None for v in values) else np.sum(values, axis=0)
    return SimulationOutcome(total, *per_draw, *per_user, value_kept)


def summarize_outcome(outcome: SimulationOutcome) -> dict[str, float]:
    """Retention at the horizon without and with the intervention, their difference and the users kept, each as
    the mean over draws with a 90% interval; the Monte Carlo error of the mean difference; the placebo's
    difference (it must be near zero, its interval must cover zero)."""

    def mean_and_interval(name: str, values: np.ndarray) -> dict[str, float]:
        lo, hi = np.quantile(values, INTERVAL)
        return {name: float(values.mean()), f"{name}_lower_90": float(lo), f"{name}_upper_90": float(hi)}

    baseline = outcome.retention(outcome.churners_baseline)
    scenario = outcome.retention(outcome.churners_scenario)
    difference, placebo = outcome.differences()
    kept = outcome.churners_baseline - outcome.churners_scenario
    return {
        **mean_and_interval("baseline_retention", baseline),
        **mean_and_interval("scenario_retention", scenario),
        **mean_and_interval("retention_difference", difference),
        "retention_difference_mc_error": float(difference.std(ddof=1) / np.sqrt(len(difference)))
        if len(difference) > 1 else float("nan"),
        "probability_difference_positive": float((difference > 0).mean()),
        **mean_and_interval("expected_users_kept", kept),
        "users_kept_per_user_treated": float(kept.mean() / max(outcome.users, 1)),
        **mean_and_interval("placebo_difference", placebo),
        **(mean_and_interval("expected_value_kept", outcome.value_kept) if outcome.value_kept is not None else {}),
    }
