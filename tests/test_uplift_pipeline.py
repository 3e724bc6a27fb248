"""Per-user campaign effects on real assets. The session's small demo (45 days) has no campaign with the 60 days
of follow-up the effects need: the asset says so per campaign and the targeting scenario is recorded as skipped,
naming its file, while the run goes on. (The estimate itself is tested on synthetic experiments in
tests/test_uplift_math.py and measured on a 20,000-user demo by `dagster-twins uplift-quality`.)"""

from __future__ import annotations

from dagster_twins.warehouse.tables import connect

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
