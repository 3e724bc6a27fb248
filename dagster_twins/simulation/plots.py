"""Scenario plot: the retention difference over draws, for the intervention and for its placebo."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def scenario_plot(draws: pd.DataFrame, path: Path, title: str) -> Path | None:
    """Histograms of the per-draw retention difference (percentage points) of the intervention and of the
    placebo, with zero marked; None when there is nothing to draw."""
    if draws.empty:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    values = 100 * draws[["retention_difference", "placebo_difference"]].to_numpy()
    bins = np.histogram_bin_edges(values[np.isfinite(values)], bins=40)
    ax.hist(values[:, 0], bins=bins, alpha=0.7, color="#1f77b4", label="intervention")
    ax.hist(values[:, 1], bins=bins, alpha=0.5, color="#999", label="placebo (no effect)")
    ax.axvline(0, color="black", linewidth=1)
    ax.set(xlabel="retention at the horizon, scenario minus baseline (percentage points)", ylabel="draws",
           title=title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
