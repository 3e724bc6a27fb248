"""The best any churn model can do on the demo: each user's true probability of churning within h days of a
day, from the planted hazard. For reports and tests only; no model reads it.

The demo's daily hazard is h0 * exp(b_eng * z + b_trouble * [a ticket opened in the last 14 days] + log(HR) *
[treated, from the campaign's send]) (``demo.people.Hazard``). Given what is known on day C (the user's planted
engagement and trouble rate, their last ticket, their campaign group), the future is random only through new
tickets, which open each day with probability trouble_rate / 30 before that day's churn draw. So the true
probability is exact by dynamic programming over "days since the last ticket" (0 .. window, then "none recent").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def true_churn_probability(truth: pd.DataFrame, planted: dict, last_ticket_day: np.ndarray, cutoff_day: int,
                           horizons: Sequence[int]) -> np.ndarray:
    """P(churn on days cutoff_day .. cutoff_day + h - 1 | alive at cutoff_day) per user (rows of ``truth``) and
    horizon. Days are day numbers (days since 1970-01-01); ``last_ticket_day`` is NaN where the user never had one."""
    window = int(planted["trouble_window_days"])
    n = len(truth)
    log_base = np.log(planted["h0"]) + truth["risk_score"].to_numpy(float)
    campaign_day = int(np.floor((pd.Timestamp(planted["campaign_sent_at"]).tz_convert(None)
                                 - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)))
    treated = (truth["campaign_group"] == "treatment").to_numpy()
    # Each user's planted ratio (heterogeneous since issue 19); older truth files carry one ratio for everyone.
    log_ratio = np.log(truth["campaign_hazard_ratio"].to_numpy(float) if "campaign_hazard_ratio" in truth
                       else np.full(n, planted["campaign_hazard_ratio"]))
    q = np.clip(truth["trouble_rate"].to_numpy(float) / 30.0, 0.0, 1.0)
    states = window + 2  # 0 .. window days since a ticket, window + 1: none within the window
    since = cutoff_day - 1 - np.asarray(last_ticket_day, dtype=float)  # days since the last ticket, yesterday
    start = np.where(np.isfinite(since), np.clip(since, 0, window + 1), window + 1).astype(int)
    mass = np.zeros((n, states))
    mass[np.arange(n), start] = 1.0  # P(alive and s days since the last ticket) at the end of each day
    out = np.empty((n, len(horizons)))
    horizon_set = {int(h): j for j, h in enumerate(horizons)}
    for step in range(1, max(horizons) + 1):
        day = cutoff_day + step - 1
        aged = np.zeros_like(mass)
        aged[:, 1:window + 1] = mass[:, 0:window]
        aged[:, window + 1] = mass[:, window] + mass[:, window + 1]
        alive = aged.sum(axis=1)
        today = np.zeros_like(aged)
        today[:, 0] = q * alive  # a ticket today resets the clock
        today += aged * (1 - q)[:, None]
        recent = np.zeros(states)
        recent[: window + 1] = planted["b_trouble"]
        log_h = log_base[:, None] + recent[None, :] + (log_ratio * (treated & (day >= campaign_day)))[:, None]
        mass = today * np.exp(-np.exp(log_h))
        if step in horizon_set:
            out[:, horizon_set[step]] = 1.0 - mass.sum(axis=1)
    return out
