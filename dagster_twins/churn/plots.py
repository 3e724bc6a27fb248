"""Calibration plot: mean predicted vs observed churn per decile of the held-out backtest, one line per horizon,
against the diagonal."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def calibration_plot(table: pd.DataFrame, path: Path, title: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    top = max(float(table["predicted"].max()) if len(table) else 0.0,
              float(table["observed"].max()) if len(table) else 0.0, 0.05) * 1.1
    ax.plot([0, top], [0, top], color="#999", linestyle="--", label="perfect calibration")
    for horizon, part in (table.groupby("horizon_days") if len(table) else []):
        ax.plot(part["predicted"], part["observed"], marker="o", label=f"{horizon} days")
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="mean predicted probability (decile)",
           ylabel="observed share", title=title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
