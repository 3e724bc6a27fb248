"""Synthetic user histories for the churn layer's tests: users with a churn hazard that engagement lowers and
support trouble raises, subscription users who cancel and activity-only users who lapse (and sometimes return),
rows that land late. Times are day numbers, as ``dagster_twins.churn.landmarks.History`` holds them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dagster_twins.churn.landmarks import History, campaign_known_days

START = 20_000  # a day number (2024-10-04)


def synthetic_history(seed: int, users: int = 300, days: int = 120, late_share: float = 0.1,
                      subscription_share: float = 0.5) -> History:
    rng = np.random.default_rng(seed)
    daily, subs, tickets, sends, people = [], [], [], [], []
    for u in range(users):
        user = f"u{u:05d}"
        signup = START + rng.uniform(-60, days - 10)
        rate = rng.gamma(2.0, 0.4)
        trouble = rng.gamma(1.0, 0.03)
        subscriber = rng.random() < subscription_share
        treated = rng.random() < 0.5
        people.append((user, signup, np.floor(max(signup, START)), "basic", rng.choice(["ads", "organic"])))
        if subscriber:
            subs.append((user, signup, np.floor(max(signup, START)), "started", "basic"))
        last_ticket = -1e9
        churned = False
        gone_until = -1.0
        for day in range(int(np.floor(signup)), START + days):
            if day < START:
                continue
            if rng.random() < trouble:
                opened = day + rng.random()
                tickets.append((user, opened, opened + rng.uniform(0.1, 5) if rng.random() < 0.8 else np.nan,
                                day + (rng.integers(1, 4) if rng.random() < late_share else 0)))
                last_ticket = day
            if day == START + days // 3 and rng.random() < 0.7:
                sends.append((user, "retention", "treatment" if treated else "control", day + 0.4, day))
            if churned:
                continue
            hazard = 0.01 * np.exp(-0.8 * np.log(rate) + 0.9 * (day - last_ticket <= 14))
            if rng.random() < 1 - np.exp(-hazard):
                if subscriber:
                    subs.append((user, day + rng.random(), day, "cancelled", "basic"))
                    churned = True
                    continue
                gone_until = day + rng.integers(20, 80)  # activity-only users go quiet, some come back
            if day < gone_until:
                continue
            n = rng.poisson(rate)
            if n:
                landing = day + (rng.integers(1, 4) if rng.random() < late_share else 0)
                daily.append((user, day, landing, n, n, int(rng.random() < 0.1), 20.0 * (rng.random() < 0.1),
                              rng.poisson(0.5), rng.poisson(0.1)))
    daily = pd.DataFrame(daily, columns=["user_id", "day", "landing_day", "events", "initiated", "purchases", "spend",
                                         "recs_shown", "recs_clicked"]).astype({"day": float, "landing_day": float})
    campaigns = pd.DataFrame(sends, columns=["user_id", "campaign_id", "campaign_group", "sent", "landing_day"])
    return History(
        daily=daily,
        subscriptions=pd.DataFrame(subs, columns=["user_id", "at", "landing_day", "action", "plan"]),
        tickets=pd.DataFrame(tickets, columns=["user_id", "opened", "closed", "landing_day"]).astype(
            {"landing_day": float}),
        campaigns=campaigns,
        campaign_known=campaign_known_days(campaigns),
        users=pd.DataFrame(people, columns=["user_id", "signup", "landing_day", "plan", "acquisition_channel"]),
    )
