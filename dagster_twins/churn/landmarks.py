"""As-of landmark frames: every user's state and covariates on a landmark day from what was known that day,
and what happened next (churn of the active, return of the lapsed) from what is known on the as-of day.

A row of history is *known at* a moment L when it occurred before L and its landing day ended by L (a late
row is not known before it landed). Covariates on landmark L read only rows known at L; outcomes read only rows
known at the as-of day D. So a frame as of D is the same whatever arrives after D, which is what makes training
frames honest (each landmark's covariates are what a prediction on that day would have seen) and predictions
reproducible (tested: ``tests/test_churn_landmarks.py``).

Times are day numbers: days since 1970-01-01 (a date is an integer, a timestamp a float). A landmark is the start
of its day (midnight UTC).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

ACTIVE, LAPSED = "active", "lapsed"
EPOCH = pd.Timestamp("1970-01-01")


@dataclass(frozen=True)
class LandmarkSpec:
    """The churn definition and the windows covariates are measured over."""

    inactivity_days: int = 30  # a user without subscription rows has lapsed after this many days without activity
    window_days: int = 28  # recent behaviour is measured over this many days before the landmark
    half_life_days: float = 60.0  # the decayed activity rate (the twin's activity belief) forgets at this pace


DEFAULT_SPEC = LandmarkSpec()


@dataclass(frozen=True)
class History:
    """One set of users' raw history (a bucket, a sample or everyone), times as day numbers.

    - ``daily``: user_id, day, landing_day, events (product events), initiated (user-initiated interactions),
      purchases, spend, recs_shown, recs_clicked, tickets
    - ``subscriptions``: user_id, at, landing_day, action (started, renewed, upgraded, downgraded, cancelled), plan
    - ``tickets``: user_id, opened, closed (NaN while open), landing_day
    - ``campaigns``: user_id, campaign_id, campaign_group (treatment / control), sent, landing_day: sends of
      campaigns with a treatment and a control group
    - ``campaign_known``: campaign_id, treatment_known, control_known: the first day each group's sends were known,
      over the whole population (a campaign counts as randomized from the day both groups are known)
    - ``users``: user_id, signup (NaN when unknown), landing_day, plan, acquisition_channel
    """

    daily: pd.DataFrame
    subscriptions: pd.DataFrame
    tickets: pd.DataFrame
    campaigns: pd.DataFrame
    campaign_known: pd.DataFrame
    users: pd.DataFrame

    def user_ids(self) -> np.ndarray:
        ids = pd.concat([self.users["user_id"], self.daily["user_id"], self.subscriptions["user_id"]])
        return np.sort(ids.dropna().unique().astype(str))

    def known_until(self, day: float) -> History:
        """Only the rows known at ``day`` (what the warehouse held then): the tool of the leakage tests."""
        def cut(frame: pd.DataFrame, at: str) -> pd.DataFrame:
            return frame[(frame[at] < day) & (frame["landing_day"] < day)].reset_index(drop=True)

        users = self.users[self.users["landing_day"] < day].reset_index(drop=True)
        campaigns = cut(self.campaigns, "sent")
        return History(cut(self.daily, "day"), cut(self.subscriptions, "at"), cut(self.tickets, "opened"),
                       campaigns, campaign_known_days(campaigns), users)


def first_load_as_history(history: History, first_load_day: float) -> History:
    """Rows of the warehouse's first load (landed on or before ``first_load_day``) taken as known when they
    happened: a first load is the history a user brings (a one-off export lands on one day), and by its landing day
    alone no landmark before it would know anything. Later loads keep their landing days."""
    def history_day(frame: pd.DataFrame, at: str) -> pd.DataFrame:
        landed = frame["landing_day"].to_numpy(float)
        happened = np.floor(frame[at].to_numpy(float))
        first = landed <= first_load_day
        return frame.assign(landing_day=np.where(first, np.fmin(landed, happened), landed))

    campaigns = history_day(history.campaigns, "sent")
    return History(history_day(history.daily, "day"), history_day(history.subscriptions, "at"),
                   history_day(history.tickets, "opened"), campaigns, history.campaign_known,
                   history_day(history.users, "signup"))


def campaign_known_days(campaigns: pd.DataFrame) -> pd.DataFrame:
    """The first day each randomized group's sends were known, per campaign (from the sends of everyone)."""
    return group_known_days(campaigns.assign(
        known=np.maximum(np.floor(campaigns["sent"]), campaigns["landing_day"]) + 1))


def group_known_days(sends: pd.DataFrame) -> pd.DataFrame:
    """campaign_id, treatment_known, control_known from sends with the day each was ``known``."""
    table = sends.pivot_table(index="campaign_id", columns="campaign_group", values="known", aggfunc="min")
    return pd.DataFrame({"campaign_id": table.index.astype(str),
                         "treatment_known": table.get("treatment", pd.Series(np.nan, index=table.index)).to_numpy(),
                         "control_known": table.get("control", pd.Series(np.nan, index=table.index)).to_numpy()})


def day_number(values) -> np.ndarray:
    """Timestamps or dates (naive UTC) as float days since 1970-01-01; missing values as NaN."""
    ts = pd.Series(values)
    # Columns the readers return are datetime64 already: through ``to_datetime`` its cache iterated and mapped every
    # value (daily scoring at 10,000 users: 1.24 s against 0.03 s for 380,000 activity dates, loaded machine).
    if not pd.api.types.is_datetime64_dtype(ts.dtype):
        ts = pd.to_datetime(ts, errors="coerce")
    out = (ts - EPOCH) / pd.Timedelta(days=1)
    return out.to_numpy(dtype=float)


def landmark_grid(first_day: float, as_of: int, every_days: int) -> list[int]:
    """Landmark days on a fixed calendar (every ``every_days`` days counted from 1970-01-01, so the grid does not
    move when later data arrives) from the first day after ``first_day`` up to and including ``as_of``'s grid day."""
    start = int(np.floor(first_day)) + 1
    first = start + (-start) % every_days
    return list(range(first, as_of + 1, every_days))


class _Users:
    """Row positions of every table's users in one sorted id array, so aggregates are bincounts."""

    def __init__(self, history: History, ids: np.ndarray | None = None):
        self.ids = history.user_ids() if ids is None else np.unique(np.asarray(ids, dtype=str))
        self.n = len(self.ids)
        self._index = pd.Index(self.ids)

    def codes(self, frame: pd.DataFrame) -> np.ndarray:
        """Each row's position in ``ids`` (-1: not among them). A hash lookup: binary search over object strings
        took 1.1 s of daily scoring's 6 s at 10,000 users (loaded machine)."""
        return self._index.get_indexer(frame["user_id"].astype(str)).astype(np.int64)

    def count(self, codes: np.ndarray, mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        keep = mask & (codes >= 0)
        return np.bincount(codes[keep], weights=None if weights is None else weights[keep], minlength=self.n
                           ).astype(float)

    def distinct_days(self, codes: np.ndarray, mask: np.ndarray, days: np.ndarray) -> np.ndarray:
        """Distinct days per user among the rows of ``mask`` (a day's rows can land on several days)."""
        keep = mask & (codes >= 0)
        pairs = np.unique(codes[keep].astype(np.int64) * 1_000_000 + days[keep].astype(np.int64))
        return np.bincount((pairs // 1_000_000).astype(np.int64), minlength=self.n).astype(float)

    def extreme(self, codes: np.ndarray, mask: np.ndarray, values: np.ndarray, largest: bool) -> np.ndarray:
        out = np.full(self.n, -np.inf if largest else np.inf)
        keep = mask & (codes >= 0)
        (np.maximum if largest else np.minimum).at(out, codes[keep], values[keep])
        return np.where(np.isfinite(out), out, np.nan)


def landmark_features(history: History, landmarks: Sequence[int], data_start: float,
                      spec: LandmarkSpec = DEFAULT_SPEC, user_ids: np.ndarray | None = None) -> pd.DataFrame:
    """One row per user and landmark for every user who had started by the landmark: state (active or lapsed),
    the raw covariates (counts, days, plan) and whether the user has subscription rows. Reads only rows known at
    each landmark.

    ``data_start`` is the day the warehouse's view of the world begins (its first landing day): a user who started
    before it was observed only from then, so rates are per day *observed* (``observed_days``), while
    ``tenure_days`` counts from the user's start."""
    users = _Users(history, user_ids)
    daily, subs, tickets, sends = history.daily, history.subscriptions, history.tickets, history.campaigns
    d_codes, s_codes, t_codes, c_codes = (users.codes(f) for f in (daily, subs, tickets, sends))
    u_codes = users.codes(history.users)
    d_day, d_land = daily["day"].to_numpy(float), daily["landing_day"].to_numpy(float)
    initiated = daily["initiated"].to_numpy(float)
    d_active = initiated > 0
    s_at, s_land = subs["at"].to_numpy(float), subs["landing_day"].to_numpy(float)
    t_open, t_land = tickets["opened"].to_numpy(float), tickets["landing_day"].to_numpy(float)
    t_closed = tickets["closed"].to_numpy(float)
    c_sent, c_land = sends["sent"].to_numpy(float), sends["landing_day"].to_numpy(float)
    c_treated = (sends["campaign_group"] == "treatment").to_numpy()
    signup = np.full(users.n, np.nan)
    channel = np.full(users.n, None, dtype=object)
    signup_plan = np.full(users.n, None, dtype=object)
    known_user = u_codes >= 0
    signup[u_codes[known_user]] = history.users["signup"].to_numpy(float)[known_user]
    channel[u_codes[known_user]] = history.users["acquisition_channel"].to_numpy(object)[known_user]
    signup_plan[u_codes[known_user]] = history.users["plan"].to_numpy(object)[known_user]
    u_land = np.full(users.n, np.inf)
    u_land[u_codes[known_user]] = history.users["landing_day"].to_numpy(float)[known_user]
    order = np.argsort(s_at, kind="stable")  # subscriptions in time order: the last known row is the latest
    decay = 0.5 ** (1.0 / spec.half_life_days)
    w = spec.window_days

    frames = []
    for landmark in landmarks:
        L = float(landmark)
        known = (d_day < L) & (d_land < L)
        in_window = known & (d_day >= L - w)
        in_previous = known & (d_day >= L - 2 * w) & (d_day < L - w)
        s_known = (s_at < L) & (s_land < L)
        t_known = (t_open < L) & (t_land < L)
        signup_known = np.where(u_land < L, signup, np.nan)
        first_day = np.fmin(np.fmin(users.extreme(d_codes, known, d_day, largest=False), np.floor(signup_known)),
                            np.floor(users.extreme(s_codes, s_known, s_at, largest=False)))
        started = np.isfinite(first_day) & (first_day < L)
        tenure = np.where(started, L - first_day, np.nan)
        observed = np.where(started, L - np.maximum(first_day, np.floor(data_start)), np.nan)
        last_active = users.extreme(d_codes, known & d_active, d_day, largest=True)
        days_since = L - np.where(np.isfinite(last_active), last_active, first_day)  # active yesterday: 1
        # The latest known subscription action and plan (the users row's plan and channel once it is known).
        latest_action = np.full(users.n, None, dtype=object)
        latest_plan = np.where(u_land < L, signup_plan, None)
        rows = order[s_known[order] & (s_codes[order] >= 0)]
        latest = pd.DataFrame({"code": s_codes[rows], "action": subs["action"].to_numpy(object)[rows],
                               "plan": subs["plan"].to_numpy(object)[rows]})
        last = latest.groupby("code", sort=False).last()  # rows are in time order: the last is the latest
        latest_action[last.index.to_numpy()] = last["action"].to_numpy(object)
        planned = last["plan"].notna().to_numpy()
        latest_plan[last.index.to_numpy()[planned]] = last["plan"].to_numpy(object)[planned]
        has_subscription = pd.notna(latest_action)
        lapsed = np.where(has_subscription, latest_action == "cancelled", days_since - 1 >= spec.inactivity_days)
        randomized = history.campaign_known.loc[(history.campaign_known["treatment_known"] <= L)
                                                & (history.campaign_known["control_known"] <= L), "campaign_id"]
        c_known = (c_sent < L) & (c_land < L) & sends["campaign_id"].isin(randomized).to_numpy()
        exposure = np.maximum(np.minimum(observed, 10 * spec.half_life_days), 0)
        frame = pd.DataFrame({
            "user_id": users.ids,
            "landmark_day": int(landmark),
            "state": np.where(lapsed, LAPSED, ACTIVE),
            "has_subscription": has_subscription.astype(int),
            "tenure_days": tenure,
            "days_since_last_active": days_since,
            "observed_days": observed,
            "days_in_window": np.minimum(observed, w),
            "events_in_window": users.count(d_codes, in_window, daily["events"].to_numpy(float)),
            "events_previous_window": users.count(d_codes, in_previous, daily["events"].to_numpy(float)),
            "interactions_in_window": users.count(d_codes, in_window, initiated),
            "interactions_total": users.count(d_codes, known, initiated),
            "active_days_in_window": users.distinct_days(d_codes, in_window & d_active, d_day),
            "active_days_total": users.distinct_days(d_codes, known & d_active, d_day),
            "decayed_interactions": users.count(d_codes, known, initiated * decay ** (L - d_day - 1)),
            "decayed_exposure_days": (1 - decay ** exposure) / (1 - decay),  # weights of days L-1, L-2, ...
            "purchases": users.count(d_codes, known, daily["purchases"].to_numpy(float)),
            "spend": users.count(d_codes, known, daily["spend"].to_numpy(float)),
            "recs_shown": users.count(d_codes, known, daily["recs_shown"].to_numpy(float)),
            "recs_clicked": users.count(d_codes, known, daily["recs_clicked"].to_numpy(float)),
            "tickets_total": users.count(t_codes, t_known),
            "tickets_in_window": users.count(t_codes, t_known & (t_open >= L - w)),
            "tickets_last_week": users.count(t_codes, t_known & (t_open >= L - 7)),
            "open_tickets": users.count(t_codes, t_known & ~(t_closed < L)),
            "days_since_last_ticket": L - users.extreme(t_codes, t_known, t_open, largest=True),
            "campaign_treated": (users.count(c_codes, c_known & c_treated) > 0).astype(int),
            "campaign_control": (users.count(c_codes, c_known & ~c_treated) > 0).astype(int),
            "plan": latest_plan,
            "acquisition_channel": np.where(u_land < L, channel, None),
        })
        frames.append(frame[started])
    columns = FEATURE_COLUMNS
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns))[columns]


FEATURE_COLUMNS = [
    "user_id", "landmark_day", "state", "has_subscription", "tenure_days", "observed_days", "days_since_last_active",
    "days_in_window", "events_in_window", "events_previous_window", "interactions_in_window", "interactions_total",
    "active_days_in_window", "active_days_total", "decayed_interactions", "decayed_exposure_days", "purchases",
    "spend", "recs_shown", "recs_clicked", "tickets_total", "tickets_in_window", "tickets_last_week", "open_tickets",
    "days_since_last_ticket", "campaign_treated", "campaign_control", "plan", "acquisition_channel",
]


def _first_at_or_after(keys: pd.DataFrame, events: pd.DataFrame) -> np.ndarray:
    """For each (user_id, at) of ``keys``, the first event time >= at of the same user in ``events``
    (columns user_id, time); NaN where there is none."""
    if keys.empty:
        return np.array([], dtype=float)
    left = keys[["user_id", "at"]].reset_index(names="_row").sort_values("at", kind="stable")
    if events.empty:
        return np.full(len(keys), np.nan)
    right = events[["user_id", "time"]].dropna().astype({"user_id": str, "time": float}).sort_values(
        "time", kind="stable")
    merged = pd.merge_asof(left, right, left_on="at", right_on="time", by="user_id", direction="forward")
    return merged.sort_values("_row")["time"].to_numpy(float)


def lapse_times(active_days: pd.DataFrame, inactivity_days: int, as_of: float) -> pd.DataFrame:
    """The moments users lapse, from their active days (user_id, day): the start of the day on which
    ``inactivity_days`` full days without activity have passed, when that happened by ``as_of``."""
    days = active_days.drop_duplicates().sort_values(["user_id", "day"], kind="stable")
    nxt = days.groupby("user_id")["day"].shift(-1).to_numpy(float)
    lapse = days["day"].to_numpy(float) + 1 + inactivity_days
    happened = np.where(np.isnan(nxt), lapse <= as_of, nxt >= lapse)
    return pd.DataFrame({"user_id": days["user_id"].to_numpy()[happened], "time": lapse[happened]})


def _start_days(history: History) -> pd.DataFrame:
    """Each user's first known day (sign-up, first interaction or first subscription row), as user_id, day."""
    starts = pd.concat([
        history.daily[["user_id", "day"]],
        history.users.assign(day=np.floor(history.users["signup"]))[["user_id", "day"]],
        history.subscriptions.assign(day=np.floor(history.subscriptions["at"]))[["user_id", "day"]],
    ], ignore_index=True).dropna()
    return starts.groupby("user_id", as_index=False)["day"].min()


def landmark_outcomes(frame: pd.DataFrame, history: History, as_of: int, spec: LandmarkSpec = DEFAULT_SPEC
                      ) -> pd.DataFrame:
    """``frame`` (from ``landmark_features``, landmarks <= ``as_of``) with follow-up as known at ``as_of``:
    ``followup_days`` (as_of - landmark), and for active rows ``churn_days`` (days from the landmark to the
    cancellation or the lapse, NaN if none by as_of), for lapsed rows ``return_days`` (to the end of the first day
    with user-initiated activity)."""
    known = history.known_until(float(as_of))
    daily = known.daily[known.daily["initiated"] > 0]
    active_days = daily[["user_id", "day"]]
    keys = pd.DataFrame({"user_id": frame["user_id"].astype(str).to_numpy(),
                         "at": frame["landmark_day"].to_numpy(float)})
    subs = known.subscriptions
    cancel = _first_at_or_after(keys, subs.loc[subs["action"] == "cancelled", ["user_id", "at"]].rename(
        columns={"at": "time"}))
    # The inactivity clock starts at a user's first known day, as the state on a landmark does: a user who signed
    # up and never acted lapses too.
    clock = pd.concat([active_days, _start_days(known)], ignore_index=True)
    lapse = _first_at_or_after(keys, lapse_times(clock, spec.inactivity_days, float(as_of)))
    # A lapsed user returns on their first active day on or after the landmark (known at its end, d + 1); a
    # cancelled subscriber, with their next subscription action that is not a cancellation.
    returned = _first_at_or_after(keys, active_days.rename(columns={"day": "time"})) + 1.0
    resubscribed = _first_at_or_after(keys, subs.loc[subs["action"] != "cancelled", ["user_id", "at"]].rename(
        columns={"at": "time"}))
    subscription = frame["has_subscription"].to_numpy() == 1
    churn_at = np.where(subscription, cancel, lapse)
    returned = np.where(subscription, resubscribed, returned)
    active = (frame["state"] == ACTIVE).to_numpy()
    landmark = keys["at"].to_numpy()
    out = frame.copy()
    out["followup_days"] = float(as_of) - landmark
    out["churn_days"] = np.where(active, np.maximum(churn_at - landmark, 1e-3), np.nan)
    out["return_days"] = np.where(~active, returned - landmark, np.nan)
    return out
