"""Validation metrics for churn predictions: concordance, AUC, Brier score and calibration by decile."""

from __future__ import annotations

import numpy as np
import pandas as pd


def concordance(duration: np.ndarray, risk: np.ndarray, event: np.ndarray) -> float:
    """Harrell's C: the share of comparable pairs where the higher risk churned first."""
    from lifelines.utils import concordance_index  # imported on use: the code location loads without lifelines

    return float(concordance_index(duration, -np.asarray(risk), event))


def auc(score: np.ndarray, outcome: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    y = np.asarray(outcome).astype(bool)
    n_pos, n_neg = y.sum(), (~y).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(score).rank(method="average").to_numpy()
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def brier(prob: np.ndarray, outcome: np.ndarray) -> float:
    return float(np.mean((np.asarray(prob) - np.asarray(outcome, dtype=float)) ** 2))


def calibration_by_decile(prob: np.ndarray, outcome: np.ndarray, bins: int = 10) -> tuple[pd.DataFrame, float]:
    """Mean predicted vs observed rate per decile of predicted probability, and the expected calibration
    error (the count-weighted mean absolute gap). Tied predictions stay in one bin (a constant prediction is one
    bin): splitting ties would group users by their row order, not by what was predicted."""
    frame = pd.DataFrame({"p": prob, "y": np.asarray(outcome, dtype=float)})
    bins_of = pd.qcut(frame["p"], q=min(bins, len(frame)), labels=False, duplicates="drop")
    frame["decile"] = bins_of.fillna(0).astype(int) + 1  # one value throughout: qcut finds no edges, one bin
    table = frame.groupby("decile").agg(users=("y", "size"), predicted=("p", "mean"), observed=("y", "mean"))
    ece = float(np.average(np.abs(table["predicted"] - table["observed"]), weights=table["users"]))
    return table.reset_index(), ece
