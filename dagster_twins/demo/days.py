"""The day-by-day simulation: who is active, what they do, who opens tickets, who churns.

Vectorized over users; one loop iteration per day. Rows are kept as integer codes (user index, epoch
seconds, category indices) and only turned into strings when the landing files are written.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from dagster_twins.demo.people import Hazard, Population, sample_cumulative
from dagster_twins.demo.vocabulary import EVENT_TYPE_PROBS, EVENT_TYPES, TICKET_CATEGORIES, Vocabulary

DAY = 86_400
SEARCH = EVENT_TYPES.index("search")
PURCHASE = EVENT_TYPES.index("purchase")
CLICK = EVENT_TYPES.index("click")
EMAIL = 3  # index of "email" in CHANNELS
RETENTION_CAMPAIGN = "retention_q"
DIGEST_CAMPAIGN = "weekly_digest"
PLACEBO_CAMPAIGN = "tips_placebo"  # randomized like the retention campaign, with no effect on churn at all
PLACEBO_DELAY_DAYS = 14  # sent this many days after the retention campaign


@dataclass
class Simulated:
    """Per source, columns of codes; plus the per-user outcomes for the truth file."""

    rows: dict[str, dict[str, list[np.ndarray]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    churned_s: np.ndarray | None = None  # epoch seconds of churn, -1 if none
    campaign_group: np.ndarray | None = None  # 0 none, 1 treatment, 2 control
    campaign_sent_s: int = 0
    campaign_ratio: np.ndarray | None = None  # the retention campaign's planted hazard ratio per user (1: not sent)
    placebo_group: np.ndarray | None = None  # the placebo campaign's group: 0 none, 1 treatment, 2 control

    def add(self, source: str, **columns: np.ndarray) -> None:
        for name, values in columns.items():
            self.rows[source][name].append(np.asarray(values))

    def columns(self, source: str) -> dict[str, np.ndarray]:
        if not self.rows.get(source):  # nothing of this source happened (a tiny population): no rows
            return {name: np.empty(0, dtype=dtype) for name, dtype in CODE_COLUMNS[source].items()}
        return {name: parts[0] if len(parts) == 1 else np.concatenate(parts)
                for name, parts in self.rows[source].items()}


# The code columns of every source, as ``simulate`` adds them (what a source without rows has).
_I64, _I8, _I16 = np.int64, np.int8, np.int16
CODE_COLUMNS: dict[str, dict[str, type]] = {
    "users": {"user": _I64, "t": _I64},
    "events": {"seq": _I64, "user": _I64, "t": _I64, "etype": _I8, "topic": _I16, "channel": _I8, "fmt": _I8,
               "value": np.float64, "goal": _I16, "pick": np.float64},
    "conversations": {"user": _I64, "t": _I64, "agent": np.bool_, "topic": _I16, "goal": _I16, "pick": np.float64},
    "recommendations": {"user": _I64, "t": _I64, "topic": _I16, "response": _I8, "responded": _I64, "fmt": _I8},
    "support_tickets": {"user": _I64, "t": _I64, "category": _I64, "closed": _I64, "satisfaction": np.float64},
    "subscriptions": {"user": _I64, "t": _I64, "action": _I8, "pro": np.bool_},
    "campaigns": {"user": _I64, "t": _I64, "campaign": _I8, "group": _I8, "topic": _I64},
}


def _text_codes(rng: np.random.Generator, users: np.ndarray, pop: Population,
                vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """Goal and intent-phrase choice for search/chat text: the user's own goal 60% of the time."""
    own = rng.random(len(users)) < 0.6
    goal = np.where(own, pop.goal[users], rng.choice(len(vocab.goals), len(users), p=np.array(vocab.goal_probs)))
    return goal, rng.random(len(users))  # the uniform picks a phrase/keyword within goal/topic at write time


def simulate(rng: np.random.Generator, pop: Population, n_days: int, start_s: int, vocab: Vocabulary,
             hazard: Hazard) -> Simulated:
    sim = Simulated()
    n = pop.n
    churned_s = np.full(n, -1, dtype=np.int64)
    last_ticket_day = np.full(n, -10_000)
    group = np.zeros(n, dtype=np.int8)
    campaign_day = n_days // 3
    ratio = np.ones(n)
    placebo = np.zeros(n, dtype=np.int8)
    # The placebo's draws come from their own stream, so the rest of the demo draws what it drew before it.
    aux = rng.spawn(1)[0]
    pro = pop.plan_pro.copy()
    # The first renewal inside the window (history before the window is not simulated).
    cycles = np.maximum(1, -(-(start_s - pop.signup_s) // (30 * DAY)))
    next_renewal = pop.signup_s + cycles * 30 * DAY
    event_seq = 0

    # Subscriptions start at sign-up (before the window for existing users).
    sim.add("subscriptions", user=np.arange(n), t=pop.signup_s, action=np.zeros(n, dtype=np.int8), pro=pro.copy())
    sim.add("users", user=np.arange(n), t=pop.signup_s)

    for d in range(n_days):
        day_s = start_s + d * DAY
        alive = (pop.signup_day <= d) & (churned_s < 0)
        idx = np.flatnonzero(alive)
        due = idx[next_renewal[idx] < day_s + DAY]
        if len(due):
            sim.add("subscriptions", user=due, t=next_renewal[due], action=np.full(len(due), 1, dtype=np.int8),
                    pro=pro[due])
            next_renewal[due] += 30 * DAY
        # Plan changes.
        change = idx[rng.random(len(idx)) < 0.002]
        if len(change):
            pro[change] = ~pro[change]
            sim.add("subscriptions", user=change, t=day_s + rng.integers(0, DAY, len(change)),
                    action=np.where(pro[change], 2, 3).astype(np.int8), pro=pro[change])

        # Support tickets (the retention campaign's planted ratio reads the tickets before its send day).
        tickets_before_today = last_ticket_day.copy() if d == campaign_day else last_ticket_day
        opened = idx[rng.random(len(idx)) < pop.trouble_rate[idx] / 30.0]
        if len(opened):
            t_open = day_s + rng.integers(0, DAY, len(opened))
            still_open = rng.random(len(opened)) < 0.1
            sat = np.clip(np.round(4.3 - 1.2 * np.log1p(pop.trouble_rate[opened]) + rng.normal(0, 0.8, len(opened))),
                          1, 5)
            sim.add("support_tickets", user=opened, t=t_open,
                    category=rng.integers(0, len(TICKET_CATEGORIES), len(opened)),
                    closed=np.where(still_open, -1, t_open + rng.integers(3600, 5 * DAY, len(opened))),
                    satisfaction=np.where(still_open, np.nan, sat))
            last_ticket_day[opened] = d

        # Randomized retention campaign.
        if d == campaign_day:
            eligible = idx[(d - pop.signup_day[idx]) >= 14]
            treated = rng.random(len(eligible)) < 0.5
            group[eligible] = np.where(treated, 1, 2)
            ratio[eligible] = hazard.campaign_ratio(d - tickets_before_today[eligible])
            sim.campaign_sent_s = day_s + 10 * 3600
            sim.add("campaigns", user=eligible, t=np.full(len(eligible), sim.campaign_sent_s),
                    campaign=np.zeros(len(eligible), dtype=np.int8), group=np.where(treated, 1, 2).astype(np.int8),
                    topic=rng.integers(0, len(vocab.topics), len(eligible)))
            responders = eligible[treated & (rng.random(len(eligible)) < pop.campaign_response[eligible])]
            event_seq = _campaign_clicks(sim, rng, responders, sim.campaign_sent_s, event_seq, pop)
        if d == campaign_day + PLACEBO_DELAY_DAYS:
            eligible = idx[(d - pop.signup_day[idx]) >= 14]
            treated = aux.random(len(eligible)) < 0.5
            placebo[eligible] = np.where(treated, 1, 2)
            sent = day_s + 9 * 3600
            sim.add("campaigns", user=eligible, t=np.full(len(eligible), sent),
                    campaign=np.full(len(eligible), 2, dtype=np.int8), group=np.where(treated, 1, 2).astype(np.int8),
                    topic=aux.integers(0, len(vocab.topics), len(eligible)))
            responders = eligible[treated & (aux.random(len(eligible)) < pop.campaign_response[eligible])]
            event_seq = _campaign_clicks(sim, aux, responders, sent, event_seq, pop)
        # Weekly newsletter (not randomized) so campaign responsiveness has evidence.
        if d % 7 == 3:
            digest = idx[rng.random(len(idx)) < 0.3]
            sent = day_s + 8 * 3600
            sim.add("campaigns", user=digest, t=np.full(len(digest), sent),
                    campaign=np.ones(len(digest), dtype=np.int8),
                    group=np.ones(len(digest), dtype=np.int8), topic=sample_cumulative(rng, pop.cum_interest[digest]))
            responders = digest[rng.random(len(digest)) < pop.campaign_response[digest]]
            event_seq = _campaign_clicks(sim, rng, responders, sent, event_seq, pop)

        # Churn today: the user does nothing more from a random moment of the day.
        log_h = np.log(hazard.h0) + hazard.b_eng * pop.z_engagement[idx]
        log_h += hazard.b_trouble * ((d - last_ticket_day[idx]) <= hazard.trouble_window_days)
        log_h += np.log(ratio[idx]) * ((group[idx] == 1) & (d >= campaign_day))
        churn = rng.random(len(idx)) < -np.expm1(-np.exp(log_h))
        leaving = idx[churn]
        churned_s[leaving] = day_s + rng.integers(0, DAY, len(leaving))
        sim.add("subscriptions", user=leaving, t=churned_s[leaving], action=np.full(len(leaving), 4, dtype=np.int8),
                pro=pro[leaving])
        active = idx[~churn]

        # Sessions and events.
        sessions = rng.poisson(pop.activity_rate[active])
        session_user = np.repeat(active, sessions)
        if len(session_user) == 0:
            continue
        # A session starts after sign-up on the sign-up day.
        session_start = day_s + rng.integers(0, DAY - 1800, len(session_user))
        session_start = np.maximum(session_start, pop.signup_s[session_user])
        session_channel = sample_cumulative(rng, pop.cum_session_channel[session_user])  # email is for campaigns
        per_session = 1 + rng.poisson(2.5, len(session_user))
        ev_session = np.repeat(np.arange(len(session_user)), per_session)
        users = session_user[ev_session]
        m = len(users)
        etype = rng.choice(len(EVENT_TYPES), m, p=np.array(EVENT_TYPE_PROBS))
        topic = sample_cumulative(rng, pop.cum_interest[users])
        goal, pick = _text_codes(rng, users, pop, vocab)
        value = np.where(etype == PURCHASE, np.round(rng.lognormal(3.0, 0.6, m), 2), np.nan)
        sim.add("events", seq=np.arange(event_seq, event_seq + m), user=users,
                t=session_start[ev_session] + rng.integers(0, 1800, m), etype=etype.astype(np.int8),
                topic=topic.astype(np.int16), channel=session_channel[ev_session].astype(np.int8),
                fmt=sample_cumulative(rng, pop.cum_format[users]).astype(np.int8), value=value,
                goal=np.where(etype == SEARCH, goal, -1).astype(np.int16), pick=pick)
        event_seq += m

        # Recommendations: shown in some sessions; clicked with exactly the user's propensity.
        n_recs = rng.binomial(2, 0.35, len(session_user))
        rec_user = np.repeat(session_user, n_recs)
        if len(rec_user):
            shown = np.repeat(session_start, n_recs) + rng.integers(0, 1800, len(rec_user))
            from_interest = rng.random(len(rec_user)) < 0.7
            rec_topic = np.where(from_interest, sample_cumulative(rng, pop.cum_interest[rec_user]),
                                 rng.integers(0, len(vocab.topics), len(rec_user)))
            clicked = rng.random(len(rec_user)) < pop.click_propensity[rec_user]
            response = np.where(clicked, 0, np.where(rng.random(len(rec_user)) < 0.4, 1, 2)).astype(np.int8)
            sim.add("recommendations", user=rec_user, t=shown, topic=rec_topic.astype(np.int16), response=response,
                    responded=np.where(response < 2, shown + rng.integers(2, 600, len(rec_user)), -1),
                    fmt=sample_cumulative(rng, pop.cum_format[rec_user]).astype(np.int8))

        # Chat: more likely on days with an open problem.
        chat_p = 0.004 + 0.25 * (last_ticket_day[active] == d)
        chatting = active[rng.random(len(active)) < chat_p]
        if len(chatting):
            turns = rng.integers(1, 3, len(chatting))  # user/agent exchanges
            msg_user = np.repeat(chatting, 2 * turns)
            thread_start = np.repeat(day_s + rng.integers(0, DAY - 3600, len(chatting)), 2 * turns)
            order = np.concatenate([np.arange(2 * k) for k in turns])
            topic = sample_cumulative(rng, pop.cum_interest[msg_user])
            goal, pick = _text_codes(rng, msg_user, pop, vocab)
            sim.add("conversations", user=msg_user, t=thread_start + 45 * order, agent=(order % 2 == 1),
                    topic=topic.astype(np.int16), goal=goal.astype(np.int16), pick=pick)

    sim.churned_s = churned_s
    sim.campaign_group = group
    sim.campaign_ratio = ratio
    sim.placebo_group = placebo
    return sim


def _campaign_clicks(sim: Simulated, rng: np.random.Generator, users: np.ndarray, sent_s: int, seq: int,
                     pop: Population) -> int:
    if len(users) == 0:
        return seq
    m = len(users)
    sim.add("events", seq=np.arange(seq, seq + m), user=users, t=sent_s + rng.integers(60, DAY, m),
            etype=np.full(m, CLICK, dtype=np.int8),
            topic=sample_cumulative(rng, pop.cum_interest[users]).astype(np.int16),
            channel=np.full(m, EMAIL, dtype=np.int8), fmt=np.zeros(m, dtype=np.int8), value=np.full(m, np.nan),
            goal=np.full(m, -1, dtype=np.int16), pick=np.zeros(m))
    return seq + m


def drop_after_churn(sim: Simulated) -> None:
    """Nothing happens after a user churns (a click on yesterday's email included); the cancellation row
    itself stays. Each source ends up as one array per column (filtered part by part, so the rows are never
    held twice over)."""
    assert sim.churned_s is not None
    for source in list(sim.rows):
        parts = sim.rows[source]
        if source == "users" or not parts:
            continue
        keeps = []
        for i, (user, t) in enumerate(zip(parts["user"], parts["t"], strict=True)):
            churn_at = sim.churned_s[user]
            keep = (churn_at < 0) | (t < churn_at)
            if source == "subscriptions":
                keep |= parts["action"][i] == 4
            keeps.append(keep)
        kept: dict[str, list[np.ndarray]] = {}
        for name in list(parts):
            filtered = [values[keep] for values, keep in zip(parts.pop(name), keeps, strict=True)]
            kept[name] = [filtered[0] if len(filtered) == 1 else np.concatenate(filtered)]
            del filtered
        sim.rows[source] = kept


# Purchase days, as planted: a user buys on a day while subscribed unless none of the day's sessions' events is a
# purchase. Sessions ~ Poisson(activity_rate), events per session 1 + Poisson(2.5), each a purchase w.p. q, so
# P(no purchase on a day) = exp(-activity_rate * (1 - (1 - q) exp(-2.5 q))).
_PURCHASE_P = EVENT_TYPE_PROBS[PURCHASE]
AFTER_END_DAYS = (30, 90)


def purchase_day_probability(activity_rate: np.ndarray) -> np.ndarray:
    """The planted probability that a subscribed user buys on a given day."""
    return -np.expm1(-activity_rate * (1 - (1 - _PURCHASE_P) * np.exp(-2.5 * _PURCHASE_P)))


def purchase_days_after_end(rng: np.random.Generator, pop: Population, sim: Simulated, hazard: Hazard,
                            n_days: int) -> dict[int, np.ndarray]:
    """Days with a purchase in the first h days after the demo's end (h in AFTER_END_DAYS), continuing the planted
    process: the daily churn hazard (engagement, campaign group, tickets drawn afresh from the end) and the
    purchase-day probability. From its own random stream, so the landing files do not change; truth only."""
    alive = sim.churned_s < 0
    treated = sim.campaign_group == 1
    p_buy = purchase_day_probability(pop.activity_rate)
    last_ticket = np.full(pop.n, -10_000)
    counts = np.zeros(pop.n)
    out = {}
    for d in range(max(AFTER_END_DAYS)):
        day = n_days + d
        opened = alive & (rng.random(pop.n) < pop.trouble_rate / 30.0)
        last_ticket[opened] = day
        log_h = (np.log(hazard.h0) + hazard.b_eng * pop.z_engagement
                 + hazard.b_trouble * ((day - last_ticket) <= hazard.trouble_window_days)
                 + np.log(hazard.campaign_hazard_ratio) * treated)
        alive &= ~(rng.random(pop.n) < -np.expm1(-np.exp(log_h)))
        counts += alive & (rng.random(pop.n) < p_buy)
        if d + 1 in AFTER_END_DAYS:
            out[d + 1] = counts.copy()
    return out
