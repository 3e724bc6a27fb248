"""The saved belief state is sparse: a run saves the users it folds, and a user's state as of any day is their
latest saved rows on or before it, decayed to it (``store.state_sql``). Pruning keeps every day within the
retention reading the same."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from dagster_twins.twins import store
from dagster_twins.twins.families import decay_factor

START = date(2026, 3, 1)
HALF_LIFE = 10.0
COLUMNS = ["user_id", "belief", "category", "stat_a", "stat_b", "n_evidence", "last_evidence_day"]


def _state_table(saves: list[tuple[int, str, float]]) -> duckdb.DuckDBPyConnection:
    """A state table from (day offset, user, stat) saves: each save is the user's two rows as of that day."""
    con = duckdb.connect()
    con.execute("create schema twins")
    con.execute(store.STATE_DDL)
    rows = [(START + timedelta(days=d), u, belief, "", a * k, 2 * a * k, float(d + 1), pd.Timestamp(START))
            for d, u, a in saves for belief, k in (("rec_click", 1.0), ("activity_rate", 3.0))]
    if rows:
        con.executemany("insert into twins.belief_state values (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return con


def _expected(saves: list[tuple[int, str, float]], day: int) -> pd.DataFrame:
    """By hand: each user's latest save on or before ``day``, decayed by the days in between."""
    latest: dict[str, tuple[int, float]] = {}
    for d, u, a in sorted(saves, key=lambda s: s[0]):
        if d <= day:
            latest[u] = (d, a)
    rows = []
    for u, (d, a) in latest.items():
        w = float(decay_factor(day - d, HALF_LIFE))
        rows += [(u, belief, "", a * k * w, 2 * a * k * w, float(d + 1), pd.Timestamp(START))
                 for belief, k in (("rec_click", 1.0), ("activity_rate", 3.0))]
    return _sorted(pd.DataFrame(rows, columns=COLUMNS))


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[COLUMNS].sort_values(["user_id", "belief"]).reset_index(drop=True)


# A save per (day, user) at most: a run saves a user once.
SAVES = st.lists(st.tuples(st.integers(0, 30), st.sampled_from(["u1", "u2", "u3", "u4"]),
                           st.floats(0.5, 20.0)), max_size=25, unique_by=lambda s: (s[0], s[1]))


@settings(max_examples=40, deadline=None)
@given(saves=SAVES, day=st.integers(0, 40))
def test_the_state_of_a_day_is_each_users_latest_save_decayed_to_it(saves, day):
    con = _state_table(saves)
    got = _sorted(store.state_of(con, START + timedelta(days=day), HALF_LIFE))
    want = _expected(saves, day)
    assert got["user_id"].tolist() == want["user_id"].tolist()
    stats = ["stat_a", "stat_b", "n_evidence"]
    np.testing.assert_allclose(got[stats].to_numpy(dtype=float), want[stats].to_numpy(dtype=float), rtol=1e-12)
    some = sorted({u for _, u, _ in saves})[:2]
    only = _sorted(store.state_of(con, START + timedelta(days=day), HALF_LIFE, pd.Series(some)))
    pd.testing.assert_frame_equal(only, got[got["user_id"].isin(some)].reset_index(drop=True))


@settings(max_examples=40, deadline=None)
@given(saves=SAVES, as_of=st.integers(0, 40), retention=st.integers(0, 20))
def test_pruning_keeps_every_day_within_the_retention_reading_the_same(saves, as_of, retention):
    con = _state_table(saves)
    cutoff = as_of - retention
    days = range(max(cutoff, 0), 41)
    before = {d: _sorted(store.state_of(con, START + timedelta(days=d), HALF_LIFE)) for d in days}
    rows = con.execute("select count(*) from twins.belief_state").fetchone()[0]
    dropped = store.prune_sparse_state(con, START + timedelta(days=as_of), retention)
    assert con.execute("select count(*) from twins.belief_state").fetchone()[0] == rows - dropped
    for d in days:
        pd.testing.assert_frame_equal(_sorted(store.state_of(con, START + timedelta(days=d), HALF_LIFE)), before[d])
    # What is left before the cutoff is one save a user, the one later days decay from.
    old = con.execute("select user_id, count(distinct as_of) from twins.belief_state where as_of < ? group by 1",
                      [START + timedelta(days=cutoff)]).fetchall()
    assert all(n == 1 for _, n in old)


def test_readers_of_a_copy_decay_with_the_half_life_its_priors_were_saved_with():
    con = _state_table([(0, "u1", 4.0)])
    con.execute("create table twins.belief_priors as select date '2026-03-11' as as_of, 5.0 as half_life_days")
    state = store.state_sql("date '2026-03-11'")
    got = con.execute(f"select stat_a from ({state}) where belief = 'rec_click'").fetchone()[0]
    assert got == 4.0 * 0.25  # ten days at a half-life of five


def test_a_run_starts_from_the_last_runs_day_even_when_that_day_saved_no_state():
    # Day 1's run folded users; day 2's run had no evidence (no state rows) but ran and saved its priors.
    con = _state_table([(1, "u1", 4.0)])
    con.execute("create table twins.belief_priors as select * from (values (timestamp '2026-03-02', 10.0), "
                "(timestamp '2026-03-03', 10.0)) t(as_of, half_life_days)")
    assert store.saved_state_day(con, START + timedelta(days=3)) == START + timedelta(days=2)
    assert store.saved_state_day(con, START + timedelta(days=1)) is None
    assert store.saved_state_day(duckdb.connect(), START) is None  # a new warehouse
