"""The demo generator: deterministic, in the contract, and carrying the structure the models must find."""

from __future__ import annotations

import filecmp
import json
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from dagster_twins.contract import SOURCES
from dagster_twins.demo import generate_demo
from dagster_twins.demo.landing import FORMAT_OF


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path):
    args = {"n_users": 120, "n_days": 20, "end_date": date(2026, 3, 31)}
    first = generate_demo(tmp_path / "a", seed=3, **args)
    generate_demo(tmp_path / "b", seed=3, **args)
    generate_demo(tmp_path / "c", seed=4, **args)
    files = sorted(p.relative_to(first.landing_dir) for p in first.landing_dir.rglob("*.*"))
    assert files
    _, mismatch, errors = filecmp.cmpfiles(first.landing_dir, tmp_path / "b" / "landing", [str(f) for f in files],
                                           shallow=False)
    assert mismatch == [] and errors == []
    _, mismatch, _ = filecmp.cmpfiles(first.landing_dir, tmp_path / "c" / "landing", [str(f) for f in files],
                                      shallow=False)
    assert mismatch


def test_layout_formats_and_contract_columns(small_demo):
    for source, contract in SOURCES.items():
        files = sorted((small_demo.landing_dir / source).iterdir())
        assert files, source
        assert {f.suffix.lstrip(".") for f in files} == {FORMAT_OF[source]}
        for f in files:
            date.fromisoformat(f.stem)  # one file per landing day, named by the day
        con = duckdb.connect()
        if FORMAT_OF[source] == "csv":
            query = f"describe select * from read_csv('{files[0]}', all_varchar=true)"
            columns = [c[0] for c in con.execute(query).fetchall()]
        elif FORMAT_OF[source] == "parquet":
            columns = [c[0] for c in con.execute(f"describe select * from '{files[0]}'").fetchall()]
        else:
            columns = list(json.loads(files[0].read_text().splitlines()[0]))
        assert set(columns) <= set(contract.column_names), source
        assert set(contract.required_columns) <= set(columns), source


def test_injected_faults_are_in_the_files(small_demo):
    con = duckdb.connect()
    folder = small_demo.landing_dir / "recommendations"
    bad_times = con.execute(f"select count(*) from read_csv('{folder}/*.csv', all_varchar=true) "
                            "where shown_at = 'not-a-date'").fetchone()[0]
    assert bad_times == small_demo.injected["recommendations"]["unparseable_timestamp"]
    rows = con.execute(f"select count(*) from read_csv('{folder}/*.csv', all_varchar=true)").fetchone()[0]
    assert rows == small_demo.rows_written["recommendations"]


def test_planted_structure_is_present(tmp_path: Path):
    demo = generate_demo(tmp_path, n_users=3000, n_days=90, end_date=date(2026, 3, 31), seed=11)
    truth = pd.read_parquet(demo.truth_dir / "users.parquet")
    planted = json.loads((demo.truth_dir / "planted.json").read_text())
    assert planted["campaign_hazard_ratio"] == 0.6 and planted["b_eng"] < 0 < planted["b_trouble"]
    con = duckdb.connect()
    recs = con.execute(
        f"select user_id, avg(case when response = 'clicked' then 1.0 else 0 end) as rate, count(*) as n "
        f"from read_csv('{demo.landing_dir}/recommendations/*.csv', all_varchar=true) group by 1 having count(*) >= 30"
    ).df()
    merged = recs.merge(truth, on="user_id")
    assert np.corrcoef(merged["rate"], merged["click_propensity"])[0, 1] > 0.6
    events = con.execute(
        f"select user_id, count(*) as n, max(occurred_at) as last_at "
        f"from '{demo.landing_dir}/events/*.parquet' group by 1"
    ).df().merge(truth, on="user_id")
    assert np.corrcoef(np.log(events["n"]), np.log(events["activity_rate"]))[0, 1] > 0.5
    churners = events[events["churned"]]
    assert (pd.to_datetime(churners["last_at"], utc=True) < churners["churned_at"]).all()
    cancels = con.execute(
        f"select distinct user_id from read_csv('{demo.landing_dir}/subscriptions/*.csv', all_varchar=true) "
        "where action = 'cancelled'").df()
    # Every cancellation is a planted churn; a few cancellations lost their user_id to injected faults.
    cancelled = set(cancels["user_id"].dropna())
    churned = set(truth.loc[truth["churned"], "user_id"])
    assert cancelled <= churned and len(cancelled) >= 0.97 * len(churned)
    # The campaign lowers churn in its treatment group (a wide, safe margin at this size).
    rates = truth[truth["campaign_group"] != "none"].groupby("campaign_group")["churned"].mean()
    assert rates["treatment"] < rates["control"]
    assert 0.15 < truth["churned"].mean() < 0.5
