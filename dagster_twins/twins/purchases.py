"""Purchases and value per user: a Pareto/NBD purchase process and a Gamma-Gamma spend model, as plain functions.

The law (Schmittlein, Morrison & Colombo 1987; Fader, Hardie & Lee 2005): while alive, a customer buys as a
Poisson process of rate lambda ~ Gamma(r, alpha) across customers, and dies after an exponential lifetime of rate
mu ~ Gamma(s, beta), independent of lambda. A customer is summarized by three numbers, counted in days from their
birth (the first day we know them): ``x`` purchase days after the birth day, ``t_x`` the day of the last of them
(0 if none) and ``T`` the days observed. Why Pareto/NBD and not BG/NBD: BG/NBD lets a customer die only just after
a purchase, so a customer who never bought again is certain to be alive, however long ago they were born; the
Pareto/NBD's dropout runs in continuous time, which is what "alive" means for a twin asked about any day.

Given the population (r, alpha, s, beta) and a customer's (x, t_x, T), the posterior is: alive with probability
``p_alive``, and if alive lambda ~ Gamma(r + x, alpha + T) and mu ~ Gamma(s, beta + T), independent. Every
quantity below is an expectation over that posterior, in closed form where one exists and by fixed quadrature
otherwise, so the whole population is scored in vectorized numpy.

Spend (Fader, Hardie & Lee 2005b): the values of a customer's purchases are Gamma(p, nu) with nu ~ Gamma(q, gamma)
across customers; the posterior mean of a purchase's value shrinks the customer's mean towards the population's
by their number of valued purchases.

Intervals are 90% predictive intervals of the purchase count, in closed form: dead (mass 1 - p_alive at 0) or
alive and buying a negative binomial count, NB(k, A / (A + e)), where e is the expected days alive within the
horizon (so the mean is exact; the spread of the death time inside the horizon is folded into e). The value's
interval is that count interval priced at the posterior mean spend and discounted like the mean; ``simulate``
draws the whole model (alive, lambda, mu, death, count, spend) and the tests hold the closed form against it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

_LEGENDRE = np.polynomial.legendre.leggauss(20)


@dataclass(frozen=True)
class ParetoNBD:
    r: float
    alpha: float
    s: float
    beta: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class GammaGamma:
    p: float
    q: float
    gamma: float

    @property
    def mean_spend(self) -> float:
        """The population's mean value of a purchase (infinite when q <= 1)."""
        return self.p * self.gamma / (self.q - 1) if self.q > 1 else float("inf")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _arrays(*columns) -> list[np.ndarray]:
    return [np.asarray(c, dtype=float) for c in columns]


def _log_a0(m: ParetoNBD, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """log of A_0 in Fader, Hardie & Lee's note (the dying-before-T part of the likelihood), -inf when t_x == T."""
    r, alpha, s, beta = m.r, m.alpha, m.s, m.beta
    big, b_second = (alpha, s + 1) if alpha >= beta else (beta, None)
    a1 = r + s + x
    b = np.full_like(x, s + 1) if b_second is not None else r + x
    c = a1 + 1
    diff = abs(alpha - beta)

    def term(t: np.ndarray) -> np.ndarray:
        return np.log(special.hyp2f1(a1, b, c, diff / (big + t))) - a1 * np.log(big + t)

    first, second = term(t_x), term(T)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = first + np.log1p(-np.exp(np.minimum(second - first, 0.0)))
    return np.where(t_x < T, out, -np.inf)


def _log_parts(m: ParetoNBD, x, t_x, T) -> tuple[np.ndarray, np.ndarray]:
    """(log of the alive-at-T term, log of the whole bracket) of the likelihood, without the Gamma constants."""
    x, t_x, T = _arrays(x, t_x, T)
    alive = -(m.r + x) * np.log(m.alpha + T) - m.s * np.log(m.beta + T)
    died = np.log(m.s / (m.r + m.s + x)) + _log_a0(m, x, t_x, T)
    return alive, np.logaddexp(alive, died)


def log_likelihood(m: ParetoNBD, x, t_x, T) -> np.ndarray:
    """Each customer's log-likelihood of (x, t_x, T)."""
    x = np.asarray(x, dtype=float)
    _, bracket = _log_parts(m, x, t_x, T)
    return (special.gammaln(m.r + x) - special.gammaln(m.r) + m.r * np.log(m.alpha) + m.s * np.log(m.beta)
            + bracket)


def p_alive(m: ParetoNBD, x, t_x, T) -> np.ndarray:
    """P(still alive at T | x, t_x, T)."""
    alive, bracket = _log_parts(m, x, t_x, T)
    return np.exp(alive - bracket)


def _posterior(m: ParetoNBD, x, T) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """If alive: lambda ~ Gamma(k, rate A), mu ~ Gamma(s, rate B)."""
    x, T = _arrays(x, T)
    return m.r + x, m.alpha + T, m.beta + T


def _mean_lifetime_within(s: float, B: np.ndarray, t: float) -> np.ndarray:
    """E[(1 - exp(-mu t)) / mu] for mu ~ Gamma(s, rate B): the expected days alive within the next t."""
    if abs(s - 1) < 1e-9:
        return B * np.log1p(t / B)
    return B / (s - 1) * -np.expm1(-(s - 1) * np.log1p(t / B))


def _alive(m: ParetoNBD, x, t_x, T, alive: np.ndarray | None) -> np.ndarray:
    return p_alive(m, x, t_x, T) if alive is None else alive


def expected_purchases(m: ParetoNBD, x, t_x, T, t: float, alive: np.ndarray | None = None) -> np.ndarray:
    """E[purchases in (T, T + t] | x, t_x, T] (``alive``: P(alive) when already known)."""
    k, A, B = _posterior(m, x, T)
    return _alive(m, x, t_x, T, alive) * k / A * _mean_lifetime_within(m.s, B, t)


def p_no_purchase_if_alive(m: ParetoNBD, x, T, t: float) -> np.ndarray:
    """P(no purchase in (T, T + t] | alive at T): surviving t without buying, plus dying at u < t before buying,
    E[exp(-lambda u)] and E[mu exp(-mu u)] in closed form and the integral over u by 20-point Gauss-Legendre
    (smooth and monotone in u: within 1e-9 of adaptive quadrature in the tests)."""
    k, A, B = _posterior(m, x, T)
    nodes, weights = _LEGENDRE
    u = (nodes + 1) * t / 2
    log_a, log_b = np.log(A)[:, None], np.log(B)[:, None]
    dies = np.exp((m.s + 1) * (log_b - np.log(B[:, None] + u)) + k[:, None] * (log_a - np.log(A[:, None] + u)))
    survives = np.exp(k * (np.log(A) - np.log(A + t)) + m.s * (np.log(B) - np.log(B + t)))
    return survives + m.s / B * (dies @ weights) * t / 2


def p_purchase_within(m: ParetoNBD, x, t_x, T, t: float) -> np.ndarray:
    """P(at least one purchase in (T, T + t] | x, t_x, T)."""
    return p_alive(m, x, t_x, T) * (1 - p_no_purchase_if_alive(m, x, T, t))


def purchase_interval(m: ParetoNBD, x, t_x, T, t: float, level: float = 0.9,
                      alive: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The central ``level`` predictive interval of the purchases in (T, T + t] (see the module's docstring)."""
    k, A, B = _posterior(m, x, T)
    alive = _alive(m, x, t_x, T, alive)
    p_nb = A / (A + _mean_lifetime_within(m.s, B, t))
    bounds = []
    for q in ((1 - level) / 2, (1 + level) / 2):
        inner = np.clip((q - (1 - alive)) / np.maximum(alive, 1e-300), 0.0, 1.0)
        count = stats.nbinom.ppf(inner, k, p_nb)
        bounds.append(np.where(q <= 1 - alive, 0.0, np.nan_to_num(count)))
    return bounds[0], bounds[1]


def median_days_to_next_purchase(m: ParetoNBD, x, T) -> np.ndarray:
    """If alive and buying on: the median wait for the next purchase. The wait is Exponential(lambda) with lambda
    from the posterior, so P(wait > w) = (A / (A + w))^k and the median is A (2^(1/k) - 1)."""
    k, A, _ = _posterior(m, x, T)
    return A * np.expm1(np.log(2) / k)


def expected_discounted_purchases(m: ParetoNBD, x, t_x, T, t: float, daily_rate: float,
                                  alive: np.ndarray | None = None) -> np.ndarray:
    """E[sum over purchases in (T, T + t] of exp(-delta u)] = p_alive E[lambda] int_0^t exp(-delta u) E[exp(-mu u)]
    du, with E[exp(-mu u)] = (B / (B + u))^s and the integral by 20-point Gauss-Legendre (any s > 0)."""
    k, A, B = _posterior(m, x, T)
    if daily_rate <= 0:
        within = _mean_lifetime_within(m.s, B, t)
    else:
        nodes, weights = _LEGENDRE
        u = (nodes + 1) * t / 2
        alive_at = np.exp(m.s * (np.log(B)[:, None] - np.log(B[:, None] + u)) - daily_rate * u)
        within = alive_at @ weights * t / 2
    return _alive(m, x, t_x, T, alive) * k / A * within


def fit_pareto_nbd(x, t_x, T, weights=None, start: ParetoNBD | None = None) -> ParetoNBD:
    """Maximum likelihood over (r, alpha, s, beta) on the log scale (Nelder-Mead then L-BFGS-B); rows with the
    same (x, t_x, T) are folded into one with a weight, so the cost follows the distinct histories."""
    x, t_x, T = _arrays(x, t_x, T)
    frame = pd.DataFrame({"x": x, "t_x": t_x, "T": T, "w": 1.0 if weights is None else np.asarray(weights, float)})
    rows = frame.groupby(["x", "t_x", "T"], as_index=False)["w"].sum()
    xs, txs, Ts, ws = (rows[c].to_numpy() for c in ("x", "t_x", "T", "w"))
    scale = max(float(np.average(Ts, weights=ws)), 1.0)

    def negative(theta: np.ndarray) -> float:
        r, alpha, s, beta = np.exp(theta)
        ll = log_likelihood(ParetoNBD(r, alpha * scale, s, beta * scale), xs, txs, Ts)
        value = -float(ws @ ll) / ws.sum()
        return value if np.isfinite(value) else 1e10

    guess = start or ParetoNBD(0.5, scale, 0.5, scale)
    theta0 = np.log([guess.r, guess.alpha / scale, guess.s, guess.beta / scale])
    coarse = optimize.minimize(negative, theta0, method="Nelder-Mead",
                               options={"xatol": 1e-4, "fatol": 1e-9, "maxiter": 2000})
    fine = optimize.minimize(negative, coarse.x, method="L-BFGS-B", bounds=[(-12, 12)] * 4)
    best = fine.x if fine.fun <= coarse.fun else coarse.x
    r, alpha, s, beta = np.exp(best)
    return ParetoNBD(float(r), float(alpha * scale), float(s), float(beta * scale))


def gamma_gamma_log_likelihood(m: GammaGamma, n, mean_value) -> np.ndarray:
    """Each customer's log-likelihood of the mean of their n valued purchases (n >= 1)."""
    n, z = _arrays(n, mean_value)
    px = m.p * n
    return (special.gammaln(px + m.q) - special.gammaln(px) - special.gammaln(m.q) + m.q * np.log(m.gamma)
            + (px - 1) * np.log(z) + px * np.log(n) - (px + m.q) * np.log(m.gamma + n * z))


def fit_gamma_gamma(n, mean_value) -> GammaGamma:
    """Maximum likelihood on customers with at least one valued purchase of positive mean."""
    n, z = _arrays(n, mean_value)
    keep = (n >= 1) & (z > 0) & np.isfinite(z)
    n, z = n[keep], z[keep]
    if len(n) < 2:
        raise ValueError("the spend model needs two customers with valued purchases at least")
    scale = float(np.mean(z))

    def negative(theta: np.ndarray) -> float:
        p, q, g = np.exp(theta)
        value = -float(np.mean(gamma_gamma_log_likelihood(GammaGamma(p, q, g * scale), n, z)))
        return value if np.isfinite(value) else 1e10

    coarse = optimize.minimize(negative, np.log([2.0, 3.0, 1.0]), method="Nelder-Mead",
                               options={"xatol": 1e-5, "fatol": 1e-10, "maxiter": 4000})
    p, q, g = np.exp(coarse.x)
    return GammaGamma(float(p), float(q), float(g * scale))


def expected_spend(m: GammaGamma, n, mean_value) -> np.ndarray:
    """Posterior mean value of a purchase: (p gamma + p n mean) / (p n + q - 1); the population's mean when n = 0."""
    n, z = _arrays(n, mean_value)
    z = np.where(n > 0, np.nan_to_num(z), 0.0)
    return (m.p * m.gamma + m.p * n * z) / (m.p * n + m.q - 1)


def _mean_discount(days: np.ndarray, daily_rate: float) -> np.ndarray:
    """The mean of exp(-delta u) for u uniform in (0, days); 1 when nothing is discounted."""
    if daily_rate <= 0:
        return np.ones_like(days)
    span = daily_rate * np.maximum(days, 1e-12)
    return np.where(days > 0, -np.expm1(-span) / span, 1.0)


@dataclass(frozen=True)
class Simulated:
    purchases: dict[int, tuple[np.ndarray, np.ndarray]]  # horizon -> (lower_90, upper_90) of the purchase count
    value: dict[int, tuple[np.ndarray, np.ndarray]]  # horizon -> (lower_90, upper_90) of the discounted value
    value_mean: dict[int, np.ndarray]  # horizon -> the simulated mean of the discounted value (a check)


def simulate(m: ParetoNBD, spend: GammaGamma, x, t_x, T, n_spend, mean_value, horizons: tuple[int, ...],
             daily_rate: float, draws: int = 200, seed: int = 0, chunk: int = 20_000) -> Simulated:
    """90% predictive intervals of the purchases and of the discounted value over each horizon, by simulation:
    alive ~ Bernoulli(p_alive); lambda, mu from their posteriors; death after Exponential(mu); purchases
    ~ Poisson(lambda x days alive within h), nested over the horizons; spend per purchase mean p / nu with nu ~
    Gamma(p n + q, gamma + n mean), the summed spend of N purchases Gamma(p N, nu); discounted by the mean
    discount over the days alive (the purchases' days are uniform in them)."""
    x, t_x, T, n_spend, mean_value = _arrays(x, t_x, T, n_spend, mean_value)
    horizons = tuple(sorted(horizons))
    rng = np.random.default_rng(seed)
    alive_p = p_alive(m, x, t_x, T)
    k, A, B = _posterior(m, x, T)
    total = np.where(n_spend > 0, n_spend * np.nan_to_num(mean_value), 0.0)
    nu_shape, nu_rate = spend.p * n_spend + spend.q, spend.gamma + total
    out_p = {h: (np.empty(len(x)), np.empty(len(x))) for h in horizons}
    out_v = {h: (np.empty(len(x)), np.empty(len(x))) for h in horizons}
    mean_v = {h: np.empty(len(x)) for h in horizons}
    for lo in range(0, len(x), chunk):
        part = slice(lo, lo + chunk)
        size = (min(chunk, len(x) - lo), draws)
        alive = rng.random(size) < alive_p[part, None]
        lam = rng.gamma(k[part, None], 1.0, size) / A[part, None]
        death = rng.exponential(1.0, size) * B[part, None] / rng.gamma(m.s, 1.0, size)
        nu = rng.gamma(nu_shape[part, None], 1.0, size) / nu_rate[part, None]
        count = np.zeros(size)
        days_before = np.zeros(size)
        for h in horizons:
            days = np.where(alive, np.minimum(death, h), 0.0)
            count = count + rng.poisson(lam * (days - days_before))
            days_before = days
            summed = rng.gamma(np.maximum(spend.p * count, 1e-12), 1.0) / nu * (count > 0)
            value = summed * _mean_discount(days, daily_rate)
            out_p[h][0][part], out_p[h][1][part] = np.quantile(count, [0.05, 0.95], axis=1, method="inverted_cdf")
            out_v[h][0][part], out_v[h][1][part] = np.quantile(value, [0.05, 0.95], axis=1)
            mean_v[h][part] = value.mean(axis=1)
    return Simulated(out_p, out_v, mean_v)


@dataclass(frozen=True)
class Population:
    """The population fit a day scores with: the purchase process, the spend model and the day they were fitted."""

    process: ParetoNBD
    spend: GammaGamma


def score(pop: Population, stats_frame: pd.DataFrame, horizons: tuple[int, ...], daily_rate: float) -> pd.DataFrame:
    """Every user's purchase beliefs from their sufficient statistics (columns ``x, t_x, T, spend_n, spend_mean``):
    P(alive), per horizon the expected purchases with their 90% interval, P(at least one purchase), the discounted
    value with its interval; the median days to the next purchase and the expected value of a purchase. The purchase
    process depends on (x, t_x, T) only, so it is computed once per distinct history (daily data repeats them a
    lot: every user born on the same day who never bought again) and spread back to the users."""
    histories = stats_frame[["x", "t_x", "T"]].to_numpy(float)
    unique, inverse = np.unique(histories, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    x, t_x, T = unique.T
    process = _process_beliefs(pop.process, x, t_x, T, horizons, daily_rate)
    spend = expected_spend(pop.spend, stats_frame["spend_n"], stats_frame["spend_mean"])
    out = {"p_alive": process["p_alive"][inverse]}
    for h in horizons:
        mean, low, high = (process[f"{name}_{h}"][inverse] for name in ("mean", "low", "high"))
        discounted = process[f"discounted_{h}"][inverse]
        ratio = np.divide(discounted, mean, out=np.ones_like(mean), where=mean > 0)
        out |= {f"expected_purchases_{h}d": mean, f"expected_purchases_{h}d_lower_90": low,
                f"expected_purchases_{h}d_upper_90": high, f"p_purchase_{h}d": process[f"any_{h}"][inverse],
                f"value_{h}d": discounted * spend, f"value_{h}d_lower_90": low * spend * ratio,
                f"value_{h}d_upper_90": high * spend * ratio}
    out["median_days_to_next_purchase"] = process["median_wait"][inverse]
    out["expected_spend_per_purchase"] = spend
    return pd.DataFrame(out, index=stats_frame.index)


def _process_beliefs(m: ParetoNBD, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, horizons: tuple[int, ...],
                     daily_rate: float) -> dict[str, np.ndarray]:
    """The purchase process's beliefs for distinct histories, P(alive) computed once."""
    alive = p_alive(m, x, t_x, T)
    out = {"p_alive": alive, "median_wait": median_days_to_next_purchase(m, x, T)}
    for h in horizons:
        out[f"mean_{h}"] = expected_purchases(m, x, t_x, T, h, alive=alive)
        out[f"low_{h}"], out[f"high_{h}"] = purchase_interval(m, x, t_x, T, h, alive=alive)
        out[f"any_{h}"] = alive * (1 - p_no_purchase_if_alive(m, x, T, h))
        out[f"discounted_{h}"] = expected_discounted_purchases(m, x, t_x, T, h, daily_rate, alive=alive)
    return out
