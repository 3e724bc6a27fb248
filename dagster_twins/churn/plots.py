"""Calibration plot: mean predicted vs observed 30-day churn per decile, against the diagonal."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def calibration_plot(table: pd.DataFrame, path: Path, title: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    top = max(float(table["predicted"].max()), float(table["observed"].max()), 0.05) * 1.1
    ax.plot([0, top], [0, top], color="#999", linestyle="--", label="perfect calibration")
    ax.plot(table["predicted"], table["observed"], marker="o", color="#1f77b4", label="deciles")
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="mean predicted P(churn within 30 days)",
           ylabel="observed share churned within 30 days", title=title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
