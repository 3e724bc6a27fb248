"""Per-user campaign effects on real assets. The session's small demo (45 days) has no campaign with the 60 days
of follow-up the effects need: the asset says so per campaign and the targeting scenario is recorded as skipped,
naming its file, while the run goes on. (The estimate itself is tested on synthetic experiments in
tests/test_uplift_math.py and measured on a 20,000-user demo by `dagster-twins uplift-quality`.)"""

from __future__ import annotations

import shutil
from dataclasses import replace

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from dagster_twins.pipeline import run_pipeline
from dagster_twins.settings import PROJECT_ROOT
from dagster_twins.warehouse.tables import connect, replace_rows

TARGETING = "retention_campaign_budget_targeting"  # scenarios/, the shipped targeting example


def test_campaigns_without_enough_follow_up_are_skipped_and_said(built):
    settings, result, _ = built
    effects = [e for e in result.get_asset_materialization_events()
               if e.event_specific_data.materialization.asset_key.path == ["simulation", "user_treatment_effects"]]
    metadata = effects[0].event_specific_data.materialization.metadata
    skipped = metadata["skipped"].value
    assert "'retention_q'" in skipped and "'tips_placebo'" in skipped, skipped
    assert metadata["dagster/row_count"].value == 0
    con = connect(settings.warehouse_path, read_only=True)
    try:
        row = con.execute("select status, status_reason from simulation.scenario_results where scenario = ?",
                          [TARGETING]).fetchone()
        ranked = con.execute("select scenario from simulation.scenario_policy_ranking").df()["scenario"].tolist()
    finally:
        con.close()
    assert row[0] == "skipped"
    assert row[1].startswith(f"{TARGETING}.yaml: no per-user effects of campaign 'retention_q'"), row[1]
    assert not any(name.startswith(TARGETING) for name in ranked)


def _synthetic_effects(active_users: list[str], as_of) -> pd.DataFrame:
    """simulation.user_treatment_effects of a campaign 'retention_q' with 60 days of follow-up: 2,000 randomized
    users (half treated; the treatment keeps those with a negative effect) and every active user scored."""
    rng = np.random.default_rng(5)
    n = 2_000
    effect = np.where(np.arange(n) % 2 == 0, -0.2, 0.0)
    treated = (rng.random(n) < 0.5).astype(float)
    retained = (rng.random(n) < 0.6 - treated * effect).astype(float)
    common = {"campaign_id": "retention_q", "horizon_days": 60}
    randomized = pd.DataFrame({"user_id": [f"r{i}" for i in range(n)], **common, "population": "randomized",
                               "effect": effect, "lower_90": effect - 0.05, "upper_90": effect + 0.05,
                               "p_churn_control": 0.4, "p_churn_treated": 0.4 + effect, "treated": treated,
                               "retained": retained, "fold": np.arange(n) % 5, "cross_fitted": True,
                               "as_of": pd.Timestamp(as_of) - pd.Timedelta(days=90)})
    m = len(active_users)
    active_effect = -rng.uniform(0, 0.2, m)
    active = pd.DataFrame({"user_id": active_users, **common, "population": "active", "effect": active_effect,
                           "lower_90": active_effect - 0.05, "upper_90": active_effect + 0.05,
                           "p_churn_control": rng.uniform(0.2, 0.6, m), "treated": np.nan, "retained": np.nan,
                           "fold": -1, "cross_fitted": False, "as_of": pd.Timestamp(as_of)})
    active["p_churn_treated"] = active["p_churn_control"] + active_effect
    return pd.concat([randomized, active], ignore_index=True)


def test_targeting_reports_value_kept_per_policy_priced_by_the_purchase_layer(built_copy, tmp_path):
    settings, demo = built_copy
    folder = tmp_path / "scenarios"
    folder.mkdir()
    shutil.copy(PROJECT_ROOT / "scenarios" / f"{TARGETING}.yaml", folder)
    settings = replace(settings, scenarios_dir=folder)
    con = connect(settings.warehouse_path)
    try:
        base = con.execute("select user_id, value_90d, as_of from simulation.user_segment_base").df()
        replace_rows(con, "simulation", "user_treatment_effects",
                     _synthetic_effects(base["user_id"].tolist(), base["as_of"].max()))
    finally:
        con.close()
    keys = [dg.AssetKey(["simulation", f"scenario_{TARGETING}"]),
            dg.AssetKey(["simulation", "scenario_policy_ranking"])]
    run = run_pipeline(settings, demo.start_date, demo.end_date, instance=dg.DagsterInstance.ephemeral(),
                       selection=keys)
    assert all(c.passed for c in run.get_asset_check_evaluations())
    metadata = [e.event_specific_data.materialization.metadata for e in run.get_asset_materialization_events()
                if e.event_specific_data.materialization.asset_key == keys[0]][0]
    assert "value_90d" in metadata["value_kept"].value
    con = connect(settings.warehouse_path, read_only=True)
    try:
        results = con.execute("select * from simulation.scenario_results where scenario like ?",
                              [f"{TARGETING}:%"]).df().set_index("policy")
        ranking = con.execute("select * from simulation.scenario_policy_ranking").df().set_index("scenario")
        users = con.execute("select user_id, churn_reduction from simulation.scenario_user_effects where scenario = ?",
                            [TARGETING]).df()
    finally:
        con.close()
    assert (results["status"] == "simulated").all() and (results["value_column"] == "value_90d").all()
    lo, mid, hi = (results[f"expected_value_kept{s}"] for s in ("_lower_90", "", "_upper_90"))
    assert mid.notna().all() and (lo <= mid).all() and (mid <= hi).all()
    assert results.loc["random", "value_gain_over_random"] == 0
    # The proposed policy (benefit): users kept at the targeted users' mean value, plus the covariance of their
    # estimated churn reduction with their value, both as of the as-of day.
    chosen = users.merge(base, on="user_id")
    r, v = chosen["churn_reduction"].to_numpy(), chosen["value_90d"].fillna(0.0).to_numpy()
    assert results.loc["benefit", "expected_value_kept"] == pytest.approx(
        results.loc["benefit", "expected_users_kept"] * v.mean() + np.sum((r - r.mean()) * (v - v.mean())))
    for policy, row in results.iterrows():
        ranked = ranking.loc[f"{TARGETING}:{policy}"]
        assert ranked["expected_value_kept"] == pytest.approx(row["expected_value_kept"])
        assert ranked["value_gain_over_random_upper_90"] == pytest.approx(row["value_gain_over_random_upper_90"])
