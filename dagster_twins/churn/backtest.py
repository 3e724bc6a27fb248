"""Out-of-time backtests per question and horizon, recalibration, naive baselines, and the final fit as of a day.

For horizon h the backtest cutoff C is the latest landmark whose h-day outcome is fully known on the as-of day D
(C + h <= D) with at least two landmarks before it. A model is fitted as if it were day C (landmarks before C,
outcomes known at C), scores the users at risk on C, and is judged against what happened in (C, C + h]. A
recalibration (``forecast.Calibrator``) is cross-fitted on those held-out scores (fit on one half of the users,
judged on the other): it is kept only where it lowers the held-out calibration error. Beside the model, naive
rankers score the same users: recency, product events per day lately, and the decayed activity rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dagster_twins.churn.forecast import (
    CHURN,
    EVENT_COLUMN,
    NUMERIC,
    QUESTION_STATE,
    RETURN,
    Calibrator,
    QuestionModel,
    derive,
    fit_calibrator,
    fit_question,
)
from dagster_twins.churn.landmarks import DEFAULT_SPEC, History, LandmarkSpec, landmark_outcomes
from dagster_twins.churn.metrics import auc, brier, calibration_by_decile

MIN_TRAINING_LANDMARKS = 2
MIN_GATED_USERS = 100  # a backtest on fewer users at risk says too little to pass or fail a gate
# An AUC is as noisy as the smaller of its two classes: on fewer events (or non-events) than this, a ranking gap
# to a naive ranker is not judged (calibration still is). Each question x horizon x baseline is a separate test at
# 5% one-sided, so a dozen of them on a handful of events each would fail a sound model by chance alone.
MIN_RANKED_EVENTS = 20


@dataclass(frozen=True)
class ForecastConfig:
    horizons: tuple[int, ...] = (7, 14, 30, 90)
    covariates: tuple[str, ...] | None = None  # None: forecast.NUMERIC
    max_fit_rows: int = 200_000
    seed: int = 0
    penalizer: float = 0.01
    spec: LandmarkSpec = DEFAULT_SPEC


@dataclass(frozen=True)
class ForecastRun:
    models: dict[str, QuestionModel]  # by question, calibrated
    metrics: pd.DataFrame  # one row per question and horizon
    calibration: pd.DataFrame  # deciles of the held-out (cross-fitted) probabilities per question and horizon
    held_out: pd.DataFrame  # every held-out row: question, horizon_days, cutoff_day, user_id, p, y, baseline scores
    training_rows: int
    training_users: int
    landmarks: int


def _fit_both(rows: pd.DataFrame, config: ForecastConfig) -> dict[str, QuestionModel]:
    covariates = list(config.covariates or NUMERIC)
    return {q: fit_question(rows, q, max(config.horizons), covariates=covariates, max_rows=config.max_fit_rows,
                            seed=config.seed, penalizer=config.penalizer, spec=config.spec) for q in (CHURN, RETURN)}


def baseline_scores(derived: pd.DataFrame, question: str) -> dict[str, np.ndarray]:
    """Naive rankers, each oriented so a higher score means the event is likelier."""
    sign = 1.0 if question == CHURN else -1.0
    return {
        "recency": sign * derived["days_since_last_active"].to_numpy(float),
        "events_per_day": -sign * derived["events_per_day"].to_numpy(float),
        "activity_rate": -sign * derived["log_activity_rate"].to_numpy(float),
    }


def _halves(user_ids: pd.Series) -> np.ndarray:
    return (pd.util.hash_array(user_ids.astype(str).to_numpy()) % 2).astype(bool)


def cross_fitted(p: np.ndarray, y: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Each half's probabilities recalibrated by a map fitted on the other half."""
    out = p.copy()
    for part in (fold, ~fold):
        if part.any() and (~part).any():
            out[part] = fit_calibrator(p[~part], y[~part])(p[part])
    return out


def evaluate(qm: QuestionModel, rows: pd.DataFrame, horizon: int, spec: LandmarkSpec
             ) -> tuple[dict, pd.DataFrame, Calibrator, pd.DataFrame]:
    """Held-out metrics of one question at one horizon on the rows scored at a cutoff (outcomes known)."""
    derived = derive(rows, spec)
    p = qm.raw(derived, [horizon])[0][:, 0]
    event_days = rows[EVENT_COLUMN[qm.question]].to_numpy(float)
    y = (np.isfinite(event_days) & (event_days <= horizon)).astype(float)
    fold = _halves(rows["user_id"])
    recalibrated = cross_fitted(p, y, fold)
    table_raw, ece_raw = calibration_by_decile(p, y)
    table_cal, ece_cal = calibration_by_decile(recalibrated, y)
    use = ece_cal < ece_raw and 0 < y.mean() < 1
    final = recalibrated if use else p
    scores = baseline_scores(derived, qm.question)
    baselines = {name: auc(score, y) for name, score in scores.items()}
    gaps = {name: auc_gap_interval(final, score, y) for name, score in scores.items()}
    metrics = {
        "question": qm.question, "horizon_days": horizon, "kind": qm.kind, "users_scored": len(rows),
        "events": int(y.sum()), "observed_rate": float(y.mean()), "mean_predicted": float(final.mean()),
        "auc": auc(final, y), **{f"auc_{name}": value for name, value in baselines.items()},
        **{f"auc_gap_{name}_{end}_90": gap[i] for name, gap in gaps.items() for i, end in enumerate(("lower",
                                                                                                    "upper"))},
        "brier": brier(final, y), "calibration_error_raw": ece_raw,
        "calibration_error": ece_cal if use else ece_raw, "recalibrated": bool(use),
    }
    table = (table_cal if use else table_raw).assign(question=qm.question, horizon_days=horizon)
    metrics["calibration_noise"] = calibration_noise(table)
    held_out = pd.DataFrame({"question": qm.question, "horizon_days": horizon, "user_id": rows["user_id"].to_numpy(),
                             "p": final, "y": y, **{f"score_{name}": score for name, score in scores.items()}})
    return metrics, table, fit_calibrator(p, y) if use else Calibrator(), held_out


def calibration_noise(table: pd.DataFrame) -> float:
    """The calibration error a perfectly calibrated model is expected to show on these deciles by chance alone:
    the mean absolute deviation of each decile's observed share around its predicted one, sqrt(2 / pi) *
    sqrt(p (1 - p) / n), weighted by users. A few dozen users make it large; tens of thousands, negligible."""
    p = table["predicted"].to_numpy(float).clip(0, 1)
    n = np.maximum(table["users"].to_numpy(float), 1.0)
    return float(np.average(np.sqrt(2 / np.pi) * np.sqrt(p * (1 - p) / n), weights=n)) if len(table) else 0.0


def auc_gap_interval(model: np.ndarray, baseline: np.ndarray, y: np.ndarray, draws: int = 200,
                     seed: int = 0) -> tuple[float, float]:
    """A 90% bootstrap interval (over users) of the model's AUC minus a baseline's on the same users."""
    if y.min() == y.max():
        return (np.nan, np.nan)
    rng = np.random.default_rng(seed)
    gaps = []
    for _ in range(draws):
        rows = rng.integers(0, len(y), len(y))
        if y[rows].min() != y[rows].max():
            gaps.append(auc(model[rows], y[rows]) - auc(baseline[rows], y[rows]))
    return (float(np.quantile(gaps, 0.05)), float(np.quantile(gaps, 0.95))) if gaps else (np.nan, np.nan)


def run_forecast(features: pd.DataFrame, history: History, as_of: int, config: ForecastConfig = ForecastConfig()
                 ) -> ForecastRun:
    """Backtest every horizon, then fit both questions as of ``as_of`` on landmarks before it and attach the
    recalibrations the backtests earned. ``features``: landmark rows (any landmarks <= as_of) of a sample of
    users; ``history``: those users' history (outcomes are read from it as known at each cutoff)."""
    features = features[features["landmark_day"] <= as_of]
    landmarks = sorted(features["landmark_day"].unique())
    fits: dict[int, dict[str, QuestionModel]] = {}
    metric_rows, tables, held_out = [], [], []
    calibrators: dict[str, dict[int, Calibrator]] = {CHURN: {}, RETURN: {}}
    for h in config.horizons:
        usable = [c for i, c in enumerate(landmarks) if c + h <= as_of and i >= MIN_TRAINING_LANDMARKS]
        if not usable:
            for q in (CHURN, RETURN):
                metric_rows.append({"question": q, "horizon_days": h, "kind": "not backtested",
                                    "note": f"no landmark with {h} days of known outcome and "
                                            f"{MIN_TRAINING_LANDMARKS} landmarks before it"})
            continue
        cutoff = int(usable[-1])
        if cutoff not in fits:
            train = landmark_outcomes(features[features["landmark_day"] < cutoff], history, cutoff, config.spec)
            fits[cutoff] = _fit_both(train, config)
        scored = landmark_outcomes(features[features["landmark_day"] == cutoff], history, as_of, config.spec)
        for q, qm in fits[cutoff].items():
            rows = scored[scored["state"] == QUESTION_STATE[q]]
            if rows.empty:
                metric_rows.append({"question": q, "horizon_days": h, "kind": "not backtested",
                                    "note": f"nobody {QUESTION_STATE[q]} on the cutoff"})
                continue
            metrics, table, calibrator, scored_rows = evaluate(qm, rows, h, config.spec)
            held_out.append(scored_rows.assign(cutoff_day=cutoff))
            metric_rows.append({**metrics, "cutoff_day": cutoff, "training_rows": qm.rows,
                                "training_events": int(qm.rate_events)})
            tables.append(table.assign(cutoff_day=cutoff))
            calibrators[q][h] = calibrator
    train = landmark_outcomes(features[features["landmark_day"] < as_of], history, as_of, config.spec)
    final = {q: qm.with_calibrators(calibrators[q]) for q, qm in _fit_both(train, config).items()}
    metrics = pd.DataFrame(metric_rows)
    calibration = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(
        columns=["decile", "users", "predicted", "observed", "question", "horizon_days", "cutoff_day"])
    return ForecastRun(final, metrics, calibration, pd.concat(held_out, ignore_index=True) if held_out else
                       pd.DataFrame(), len(train), int(train["user_id"].nunique()), len(landmarks))


def gate_failures(metrics: pd.DataFrame, calibration_ceiling: float, baseline_margin: float = 0.0,
                  baselines: Sequence[str] = ("recency", "events_per_day")) -> list[str]:
    """What fails the backtest gates, per question and horizon: a model that ranks worse than a naive baseline by
    more than ``baseline_margin`` of AUC and clearly so (the 90% bootstrap interval of the gap below zero), or a
    held-out calibration error above the ceiling plus what chance alone gives on that many users. A backtest of
    fewer than ``MIN_GATED_USERS`` users at risk is too small to judge either way and gates nothing; one with fewer
    than ``MIN_RANKED_EVENTS`` events (or non-events) gates only its calibration."""
    problems = []
    for row in metrics.to_dict("records"):
        if row.get("kind") not in ("cox", "constant_rate") or not np.isfinite(row.get("calibration_error", np.nan)):
            continue
        if row.get("users_scored", 0) < MIN_GATED_USERS:
            continue
        where = f"{row['question']} {row['horizon_days']}d"
        # A constant rate ranks nobody (too few events for a model): only its calibration is gated.
        events, users = row.get("events", 0), row.get("users_scored", 0)
        ranked = row["kind"] == "cox" and np.isfinite(row.get("auc", np.nan)) and \
            min(events, users - events) >= MIN_RANKED_EVENTS
        for name in baselines if ranked else ():
            base, upper = row.get(f"auc_{name}", np.nan), row.get(f"auc_gap_{name}_upper_90", np.nan)
            # Worse than the ranker beyond the margin and beyond sampling noise (on a few dozen events an AUC
            # moves by several hundredths from sample to sample; the interval says when the data can tell).
            if np.isfinite(base) and row["auc"] < base - baseline_margin and upper < 0:
                problems.append(f"{where}: AUC {row['auc']:.3f} below the {name} ranker's {base:.3f} "
                                f"(90% interval of the gap up to {upper:+.3f})")
        allowed = calibration_ceiling + row.get("calibration_noise", 0.0)
        if row["calibration_error"] > allowed:
            problems.append(f"{where}: calibration error {row['calibration_error']:.3f} above {allowed:.3f} (the "
                            f"ceiling {calibration_ceiling} plus {row.get('calibration_noise', 0.0):.3f} of chance "
                            "on this many users)")
    return problems
