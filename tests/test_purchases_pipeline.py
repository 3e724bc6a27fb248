"""The purchase beliefs in the pipeline: on the session's built demo warehouse, every twin carries them, the
explanations say why, the check passed, and folding the statistics in two runs gives what one run gives."""

from __future__ import annotations

from datetime import timedelta

import duckdb
import pandas as pd
import pytest

from dagster_twins.twins.purchase_assets import PurchaseConfig, invalid_rows, update_purchases
from dagster_twins.warehouse.buckets import DuckDBReader

STATISTICS = ["user_id", "repeat_purchase_days", "days_to_last_purchase", "days_observed", "valued_purchases",
              "mean_purchase_value"]


def _read(settings, sql: str) -> pd.DataFrame:
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        return con.execute(sql).df()
    finally:
        con.close()


def test_every_twin_carries_its_purchase_beliefs(built):
    settings, result, demo = built
    assert result.success
    twins = _read(settings, "select * from twins.user_twins")
    purchases = _read(settings, "select * from twins.user_purchases")
    assert len(purchases) == len(twins) and set(purchases["user_id"]) == set(twins["user_id"])
    for column in ("p_alive", "expected_purchases_90d", "expected_purchases_90d_lower_90",
                   "expected_purchases_365d_upper_90", "p_purchase_30d", "median_days_to_next_purchase",
                   "expected_spend_per_purchase", "value_365d", "value_365d_lower_90", "purchase_model_fitted_on"):
        assert twins[column].notna().all(), column
    assert invalid_rows(purchases, [30, 90, 365]) == 0
    # Buyers are believed more alive and to buy more than users who never bought.
    bought = purchases["repeat_purchase_days"] > 0
    expected = purchases["expected_purchases_90d"]
    assert expected[bought].mean() > expected[~bought].mean()
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["purchase_beliefs_valid"]
    fits = _read(settings, "select * from twins.purchase_fits")
    assert len(fits) == 1 and fits["fitted_on"].iloc[0].date() == demo.end_date


def test_the_explanations_say_why_in_words(built):
    settings, _, _ = built
    why = _read(settings, "select user_id, belief, mean, lower_90, upper_90, why from twins.belief_explanations "
                          "where family = 'pareto_nbd'")
    twins = _read(settings, "select user_id from twins.user_twins")
    assert set(why["belief"]) == {"p_alive", "spend_per_purchase", "expected_purchases_30d", "expected_purchases_90d",
                                  "expected_purchases_365d", "value_30d", "value_90d", "value_365d"}
    assert len(why) == 8 * len(twins)
    text = why.loc[why["belief"] == "value_90d", "why"].iloc[0]
    assert "purchase days after the first" in text and "population Pareto/NBD r" in text and "Gamma-Gamma" in text


def test_folding_in_two_runs_gives_the_statistics_of_one(built_copy):
    settings, demo = built_copy
    con = duckdb.connect(str(settings.warehouse_path))
    try:
        whole = con.execute("select * from twins.user_purchases").df()
        reader = DuckDBReader(con)
        config = PurchaseConfig(refit_every_days=1)
        middle = demo.end_date - timedelta(days=10)
        first = update_purchases(con, reader, (demo.start_date, middle + timedelta(days=1)), config, ("purchase",),
                                 log=lambda _: None)
        second = update_purchases(con, reader, (middle + timedelta(days=1), demo.end_date + timedelta(days=1)),
                                  config, ("purchase",), log=lambda _: None)
    finally:
        con.close()
    assert first.mode == "full rebuild" and second.mode == f"incremental from the statistics of {middle}"
    pd.testing.assert_frame_equal(second.frame[STATISTICS].sort_values("user_id").reset_index(drop=True),
                                  whole[STATISTICS].sort_values("user_id").reset_index(drop=True))
    # A day's statistics use only what had landed: the first run knew fewer purchases.
    assert first.frame["repeat_purchase_days"].sum() < second.frame["repeat_purchase_days"].sum()
    assert second.fit.fitted_on == demo.end_date  # refit_every_days=1: the fit of the middle day is not reused


@pytest.mark.parametrize("horizons", [[14, 60]])
def test_the_horizons_and_rate_come_from_the_settings(tmp_path, horizons):
    from dagster_twins.location import build_definitions
    from dagster_twins.settings import Settings

    settings = Settings.load(environ={}, overrides={"purchase_horizons": horizons, "discount_rate": 0.2,
                                                    "warehouse_path": tmp_path / "w.duckdb"})
    job = build_definitions(settings).resolve_job_def("twins_pipeline")
    fields = job.run_config_schema.config_type.fields["ops"].config_type.fields["twins__user_purchases"]
    config = fields.config_type.fields["config"].config_type.fields
    assert config["horizons"].default_value == horizons and config["discount_rate"].default_value == 0.2


def test_the_planted_purchases_after_the_end_are_recovered(built):
    from dagster_twins.tools.purchases_quality import demo_recovery

    settings, _, demo = built
    truth = pd.read_csv(demo.truth_dir / "purchases.csv")
    result = demo_recovery(_read(settings, "select * from twins.user_purchases"), truth)
    assert result["users"] == len(truth)
    ninety = result["90d"]
    # 300 users, 45 days of history: a weak but real signal; better than the naive rate.
    assert ninety["correlation"] > 0.3 and ninety["correlation"] > ninety["naive_rate_correlation"] - 0.02
    assert ninety["auc_p_purchase"] > 0.65
    assert 0.5 < ninety["expected_total"] / ninety["realized_total"] < 2


def test_scenarios_filter_on_purchase_beliefs_and_report_value_kept(built):
    settings, _, _ = built
    base = _read(settings, "select * from simulation.user_segment_base")
    assert {"p_alive", "expected_purchases_90d", "value_365d"} <= set(base.columns)
    results = _read(settings, "select * from simulation.scenario_results where status = 'simulated' "
                              "and users_affected > 0")
    assert len(results)
    effects = _read(settings, "select scenario, user_id, churn_reduction from simulation.scenario_user_effects")
    for _, row in results.iterrows():
        assert row["value_column"].startswith("value_")
        assert row["expected_value_kept_lower_90"] <= row["expected_value_kept_upper_90"]
        # The mean over draws of the value kept is each user's mean churn reduction times their value, summed.
        users = effects[effects["scenario"] == row["scenario"]].merge(base[["user_id", row["value_column"]]],
                                                                      on="user_id")
        assert row["expected_value_kept"] == pytest.approx(
            (users["churn_reduction"] * users[row["value_column"]]).sum(), rel=1e-6, abs=1e-9)


def test_a_segment_on_p_alive(built):
    from dagster_twins.simulation.specs import Condition, Segment, segment_mask

    settings, _, _ = built
    base = _read(settings, "select * from simulation.user_segment_base")
    mask = segment_mask(base, Segment(description="likely still buying",
                                      where=[Condition(column="p_alive", op=">=", value=0.5)]))
    assert mask.sum() == (base["p_alive"] >= 0.5).sum()


def test_data_without_purchases_gets_no_purchase_beliefs_and_the_run_goes_on(built_copy):
    settings, demo = built_copy
    con = duckdb.connect(str(settings.warehouse_path))
    try:
        con.execute("delete from twins.purchase_fits")  # no stored fit to reuse
        day = update_purchases(con, DuckDBReader(con), (demo.start_date, demo.end_date + timedelta(days=1)),
                               PurchaseConfig(), ("no_such_event",), log=lambda _: None)
        tables = {r[0] for r in con.execute("select table_name from information_schema.tables "
                                            "where table_schema = 'twins'").fetchall()}
    finally:
        con.close()
    assert day.fit is None and "needs purchases to learn from" in day.fit_mode and day.frame.empty
    assert "user_purchases" not in tables
