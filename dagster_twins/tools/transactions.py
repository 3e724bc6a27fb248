"""The churn layer on a public transaction log nobody here wrote: CDNOW (23,570 customers' CD purchases,
1997-01 .. 1998-06), as shipped inside the lifetimes package (``lifetimes/datasets/CDNOW_master.txt``; the file
is read, the package is never imported).

The log becomes landing files (one events file a day: ``user_id, occurred_at, event_type=purchase, value``), the
real pipeline (ingestion, dbt, churn) runs on the calibration period only, and the predictions as of its last day
are judged against the holdout: did the customer buy at all in it? Ranked for everyone by the probability of buying
within h days (lapsed customers: P(return within h); active ones: not lapsing, or lapsing and coming back), beside
ranking by recency and by frequency.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from dagster_twins.churn.forecast import RETURN, derive
from dagster_twins.churn.landmarks import LAPSED
from dagster_twins.churn.metrics import auc
from dagster_twins.churn.serialize import loads
from dagster_twins.pipeline import run_pipeline
from dagster_twins.settings import Settings
from dagster_twins.warehouse.tables import connect

CALIBRATION_END = date(1997, 9, 30)  # 39 weeks to learn from
HOLDOUT_END = date(1998, 6, 30)  # 39 weeks to check


def cdnow_file() -> Path:
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the CDNOW log ships in the lifetimes package: pip install lifetimes==0.11.3 "
                                "(it is in requirements.lock)")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "CDNOW_master.txt"


def load_cdnow(path: Path | None = None) -> pd.DataFrame:
    """customer_id, date, number_of_cds, dollar_value: one row per customer and purchase day."""
    frame = pd.read_csv(path or cdnow_file(), sep=r"\s+", header=0,
                        names=["customer_id", "date", "number_of_cds", "dollar_value"], dtype={"customer_id": str})
    frame["date"] = pd.to_datetime(frame["date"].astype(str), format="%Y%m%d")
    return frame


def write_landing(transactions: pd.DataFrame, landing: Path, last_day: date) -> int:
    """One events file a day up to ``last_day``; returns the rows written."""
    folder = landing / "events"
    folder.mkdir(parents=True, exist_ok=True)
    kept = transactions[transactions["date"].dt.date <= last_day]
    for day, rows in kept.groupby(kept["date"].dt.date):
        pd.DataFrame({"user_id": "c" + rows["customer_id"], "occurred_at": pd.to_datetime(day) + pd.Timedelta(hours=12),
                      "event_type": "purchase", "value": rows["dollar_value"]}).to_csv(
            folder / f"{day.isoformat()}.csv", index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
    return len(kept)


def _return_after_lapsing(forecast, raw: pd.DataFrame, users: pd.Series, horizons: list[int]) -> dict[int, np.ndarray]:
    """P(return within h) of each user (in ``users`` order) as if they had just lapsed today."""
    if not horizons:
        return {}
    spec = forecast.config.spec
    lapsing = raw.set_index("user_id").reindex(users.to_numpy()).reset_index()
    # Rolled forward to the lapse: the silent days pass, the recent window empties, the decayed evidence fades.
    shift = np.maximum(spec.inactivity_days + 1 - lapsing["days_since_last_active"], 0)
    for column in ("tenure_days", "observed_days", "days_since_last_active"):
        lapsing[column] = lapsing[column] + shift
    lapsing["events_previous_window"] = lapsing["events_in_window"]
    for column in ("events_in_window", "interactions_in_window", "active_days_in_window", "tickets_in_window",
                   "tickets_last_week"):
        lapsing[column] = 0.0
    lapsing["decayed_interactions"] = lapsing["decayed_interactions"] * 0.5 ** (shift / spec.half_life_days)
    lapsing["state"] = LAPSED
    p, _, _ = forecast.models[RETURN].predict(derive(lapsing, forecast.config.spec), horizons)
    return {h: p[:, j] for j, h in enumerate(horizons)}


@dataclass(frozen=True)
class TransactionEvaluation:
    customers: int
    scored: int
    questions: dict
    table: pd.DataFrame  # one row per horizon and ranker: AUC of "bought in the holdout"
    holdout_buyers: int


def evaluate(root: Path, horizons: tuple[int, ...] = (30, 90, 273)) -> TransactionEvaluation:
    transactions = load_cdnow()
    settings = Settings(warehouse_path=root / "warehouse.duckdb", landing_dir=root / "landing",
                        sources_config=root / "sources.yml", partition_start=date(1997, 1, 1), dbt_target="duckdb")
    write_landing(transactions, settings.landing_dir, CALIBRATION_END)
    config = {"ops": {"churn_model": {"config": {"horizons": list(horizons)}}}}
    first = transactions["date"].min().date()
    for layer in ("ingestion", "transform", "churn"):
        result = run_pipeline(settings, first, CALIBRATION_END, instance=dg.DagsterInstance.ephemeral(), layer=layer,
                              run_config=config if layer == "churn" else None, raise_on_error=False)
        if not result.success:
            raise RuntimeError(f"the {layer} layer failed on the CDNOW log")
    con = connect(settings.warehouse_path, read_only=True)
    try:
        predictions = con.execute("select * from churn.churn_predictions").df()
        raw = con.execute("select * from churn.scored_user_covariates").df()
        forecast = loads(con.execute("select model_json from churn.churn_models").fetchone()[0])
    finally:
        con.close()
    covariates = raw[["user_id", "active_days_total"]]
    holdout = transactions[(transactions["date"].dt.date > CALIBRATION_END)
                           & (transactions["date"].dt.date <= HOLDOUT_END)]
    buyers = set("c" + holdout["customer_id"])
    customers = "c" + pd.Series(transactions.loc[transactions["date"].dt.date <= CALIBRATION_END,
                                                  "customer_id"].unique())
    frame = pd.DataFrame({"user_id": customers}).merge(predictions, on="user_id", how="left").merge(
        covariates, on="user_id", how="left")
    y = frame["user_id"].isin(buyers).to_numpy()
    # An active customer buys within h days unless they lapse (within the inactivity window: 30 days) and then do
    # not come back in the rest of the h days: P = 1 - P(churn within 30) x (1 - P(return within h - 30 | just
    # lapsed)), the second factor from the return model on their covariates as they would be on lapsing.
    window = forecast.config.spec.inactivity_days
    lapsed = (frame["question"] == "return").to_numpy()
    comeback = _return_after_lapsing(forecast, raw, frame["user_id"], [h - window for h in horizons if h > window])
    recency = -frame["days_since_last_active"].to_numpy(float)
    frequency = frame["active_days_total"].to_numpy(float)
    rows = []
    for h in horizons:
        if h < window or f"p_churn_{window}d" not in frame:
            continue
        back = comeback[h - window] if h > window else 0.0
        score = np.where(lapsed, frame[f"p_return_{h}d"], 1 - frame[f"p_churn_{window}d"] * (1 - back))
        rows.append({"customers": "everyone", "horizon_days": h, "ranker": "the model: P(active in the next h days)",
                     "auc": auc(np.nan_to_num(score, nan=-1.0), y)})
        rows.append({"customers": "lapsed", "horizon_days": h, "ranker": "the model: P(return within h days)",
                     "auc": auc(frame.loc[lapsed, f"p_return_{h}d"].to_numpy(float), y[lapsed])})
    for who, rows_of in (("everyone", slice(None)), ("lapsed", lapsed)):
        rows.append({"customers": who, "horizon_days": None, "ranker": "recency (days since the last purchase)",
                     "auc": auc(recency[rows_of], y[rows_of])})
        rows.append({"customers": who, "horizon_days": None, "ranker": "frequency (purchase days so far)",
                     "auc": auc(frequency[rows_of], y[rows_of])})
    return TransactionEvaluation(len(frame), int(frame["question"].notna().sum()),
                                 frame["question"].value_counts().to_dict(), pd.DataFrame(rows), int(y.sum()))


def evaluate_in_subprocess(root: Path, module: str = "dagster_twins.tools.transactions") -> dict:
    """``module``'s ``evaluate`` in a fresh interpreter (its ``__main__`` prints the result as JSON): the daily
    partitions start when the code location loads (``TWINS_PARTITION_START``), and CDNOW's 1997 is before the
    default start."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "TWINS_PARTITION_START": "1997-01-01", "DAGSTER_HOME": str(root / "dagster_home")}
    (root / "dagster_home").mkdir(parents=True, exist_ok=True)
    out = subprocess.run([sys.executable, "-m", module, str(root)], env=env,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


if __name__ == "__main__":
    import json
    import logging
    import sys

    logging.disable(logging.INFO)
    result = evaluate(Path(sys.argv[1]))
    print(json.dumps({"customers": result.customers, "scored": result.scored, "questions": result.questions,
                      "holdout_buyers": result.holdout_buyers, "table": result.table.to_dict("records")}))
