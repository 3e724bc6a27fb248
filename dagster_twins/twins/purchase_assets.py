"""The purchase beliefs' asset: fold the landed purchases into each user's statistics, reuse or refit the
population's Pareto/NBD and Gamma-Gamma fit, score every user, write ``twins.user_purchases`` (which the twins'
writer then joins into ``twins.user_twins``). The maths is in ``purchases.py`` and ``purchase_state.py``."""


import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg
import duckdb
import numpy as np
import pandas as pd

from dagster_twins.metadata import md_table, table_metadata
from dagster_twins.partitions import run_window, single_run
from dagster_twins.run_config import with_defaults
from dagster_twins.settings import Settings
from dagster_twins.twins import store
from dagster_twins.twins.purchase_state import (
    STATE_COLUMNS,
    StoredFit,
    empty_state,
    fit_population,
    fold,
    statistics,
    user_purchases,
)
from dagster_twins.warehouse.buckets import BucketReader
from dagster_twins.warehouse.resources import WarehouseResource

PURCHASES_KEY = dg.AssetKey(["twins", store.USER_PURCHASES])


class PurchaseConfig(dg.Config):
    horizons: list[int] = [30, 90, 365]  # days: expected purchases and value over each
    discount_rate: float = 0.10  # yearly
    refit_every_days: int = 7  # the population fit is reused this many days
    fit_max_users: int = 200_000  # the fit's fixed hash sample of users
    full_rebuild: bool = False  # ignore the saved statistics and fold everything that has landed
    state_retention_days: int = 35  # how long daily snapshots of the statistics are kept


@dataclass(frozen=True)
class PurchaseDay:
    as_of: date
    mode: str
    fit: StoredFit | None  # None: nothing to learn from yet (no repeat purchase in the data)
    fit_mode: str
    purchases_folded: int
    frame: pd.DataFrame


def update_purchases(con: duckdb.DuckDBPyConnection, reader: BucketReader, window: tuple[date, date],
                     config: PurchaseConfig, event_types: tuple[str, ...],
                     log: Callable[[str], None] = print) -> PurchaseDay:
    """One run of the purchase beliefs as of the window's last day (no Dagster: the asset and the tests call it)."""
    start, end = window
    as_of = end - timedelta(days=1)
    base_as_of = None if config.full_rebuild else store.saved_purchase_state_day(con, start)
    mode = "full rebuild" if base_as_of is None else f"incremental from the statistics of {base_as_of}"
    evidence = store.purchase_evidence(reader, base_as_of, end, event_types)
    users = store.purchase_births(reader, as_of)
    base = empty_state() if base_as_of is None else store.purchase_state_of(con, base_as_of, STATE_COLUMNS)
    log(f"purchases as of {as_of}: {mode}; folding {int(evidence['purchases'].sum()):,} purchases of "
        f"{evidence['user_id'].nunique():,} users into the statistics of {len(users):,} users")
    state = fold(base, evidence, users)
    store.save_snapshot(con, store.PURCHASE_STATE, state.assign(as_of=pd.Timestamp(as_of)), as_of, start)
    store.prune_state(con, as_of, config.state_retention_days, store.PURCHASE_STATE)
    stats = statistics(state, as_of)
    stored = store.recent_purchase_fit(con, as_of, config.refit_every_days)
    if stored is not None:
        fit = StoredFit.from_row(stored)
        fit_mode = f"scored with the fit of {fit.fitted_on}"
    else:
        log(f"purchases: fitting the population (Pareto/NBD and Gamma-Gamma) on up to {config.fit_max_users:,} users")
        try:
            population = fit_population(stats, config.fit_max_users)
        except ValueError as exc:
            # Data without purchases (a product log, say): no purchase beliefs, and the rest of the run goes on.
            log(f"purchases: no purchase beliefs as of {as_of}: {exc}")
            store.drop_user_purchases(con)
            return PurchaseDay(as_of, mode, None, f"not fitted: {exc}", int(evidence["purchases"].sum()),
                               stats.iloc[:0])
        fit = StoredFit(population, as_of, int(min(int((stats["T"] > 0).sum()), config.fit_max_users)))
        store.save_purchase_fit(con, fit.row())
        fit_mode = f"refit as of {as_of} on {fit.users:,} users"
    frame = user_purchases(fit.population, stats, tuple(sorted(config.horizons)), config.discount_rate, as_of)
    frame["purchase_model_fitted_on"] = pd.Timestamp(fit.fitted_on)
    store.write_user_purchases(con, frame)
    return PurchaseDay(as_of, mode, fit, fit_mode, int(evidence["purchases"].sum()), frame)


def run_landing_window(context: dg.AssetExecutionContext, reader: BucketReader) -> tuple[date, date]:
    """The run's landing days, [first, day after the last): its partitions, else everything that has landed."""
    window = run_window(context.run.tags) or store.landing_span(reader)
    if window is None:
        raise dg.Failure("marts.fct_events is empty: run ingestion and dbt first")
    return window


def invalid_rows(frame: pd.DataFrame, horizons: list[int]) -> int:
    """Rows with a probability outside [0, 1], a negative or non-finite quantity, or an interval out of order."""
    bad = ~frame["p_alive"].between(0, 1) | ~np.isfinite(frame["expected_spend_per_purchase"])
    for h in horizons:
        for name in (f"expected_purchases_{h}d", f"value_{h}d"):
            low, high = frame[f"{name}_lower_90"], frame[f"{name}_upper_90"]
            bad |= ~np.isfinite(frame[name]) | (frame[name] < 0) | (low < 0) | (low > high)
        bad |= ~frame[f"p_purchase_{h}d"].between(0, 1)
    return int(bad.sum())


def build_purchase_asset(settings: Settings) -> dg.AssetsDefinition:
    config_class = with_defaults(PurchaseConfig, horizons=list(settings.purchase_horizons),
                                 discount_rate=settings.discount_rate,
                                 refit_every_days=settings.purchase_refit_every_days,
                                 fit_max_users=settings.purchase_fit_max_users)
    event_types = settings.purchase_event_types

    @dg.asset(
        key=PURCHASES_KEY, group_name="twins", kinds={"python", "duckdb"},
        deps=[dg.AssetKey(["marts", "fct_events"]), dg.AssetKey(["marts", "dim_users"])],
        backfill_policy=single_run,
        description="One row per user: purchase statistics (repeat purchase days, days to the last, days observed, "
                    "valued purchases, their mean) and beliefs: P(alive), expected purchases, P(a purchase) and "
                    "discounted value per horizon with 90% intervals, median days to the next purchase, expected "
                    "value of a purchase (Pareto/NBD + Gamma-Gamma; docs/purchases.md). Joined into user_twins. "
                    "Also twins.purchase_state (daily statistics) and twins.purchase_fits (population fits).",
        check_specs=[dg.AssetCheckSpec("purchase_beliefs_valid", asset=PURCHASES_KEY,
                                       description="Every known user scored once; probabilities in [0, 1]; "
                                                   "quantities finite and >= 0; intervals ordered.")],
    )
    def user_purchases_asset(context: dg.AssetExecutionContext, config: config_class, warehouse: WarehouseResource):
        started = time.perf_counter()
        with warehouse.reading() as (con, reader):
            window = run_landing_window(context, reader)
            day = update_purchases(con, reader, window, config, event_types, context.log.info)
            table = table_metadata(con, PURCHASES_KEY) if day.fit is not None else {}
        frame = day.frame
        if day.fit is None:
            yield dg.MaterializeResult(metadata={"dagster/row_count": 0, "as_of": str(day.as_of), "fit": day.fit_mode,
                                                 "purchases_folded": day.purchases_folded})
            yield dg.AssetCheckResult(check_name="purchase_beliefs_valid", passed=True,
                                      metadata={"users": 0, "why": day.fit_mode})
            return
        h = max(config.horizons)
        bad = invalid_rows(frame, config.horizons)
        yield dg.MaterializeResult(metadata={
            **table, "dagster/row_count": len(frame), "as_of": str(day.as_of), "mode": day.mode, "fit": day.fit_mode,
            "purchases_folded": day.purchases_folded, "seconds": round(time.perf_counter() - started, 2),
            "population": md_table(pd.DataFrame([day.fit.row()]).drop(columns=["fitted_on", "model"]), floatfmt=".4g"),
            "mean_p_alive": float(frame["p_alive"].mean()) if len(frame) else float("nan"),
            f"expected_purchases_{h}d_total": float(frame[f"expected_purchases_{h}d"].sum()),
            f"value_{h}d_total": float(frame[f"value_{h}d"].sum()),
            "preview": md_table(frame.head(10), floatfmt=".3g"),
        })
        yield dg.AssetCheckResult(check_name="purchase_beliefs_valid",
                                  passed=bool(bad == 0 and frame["user_id"].is_unique),
                                  metadata={"bad_rows": bad, "users": len(frame)})

    return user_purchases_asset
