"""Purchase sufficient statistics per user, folded a day at a time, and the day's scoring, with no Dagster.

The law: a user's purchase history enters the model only through ``(x, t_x, T)`` and their spend through
``(spend_n, spend_sum)``, and these fold: the state as of day D plus the purchases that landed after D is the state
a full recompute would give, so a daily run reads only the new day (a property test holds it). The state keeps
``purchase_days`` (days with a purchase after the birth day), ``last_purchase_day``, ``spend_n`` (purchases with a
value) and ``spend_sum``; the birth is the first day the user is known (sign-up, or first event: on data of
transactions only that is the first purchase, whose day is not counted, as in the Pareto/NBD literature).

A late purchase on a day already counted is recognized when it is the user's last purchase day; on an older day it
would count that day twice (documented in docs/purchases.md; rare: a late row for a day the user bought again
after).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from dagster_twins.twins.purchases import (
    GammaGamma,
    ParetoNBD,
    Population,
    fit_gamma_gamma,
    fit_pareto_nbd,
    score,
)

STATE_COLUMNS = ["user_id", "birth_day", "purchase_days", "last_purchase_day", "spend_n", "spend_sum"]
EVIDENCE_COLUMNS = ["user_id", "day", "purchases", "spend_n", "spend_sum"]


def empty_state() -> pd.DataFrame:
    return pd.DataFrame({"user_id": pd.Series(dtype=object), "birth_day": pd.Series(dtype="datetime64[ns]"),
                         "purchase_days": pd.Series(dtype=float),
                         "last_purchase_day": pd.Series(dtype="datetime64[ns]"),
                         "spend_n": pd.Series(dtype=float), "spend_sum": pd.Series(dtype=float)})


def fold(base: pd.DataFrame, evidence: pd.DataFrame, users: pd.DataFrame) -> pd.DataFrame:
    """The state after ``evidence`` (a row per user and day: purchases, spend_n, spend_sum) is added to ``base``,
    for every user in ``users`` (user_id, first_day: the birth)."""
    births = users[["user_id", "first_day"]].rename(columns={"first_day": "birth_day"})
    births["birth_day"] = pd.to_datetime(births["birth_day"]).astype("datetime64[ns]")
    out = births.merge(base.drop(columns="birth_day"), on="user_id", how="left")
    for column in ("purchase_days", "spend_n", "spend_sum"):
        out[column] = out[column].fillna(0.0).astype(float)
    out["last_purchase_day"] = pd.to_datetime(out["last_purchase_day"]).astype("datetime64[ns]")
    if not len(evidence):
        return out[STATE_COLUMNS]
    ev = evidence.merge(out[["user_id", "birth_day", "last_purchase_day"]], on="user_id", how="inner")
    ev["day"] = pd.to_datetime(ev["day"]).astype("datetime64[ns]")
    spend = ev.groupby("user_id")[["spend_n", "spend_sum"]].sum()
    counted = ev[(ev["purchases"] > 0) & (ev["day"] > ev["birth_day"])
                 & ~(ev["day"] == ev["last_purchase_day"])]
    days = counted.groupby("user_id")["day"].agg(["nunique", "max"])
    index = pd.Index(out["user_id"])
    out["spend_n"] += spend["spend_n"].reindex(index).fillna(0).to_numpy(float)
    out["spend_sum"] += spend["spend_sum"].reindex(index).fillna(0).to_numpy(float)
    out["purchase_days"] += days["nunique"].reindex(index).fillna(0).to_numpy(float)
    latest = pd.Series(days["max"].reindex(index).to_numpy(), index=out.index).astype("datetime64[ns]")
    out["last_purchase_day"] = pd.concat([out["last_purchase_day"], latest], axis=1).max(axis=1)
    return out[STATE_COLUMNS]


def statistics(state: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """The model's view of each user as of ``as_of``: x, t_x, T in days from the birth, spend_n and spend_mean."""
    birth = pd.to_datetime(state["birth_day"])
    end = pd.Timestamp(as_of)
    T = np.maximum((end - birth).dt.days.to_numpy(float), 0.0)
    t_x = (pd.to_datetime(state["last_purchase_day"]) - birth).dt.days.to_numpy(float)
    t_x = np.clip(np.nan_to_num(t_x, nan=0.0), 0.0, T)
    n = state["spend_n"].to_numpy(float)
    return pd.DataFrame({"user_id": state["user_id"].to_numpy(), "x": state["purchase_days"].to_numpy(float),
                         "t_x": t_x, "T": T, "spend_n": n,
                         "spend_mean": np.where(n > 0, state["spend_sum"].to_numpy(float) / np.maximum(n, 1), np.nan)})


def fit_sample(stats: pd.DataFrame, max_users: int) -> pd.DataFrame:
    """A fixed sample of at most ``max_users`` (by a hash of the user id, so the same users every refit)."""
    if len(stats) <= max_users:
        return stats
    keys = pd.util.hash_pandas_object(stats["user_id"], index=False).to_numpy()
    return stats.iloc[np.sort(np.argsort(keys, kind="stable")[:max_users])]


def fit_population(stats: pd.DataFrame, max_users: int, start: Population | None = None) -> Population:
    """The Pareto/NBD and Gamma-Gamma fits on a sample of the users (users observed for at least a day)."""
    sample = fit_sample(stats[stats["T"] > 0], max_users)
    if len(sample) < 10 or sample["x"].sum() == 0:
        raise ValueError(f"the purchase model needs purchases to learn from: {len(sample)} users observed for a day "
                         f"or more, {int(sample['x'].sum())} repeat purchase days among them")
    process = fit_pareto_nbd(sample["x"], sample["t_x"], sample["T"], start=start.process if start else None)
    valued = sample[sample["spend_n"] > 0]
    spend = fit_gamma_gamma(valued["spend_n"], valued["spend_mean"]) if len(valued) >= 2 else GammaGamma(1.0, 2.0, 0.0)
    return Population(process, spend)


def daily_rate(yearly: float) -> float:
    """A yearly discount rate as a continuous daily one."""
    return float(np.log1p(yearly) / 365.0)


def user_purchases(pop: Population, stats: pd.DataFrame, horizons: tuple[int, ...], yearly_discount: float,
                   as_of: date) -> pd.DataFrame:
    """``twins.user_purchases``: a row per user with their statistics and every purchase belief."""
    scored = score(pop, stats, horizons, daily_rate(yearly_discount))
    frame = pd.concat([stats.rename(columns={"x": "repeat_purchase_days", "t_x": "days_to_last_purchase",
                                             "T": "days_observed", "spend_n": "valued_purchases",
                                             "spend_mean": "mean_purchase_value"}), scored], axis=1)
    frame["as_of"] = pd.Timestamp(as_of)
    return frame


@dataclass(frozen=True)
class StoredFit:
    population: Population
    fitted_on: date
    users: int

    def row(self) -> dict:
        return {"fitted_on": pd.Timestamp(self.fitted_on), "model": "pareto_nbd+gamma_gamma", "users": self.users,
                **self.population.process.as_dict(), **self.population.spend.as_dict()}

    @classmethod
    def from_row(cls, row: dict) -> StoredFit:
        process = ParetoNBD(*(float(row[k]) for k in ("r", "alpha", "s", "beta")))
        spend = GammaGamma(*(float(row[k]) for k in ("p", "q", "gamma")))
        return cls(Population(process, spend), pd.Timestamp(row["fitted_on"]).date(), int(row["users"]))
