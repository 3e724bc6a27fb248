"""The twins' update as plain functions and one writer, shared by the daily asset and the parallel full rebuild.

A run as of a day folds each bucket's new evidence into its belief state, estimates the population priors from
every state, then summarizes each bucket into beliefs and twins. ``TwinWriter`` is the only code that writes the
twins' tables (belief_state, belief_priors, user_beliefs, user_twins, user_twins_history and the explanations
view), and ``CheckTally`` adds up what the checks need as the buckets go by, whichever caller drives the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb
import numpy as np
import pandas as pd

from dagster_twins.twins import store
from dagster_twins.twins.summarize import Priors, posteriors, roll_up
from dagster_twins.warehouse.tables import TableRewrite, append_rows, registered

BELIEFS, TWINS = "user_beliefs", "user_twins"


def summarize_bucket(state: pd.DataFrame, users: pd.DataFrame, categories: dict[str, list[str]], priors: Priors,
                     as_of: date, half_life_days: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One bucket's beliefs (a row per user, belief and category) and twins (a row per user)."""
    beliefs = posteriors(state, users, categories, priors, as_of, half_life_days)
    return beliefs, roll_up(beliefs, as_of)


@dataclass(frozen=True)
class CheckOutcome:
    table: str  # BELIEFS or TWINS
    check_name: str
    passed: bool
    metadata: dict


class CheckTally:
    """The twin checks, added up bucket by bucket so no check needs the whole population at once."""

    def __init__(self):
        self.moved = self.twins = self.bad_params = self.out_of_range = self.shares_off = 0
        self.unique = True
        self.max_share_error = 0.0
        self.confidence = (np.inf, -np.inf)
        self.confidences: list[np.ndarray] = []
        self.preview = pd.DataFrame()

    def summarized(self, beliefs: pd.DataFrame, twins: pd.DataFrame) -> None:
        self.twins += len(twins)
        self.unique &= bool(twins["user_id"].is_unique)  # buckets are disjoint: unique within each is enough
        if self.preview.empty:
            self.preview = twins.head(10)
        self.confidences.append(twins["overall_confidence"].to_numpy())
        params = beliefs[["param_1", "param_2"]].to_numpy()
        self.bad_params += int((~np.isfinite(params) | (params <= 0)).any(axis=1).sum())
        bounded = beliefs["family"] != "gamma"
        # (The mean of a skewed posterior may lie outside its central 90% interval, so that is not checked.)
        self.out_of_range += int(((beliefs["mean"] < 0) | (beliefs["lower_90"] < 0)
                                  | (beliefs["lower_90"] > beliefs["upper_90"])
                                  | (bounded & ((beliefs["mean"] > 1) | (beliefs["upper_90"] > 1)))).sum())
        sums = beliefs[beliefs["family"] == "dirichlet"].groupby(["user_id", "belief"])["mean"].sum()
        self.shares_off += int((np.abs(sums - 1) > 1e-9).sum())
        self.max_share_error = max(self.max_share_error, float(np.abs(sums - 1).max()) if len(sums) else 0.0)
        conf = beliefs["confidence"]
        self.confidence = (min(self.confidence[0], float(conf.min())), max(self.confidence[1], float(conf.max())))

    def median_confidence(self) -> float:
        return float(np.nanmedian(np.concatenate(self.confidences))) if self.confidences else float("nan")

    def outcomes(self, known_users: int) -> list[CheckOutcome]:
        low, high = self.confidence
        return [
            CheckOutcome(TWINS, "every_user_has_a_twin", bool(self.twins == known_users and self.unique),
                         {"twins": self.twins, "users": known_users}),
            CheckOutcome(BELIEFS, "parameters_positive_and_finite", self.bad_params == 0,
                         {"bad_rows": self.bad_params}),
            CheckOutcome(BELIEFS, "probabilities_and_shares_in_range", self.out_of_range == 0,
                         {"bad_rows": self.out_of_range}),
            CheckOutcome(BELIEFS, "shares_sum_to_one", self.shares_off == 0,
                         {"user_beliefs_off": self.shares_off, "max_abs_error": self.max_share_error}),
            CheckOutcome(BELIEFS, "confidence_in_range", bool(low >= 0 and high <= 1), {"min": low, "max": high}),
            CheckOutcome(BELIEFS, "no_change_without_evidence", self.moved == 0,
                         {"rows_moved_without_evidence": self.moved}),
        ]


class TwinWriter:
    """The one writer of the twins' tables for a run as of ``as_of``, in the order a run produces them: each
    bucket's state, the priors, each bucket's beliefs and twins, then ``finish``. Dated snapshots from
    ``invalidate_from`` on are dropped first (a re-run of an older window makes later ones stale).

    A full run replaces every user's summaries and twin. A daily increment (``write_priors(..., touched_only=True)``)
    writes the summaries and twins of the users it is given only (those with evidence in the
    window, and users new since the last run) and leaves every other user's rows as they are: the view
    ``user_beliefs`` carries them to the run's day (``store.beliefs_view``)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, as_of: date, invalidate_from: date, half_life_days: float):
        self.con, self.as_of, self.invalidate_from = con, as_of, invalidate_from
        self.half_life_days, self.touched_only = half_life_days, False
        self.tally = CheckTally()
        self.summarized = 0
        con.execute(f"create schema if not exists {store.SCHEMA}")
        con.execute(store.STATE_DDL)
        store.clear_snapshots(con, "belief_state", as_of, invalidate_from)
        # A table of an older release (user_beliefs was a table) gives way to the view.
        if con.execute("select count(*) from duckdb_tables() where schema_name = ? and table_name = ?",
                       [store.SCHEMA, BELIEFS]).fetchone()[0]:
            con.execute(f"drop table {store.SCHEMA}.{BELIEFS}")
        self._beliefs = TableRewrite(con, store.SCHEMA, store.SUMMARIES)
        self._twins = TableRewrite(con, store.SCHEMA, TWINS)

    def write_state(self, state: pd.DataFrame) -> None:
        """One bucket's belief state, saved as of the run's day (the next run's starting point)."""
        store.append_snapshot(self.con, "belief_state", state.assign(as_of=pd.Timestamp(self.as_of)))

    def write_priors(self, priors: pd.DataFrame, touched_only: bool = False) -> None:
        """The population priors (``Priors.frame``); the twins' history of the day is cleared for the summaries,
        which are of every user or (``touched_only``) of the users the caller summarizes only."""
        self.touched_only = touched_only
        store.save_snapshot(self.con, "belief_priors", priors, self.as_of, self.invalidate_from)
        store.clear_snapshots(self.con, "user_twins_history", self.as_of, self.invalidate_from)

    def write_summary(self, beliefs: pd.DataFrame, twins: pd.DataFrame) -> None:
        """One bucket's beliefs and twins (of every user, or of the touched users only), and the twins into their
        history (a row a user on each day they were summarized)."""
        twins = store.with_purchases(self.con, twins)
        if self.touched_only:
            with registered(self.con, twins[["user_id"]], "_touched_users") as users:
                for table in (store.SUMMARIES, TWINS):
                    self.con.execute(f"delete from {store.SCHEMA}.{table} where user_id in "
                                     f"(select user_id from {users})")
            append_rows(self.con, store.SCHEMA, store.SUMMARIES, beliefs)
            append_rows(self.con, store.SCHEMA, TWINS, twins)
        else:
            self._beliefs.write(beliefs)
            self._twins.write(twins)
        store.append_snapshot(self.con, "user_twins_history", twins.rename(columns={"last_updated": "as_of"}))
        self.summarized += len(twins)
        self.tally.summarized(beliefs, twins)

    def finish(self, state_retention_days: int) -> tuple[int, int]:
        """Rows of user_beliefs and user_twins; state snapshots older than the retention are pruned."""
        store.prune_state(self.con, self.as_of, state_retention_days)
        if not self.touched_only:
            self._beliefs.finish()
            self._twins.finish()
        else:
            store.refresh_twin_purchases(self.con)
        self.con.execute(store.beliefs_view(self.as_of, self.half_life_days))
        self.con.execute(store.explanations_view(self.con))
        belief_rows, twin_rows, distinct = self.con.execute(
            f"select (select count(*) from {store.SCHEMA}.{BELIEFS}), count(*), count(distinct user_id) "
            f"from {store.SCHEMA}.{TWINS}").fetchone()
        # The twin checks count every twin, summarized today or not.
        self.tally.twins, self.tally.unique = int(twin_rows), bool(twin_rows == distinct)
        return int(belief_rows), int(twin_rows)
