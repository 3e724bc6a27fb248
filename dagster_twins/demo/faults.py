"""Landing days, late arrivals and injected bad rows: what real landing files look like."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dagster_twins.demo.days import DAY

ID_COLUMN = {"users": "user_id", "events": "event_id", "conversations": "message_id", "recommendations": "rec_id",
             "support_tickets": "ticket_id", "campaigns": "send_id"}
TIME_COLUMN = {"users": "signed_up_at", "conversations": "sent_at", "recommendations": "shown_at",
               "support_tickets": "opened_at", "subscriptions": "occurred_at", "campaigns": "sent_at"}
NUMBER_COLUMN = {"support_tickets": "satisfaction", "subscriptions": "mrr"}
ACCEPTED_COLUMN = {"recommendations": ("response", "maybe"), "subscriptions": ("action", "paused"),
                   "campaigns": ("group", "holdout")}
TEXT_FORMATS = {"users", "conversations", "recommendations", "support_tickets", "subscriptions", "campaigns"}


def assign_landing_days(frame: pd.DataFrame, start_s: int, n_days: int, late_rate: float,
                        rng: np.random.Generator, allow_late: bool) -> int:
    """Landing day = event day (rows before the window land on day 0); some rows land 1-3 days late."""
    day = np.clip((frame["_t"].to_numpy() - start_s) // DAY, 0, n_days - 1)
    late = np.zeros(len(frame), dtype=bool)
    if allow_late:
        shift = rng.integers(1, 4, len(frame))
        late = (rng.random(len(frame)) < late_rate) & (day + shift <= n_days - 1)
        day = np.where(late, day + shift, day)
    frame["_landing_day"] = day
    return int(late.sum())


def inject_faults(source: str, frame: pd.DataFrame, dirty_rate: float, n_days: int,
                  rng: np.random.Generator) -> tuple[pd.DataFrame, dict[str, int]]:
    """Extra bad rows (copies of real rows with one field broken, under a new id) and exact duplicates."""
    extra, counts, order = draw_faults(source, frame, dirty_rate, n_days, rng)
    out = pd.concat([frame, *extra], ignore_index=True)
    if source == "conversations":
        out["_raw_json"] = out.get("_raw_json", pd.Series(index=out.index, dtype=object)).fillna("")
    # Rows inside a day's file arrive out of order.
    return out.iloc[order].reset_index(drop=True), counts


def draw_faults(source: str, frame: pd.DataFrame, dirty_rate: float, n_days: int,
                rng: np.random.Generator) -> tuple[list[pd.DataFrame], dict[str, int], np.ndarray]:
    """The draws of ``inject_faults``: the extra rows (small frames, to go after ``frame``), their counts by kind,
    and the order of ``frame`` followed by the extra rows in which the rows are written."""
    counts: dict[str, int] = {}
    extra: list[pd.DataFrame] = []

    def copies(kind: str) -> pd.DataFrame:
        n = int(rng.binomial(len(frame), dirty_rate)) if len(frame) else 0
        counts[kind] = n
        rows = frame.iloc[rng.integers(0, len(frame), n)].copy() if n else frame.iloc[:0].copy()
        if source in ID_COLUMN and kind != "duplicate" and source != "users":
            rows[ID_COLUMN[source]] = rows[ID_COLUMN[source]].astype(str) + f"_{kind}_" + np.arange(n).astype(str)
        return rows

    if source in TEXT_FORMATS:
        rows = copies("unparseable_timestamp")
        rows[TIME_COLUMN[source]] = "not-a-date"
        extra.append(rows)
        if source != "users":
            rows = copies("missing_user_id")
            rows["user_id"] = ""
            extra.append(rows)
        if source in NUMBER_COLUMN:
            rows = copies("not_a_number")
            rows[NUMBER_COLUMN[source]] = "n/a"
            extra.append(rows)
        if source in ACCEPTED_COLUMN:
            column, bad = ACCEPTED_COLUMN[source]
            rows = copies("invalid_value")
            rows[column] = bad
            extra.append(rows)
        if source == "conversations":
            rows = copies("malformed_json")
            # A line cut short mid-record, as a crashed writer leaves it.
            rows["_raw_json"] = '{"message_id": "' + rows["message_id"] + '", "user_id": "' + rows["user_id"] + '", "se'
            extra.append(rows)
    rows = copies("duplicate")
    rows["_landing_day"] = np.minimum(rows["_landing_day"].to_numpy() + rng.integers(0, 3, len(rows)), n_days - 1)
    extra.append(rows)
    return extra, counts, rng.permutation(len(frame) + sum(len(rows) for rows in extra))
