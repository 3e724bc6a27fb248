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
    fig, ax = _figure(path)
    values = 100 * draws[["retention_difference", "placebo_difference"]].to_numpy()
    bins = np.histogram_bin_edges(values[np.isfinite(values)], bins=40)
    ax.hist(values[:, 0], bins=bins, alpha=0.7, color="#1f77b4", label="intervention")
    ax.hist(values[:, 1], bins=bins, alpha=0.5, color="#999", label="placebo (no effect)")
    ax.axvline(0, color="black", linewidth=1)
    return _saved(fig, ax, path, "retention at the horizon, scenario minus baseline (percentage points)", "draws",
                  title)


def _figure(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return plt.subplots(figsize=(7, 4), dpi=100)


def _saved(fig, ax, path: Path, xlabel: str, ylabel: str, title: str) -> Path:
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


POLICY_COLORS = {"benefit": "#1f77b4", "risk": "#d62728", "random": "#999"}


def uplift_plot(curves: pd.DataFrame, path: Path, title: str) -> Path | None:
    """Qini curves (users kept per randomized user, by share targeted) of each targeting policy, with their 90%
    bootstrap bands and the random-targeting line; None when there is nothing to draw."""
    if curves.empty:
        return None
    fig, ax = _figure(path)
    for policy, c in curves.groupby("policy", sort=False):
        x = 100 * np.r_[0.0, c["share_targeted"].to_numpy()]
        ax.plot(x, 100 * np.r_[0.0, c["qini"].to_numpy()], color=POLICY_COLORS.get(policy), label=policy,
                linestyle="--" if policy == "random" else "-")
        if c["qini_lower_90"].notna().all():
            ax.fill_between(x[1:], 100 * c["qini_lower_90"], 100 * c["qini_upper_90"],
                            color=POLICY_COLORS.get(policy), alpha=0.15)
    ax.axhline(0, color="black", linewidth=0.8)
    return _saved(fig, ax, path, "users targeted (% of the randomized users, best-ranked first)",
                  "users kept per 100 users (Qini)", title)


def targeting_plot(gains: pd.DataFrame, path: Path, title: str) -> Path | None:
    """Histograms over bootstrap replicates of the users each policy keeps; None when there is nothing to draw."""
    if gains.empty:
        return None
    fig, ax = _figure(path)
    values = gains.to_numpy(float)
    bins = np.histogram_bin_edges(values[np.isfinite(values)], bins=40)
    for policy in gains.columns:
        ax.hist(gains[policy], bins=bins, alpha=0.5, color=POLICY_COLORS.get(policy), label=policy)
    ax.axvline(0, color="black", linewidth=1)
    return _saved(fig, ax, path, "users kept at the horizon (bootstrap over the randomized users)", "replicates",
                  title)
