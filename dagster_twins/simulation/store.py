"""The simulation layer's tables: campaign effects, the segment base, each scenario's results, their history
and per-user effects, and the policy ranking. The other layers' tables it reads are named here, in SQL."""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pandas as pd

from dagster_twins.warehouse.buckets import DuckDBReader, all_buckets
from dagster_twins.warehouse.tables import replace_rows, table_exists

SCHEMA = "simulation"


def segment_base_sql(churn_horizons: list[int], purchase_columns: list[str] = ()) -> str:
    """What segments can filter on: each active user's churn prediction at every horizon (and its percentile),
    twin (with its purchase beliefs: ``purchase_columns`` of twins.user_twins) and recent behaviour. Written as a
    table once a day: every scenario reads it (as a view, each of them re-ran its joins and window sorts: 0.10 s a
    read against 0.025 s from the table at 10,000 users, loaded machine)."""
    purchases = "".join(f"t.{c}, " for c in purchase_columns)
    probabilities = ", ".join(f"p.p_churn_{h}d, percent_rank() over (order by p.p_churn_{h}d) as "
                              f"p_churn_{h}d_percentile" for h in churn_horizons)
    return f"""
create or replace table {SCHEMA}.user_segment_base as
select
    p.user_id, p.tenure_days, {probabilities},
    p.risk_tier, p.log_hazard_ratio,
    t.top_interest, t.primary_goal, t.preferred_channel, t.preferred_format, t.rec_click_propensity,
    t.campaign_response_propensity, t.interactions_per_week, t.purchases_per_week, t.tickets_per_30_days,
    t.overall_confidence, {purchases}
    f.plan, f.acquisition_channel, f.days_since_last_active, f.events_in_window, f.active_days_in_window,
    f.tickets_in_window, f.open_tickets, f.campaign_treated, f.campaign_control,
    p.as_of
from churn.churn_predictions as p
left join twins.user_twins as t on p.user_id = t.user_id
left join churn.scored_user_covariates as f on p.user_id = f.user_id
where p.question = 'churn'
"""


def churn_horizons(con: duckdb.DuckDBPyConnection) -> list[int]:
    """The horizons the churn predictions carry (configuration of the churn layer), from their columns."""
    columns = [row[0] for row in con.execute("describe churn.churn_predictions").fetchall()]
    return sorted(int(c[len("p_churn_"):-1]) for c in columns if c.startswith("p_churn_") and c.endswith("d"))


PURCHASE_PREFIXES = ("p_alive", "expected_purchases_", "p_purchase_", "value_", "expected_spend_per_purchase",
                     "median_days_to_next_purchase")


def purchase_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The purchase beliefs twins.user_twins carries (none before the twins' purchase model has run)."""
    if not table_exists(con, "twins", "user_twins"):
        return []
    columns = [row[0] for row in con.execute("describe twins.user_twins").fetchall()]
    return [c for c in columns if c.startswith(PURCHASE_PREFIXES)]


def refresh_segment_base(con: duckdb.DuckDBPyConnection, preview_rows: int = 5) -> tuple[int, pd.DataFrame]:
    """(Re)write the segment base table for the churn layer's current horizons: its rows and a preview. (A
    warehouse from before it was a table has a view of that name: replaced.)"""
    con.execute(f"create schema if not exists {SCHEMA}")
    kind = con.execute("select table_type from information_schema.tables where table_schema = ? and table_name = "
                       "'user_segment_base'", [SCHEMA]).fetchone()
    if kind is not None and kind[0] == "VIEW":
        con.execute(f"drop view {SCHEMA}.user_segment_base")
    con.execute(segment_base_sql(churn_horizons(con), purchase_columns(con)))
    rows = int(con.execute(f"select count(*) from {SCHEMA}.user_segment_base").fetchone()[0])
    return rows, con.execute(f"select * from {SCHEMA}.user_segment_base limit {int(preview_rows)}").df()


def segment_base(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute(f"select * from {SCHEMA}.user_segment_base").df()


def scored_users(con: duckdb.DuckDBPyConnection) -> int:
    return int(con.execute("select count(*) from churn.scored_user_covariates").fetchone()[0])


def active_covariates(con: duckdb.DuckDBPyConnection, buckets: int) -> Iterator[pd.DataFrame]:
    """The active users' covariates as the churn layer scored them, a bucket of users at a time. (The churn
    layer's tables live in the DuckDB file whichever engine built the marts.)"""
    reader = DuckDBReader(con)
    for bucket in all_buckets(buckets):
        yield reader.table_frame("churn.scored_user_covariates", where="state = 'active'", bucket=bucket)


def save_effects(con: duckdb.DuckDBPyConnection, effects: pd.DataFrame) -> None:
    replace_rows(con, SCHEMA, "campaign_effects", effects)


def campaign_effects(con: duckdb.DuckDBPyConnection) -> pd.DataFrame | None:
    """simulation.campaign_effects as it stands (None before the first run)."""
    if not table_exists(con, SCHEMA, "campaign_effects"):
        return None
    return con.sql(f"select * from {SCHEMA}.campaign_effects").df()


def save_scenario(con: duckdb.DuckDBPyConnection, name: str, result: pd.DataFrame, users: pd.DataFrame,
                  as_of: pd.Timestamp) -> None:
    """A scenario's result row (current and in its history of as-of days) and its per-user effects."""
    replace_rows(con, SCHEMA, "scenario_results", result, {"scenario": name})
    replace_rows(con, SCHEMA, "scenario_results_history", result, {"scenario": name, "as_of": as_of})
    replace_rows(con, SCHEMA, "scenario_user_effects", users, {"scenario": name})


def save_targeting(con: duckdb.DuckDBPyConnection, name: str, results: pd.DataFrame, users: pd.DataFrame,
                   as_of: pd.Timestamp) -> None:
    """A targeting scenario's rows, one per policy (``<name>:<policy>``; one ``<name>`` row when skipped): the
    scenario's earlier rows go, whichever they were."""
    if table_exists(con, SCHEMA, "scenario_results"):
        for table, extra in (("scenario_results", ""), ("scenario_results_history", " and as_of = ?")):
            con.execute(f"delete from {SCHEMA}.{table} where (scenario = ? or starts_with(scenario, ?)){extra}",
                        [name, f"{name}:", *([as_of] if extra else [])])
    for scenario, row in results.groupby("scenario", sort=False):
        replace_rows(con, SCHEMA, "scenario_results", row, {"scenario": scenario})
        replace_rows(con, SCHEMA, "scenario_results_history", row, {"scenario": scenario, "as_of": as_of})
    replace_rows(con, SCHEMA, "scenario_user_effects", users, {"scenario": name})


def save_user_effects(con: duckdb.DuckDBPyConnection, effects: pd.DataFrame, curves: pd.DataFrame,
                      summary: pd.DataFrame) -> None:
    """Every campaign's per-user effects, uplift curves and their summaries (Qini coefficient, AUUC); none: the
    tables are emptied (a previous run's rows never stay by accident)."""
    if effects.empty:
        for table in ("user_treatment_effects", "uplift_curves", "uplift_summary"):
            if table_exists(con, SCHEMA, table):
                con.execute(f"delete from {SCHEMA}.{table}")
        return
    replace_rows(con, SCHEMA, "user_treatment_effects", effects)
    replace_rows(con, SCHEMA, "uplift_curves", curves)
    replace_rows(con, SCHEMA, "uplift_summary", summary)


def save_uplift_models(con: duckdb.DuckDBPyConnection, models: pd.DataFrame) -> None:
    """The fit behind each campaign's current per-user effects (campaign_id, fitted_on, inputs_fingerprint,
    model_json, info_json): what a later day needs to reuse it. Replaced whole, as the effects are."""
    if models.empty:
        if table_exists(con, SCHEMA, "uplift_models"):
            con.execute(f"delete from {SCHEMA}.uplift_models")
        return
    replace_rows(con, SCHEMA, "uplift_models", models)


def stored_uplift_fits(con: duckdb.DuckDBPyConnection) -> dict[str, dict]:
    """Per campaign, its stored fit as the tables hold it: the uplift_models row (with ``fitted_on``, the model's
    JSON, the fingerprint of its inputs) and its randomized users' rows, curves and summary of the same fit; a
    campaign whose rows do not all carry that fit's day is left out (refitted, never mixed)."""
    names = ("uplift_models", "user_treatment_effects", "uplift_curves", "uplift_summary")
    if not all(table_exists(con, SCHEMA, t) for t in names):
        return {}
    if "fitted_on" not in {row[0] for row in con.execute(f"describe {SCHEMA}.user_treatment_effects").fetchall()}:
        return {}  # effects from before fits were stored
    out = {}
    for row in con.sql(f"select * from {SCHEMA}.uplift_models").df().to_dict("records"):
        key = [row["campaign_id"], row["fitted_on"]]
        where = "where campaign_id = ? and fitted_on = ?"
        randomized = con.execute(f"select * from {SCHEMA}.user_treatment_effects {where} and population = "
                                 "'randomized'", key).df()
        curves = con.execute(f"select * from {SCHEMA}.uplift_curves {where}", key).df()
        summary = con.execute(f"select * from {SCHEMA}.uplift_summary {where}", key).df()
        if len(randomized) and len(curves) and len(summary):
            out[str(row["campaign_id"])] = {**row, "randomized": randomized, "curves": curves, "summary": summary}
    return out


def user_effects(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """simulation.user_treatment_effects (no rows, with its key column, before any campaign had effects)."""
    if not table_exists(con, SCHEMA, "user_treatment_effects"):
        return pd.DataFrame(columns=["campaign_id", "as_of"])
    return con.sql(f"select * from {SCHEMA}.user_treatment_effects").df()


def scenario_results(con: duckdb.DuckDBPyConnection, names: list[str]) -> pd.DataFrame | None:
    """The current results of the named scenarios (a targeting scenario's rows are ``<name>:<policy>``; None
    before any scenario has run)."""
    if not table_exists(con, SCHEMA, "scenario_results"):
        return None
    results = con.execute(f"select * from {SCHEMA}.scenario_results").df()
    return results[results["scenario"].str.split(":").str[0].isin(names)]


def save_ranking(con: duckdb.DuckDBPyConnection, ranking: pd.DataFrame) -> None:
    replace_rows(con, SCHEMA, "scenario_policy_ranking", ranking)


def segment_as_of(con: duckdb.DuckDBPyConnection) -> pd.Timestamp:
    """The day the segment base (the churn predictions) is as of."""
    return pd.Timestamp(con.execute(f"select max(as_of) from {SCHEMA}.user_segment_base").fetchone()[0])
