"""The belief state: decayed sufficient statistics per (user, belief, category), advanced day by day.

State rows: ``user_id, belief, category, stat_a, stat_b, n_evidence, last_evidence_day`` as of one day.
Evidence rows: ``user_id, belief, category, stat_a, stat_b, day`` (undecayed daily sums).

``advance`` decays a state to a later day and folds in the evidence of the days in between, each
weighted by its own age; because weights compose (w(T - T1) * w(T1 - d) = w(T - d)), chaining
``advance`` over any split of the days equals ``full_recompute`` over all of them.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from dagster_twins.twins.families import decay_factor

KEY = ["user_id", "belief", "category"]
STATE_COLUMNS = [*KEY, "stat_a", "stat_b", "n_evidence", "last_evidence_day"]
EVIDENCE_COLUMNS = [*KEY, "stat_a", "stat_b", "day"]


def empty_state() -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": pd.Series(dtype=object), "belief": pd.Series(dtype=object), "category": pd.Series(dtype=object),
        "stat_a": pd.Series(dtype=float), "stat_b": pd.Series(dtype=float), "n_evidence": pd.Series(dtype=float),
        "last_evidence_day": pd.Series(dtype="datetime64[ns]"),
    })


def _age_days(days: pd.Series, as_of: date) -> np.ndarray:
    return (pd.Timestamp(as_of) - pd.to_datetime(days)).dt.days.to_numpy(dtype=float)


def advance(state: pd.DataFrame, state_as_of: date | None, evidence: pd.DataFrame, as_of: date,
            half_life_days: float, restrict_days: bool = True) -> pd.DataFrame:
    """The state as of ``as_of``: the old state decayed by the days elapsed, plus evidence of days in
    (state_as_of, as_of], each decayed by its age. Evidence outside that range is ignored (the caller
    chooses what to fold); users without new evidence keep their decayed state."""
    if state_as_of is not None and as_of < state_as_of:
        raise ValueError(f"cannot advance a state as of {state_as_of} back to {as_of}")
    parts = []
    quiet = empty_state()
    if len(state):
        old = state[STATE_COLUMNS].copy()
        elapsed = 0.0 if state_as_of is None else float((as_of - state_as_of).days)
        w = float(decay_factor(elapsed, half_life_days))
        old["stat_a"] *= w
        old["stat_b"] *= w
        # Users without new evidence are only decayed: they skip the grouping, so a day costs in proportion to
        # its evidence plus one pass over the state.
        touched = old["user_id"].isin(pd.unique(evidence["user_id"])) if len(evidence) else np.zeros(len(old), bool)
        quiet = old[~touched]
        parts.append(old[touched])
    if len(evidence):
        days = pd.to_datetime(evidence["day"])
        in_range = days <= pd.Timestamp(as_of)
        if state_as_of is not None and restrict_days:
            in_range &= days > pd.Timestamp(state_as_of)
        new = evidence.loc[in_range, EVIDENCE_COLUMNS].copy()
        w = decay_factor(_age_days(new["day"], as_of), half_life_days)
        new["n_evidence"] = new["stat_b"].where(new["stat_b"] > 0, new["stat_a"]).astype(float)
        new["stat_a"] = new["stat_a"].to_numpy(dtype=float) * w
        new["stat_b"] = new["stat_b"].to_numpy(dtype=float) * w
        has_evidence = (new["stat_a"] > 0) | (new["stat_b"] > 0)
        new["last_evidence_day"] = pd.to_datetime(new["day"]).where(has_evidence)
        parts.append(new.drop(columns="day"))
    combined = pd.concat(parts, ignore_index=True) if parts else empty_state()
    if combined.empty:
        return quiet.reset_index(drop=True)
    out = combined.groupby(KEY, sort=False, observed=True).agg(
        stat_a=("stat_a", "sum"), stat_b=("stat_b", "sum"), n_evidence=("n_evidence", "sum"),
        last_evidence_day=("last_evidence_day", "max"),
    ).reset_index()[STATE_COLUMNS]
    return pd.concat([quiet, out], ignore_index=True) if len(quiet) else out


def fold(state: pd.DataFrame, state_as_of: date | None, evidence: pd.DataFrame, as_of: date,
         half_life_days: float) -> pd.DataFrame:
    """Decay ``state`` to ``as_of`` and add every evidence row, each weighted by the age of its own day.

    Unlike ``advance``, which rows to add is the caller's choice (e.g. the rows that *landed* since the
    state was taken, late ones included): weights depend on the evidence day only, so this stays exact.
    """
    late = pd.to_datetime(evidence["day"]) > pd.Timestamp(as_of) if len(evidence) else None
    if late is not None and late.any():
        raise ValueError(f"evidence after {as_of} cannot be folded into a state as of {as_of}")
    return advance(state, state_as_of, evidence, as_of, half_life_days, restrict_days=False)


def full_recompute(evidence: pd.DataFrame, as_of: date, half_life_days: float) -> pd.DataFrame:
    """The state as of ``as_of`` from all evidence up to that day at once."""
    return advance(empty_state(), None, evidence, as_of, half_life_days)


def exposure_day_count(first_day: pd.Series, as_of: date) -> np.ndarray:
    """Undecayed days of exposure from ``first_day`` to ``as_of`` inclusive (0 before ``first_day``)."""
    return np.maximum((pd.Timestamp(as_of) - pd.to_datetime(first_day)).dt.days.to_numpy(dtype=float) + 1, 0)


def exposure_days(first_day: pd.Series, as_of: date, half_life_days: float) -> np.ndarray:
    """Decayed days of exposure from ``first_day`` to ``as_of`` inclusive: the sum of 0.5^((as_of - d)/h),
    in closed form, so rates need no evidence row per user per day. 0 before ``first_day``."""
    return decayed_days(exposure_day_count(first_day, as_of), half_life_days)


def decayed_days(n: np.ndarray | float, half_life_days: float) -> np.ndarray:
    """The decayed weight of ``n`` consecutive days ending today: sum over k < n of 0.5^(k/h) = (1 - q^n) / (1 - q)."""
    q = float(decay_factor(1.0, half_life_days))
    return (1 - q ** np.asarray(n, dtype=float)) / (1 - q)
