"""From a survival frame to a standardized design matrix that fitting and scoring share."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Design:
    """How raw covariates become model columns: fill values, one-hot levels, scaling, what was dropped."""

    numeric: list[str]
    categorical: dict[str, list[str]]  # column -> levels kept (the first level is the baseline, dropped)
    fill: dict[str, float]
    means: dict[str, float]
    sds: dict[str, float]
    columns: list[str]  # final model columns, in order
    dropped: dict[str, str] = field(default_factory=dict)  # column -> why

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        raw = _expand(frame, self.numeric, self.categorical, self.fill)
        out = pd.DataFrame(index=frame.index)
        for c in self.columns:
            values = raw[c] if c in raw else pd.Series(0.0, index=frame.index)
            out[c] = (values - self.means[c]) / self.sds[c]
        return out


def _expand(frame: pd.DataFrame, numeric: list[str], categorical: dict[str, list[str]],
            fill: dict[str, float]) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index)
    for c in numeric:
        values = pd.to_numeric(frame[c], errors="coerce").astype(float)
        if f"{c}_missing" in fill:
            out[f"{c}_missing"] = values.isna().astype(float)
        out[c] = values.fillna(fill.get(c, 0.0))
    for c, levels in categorical.items():
        for level in levels[1:]:
            out[f"{c}={level}"] = (frame[c].astype(str) == level).astype(float)
    return out


def fit_design(frame: pd.DataFrame, numeric: list[str], categorical: list[str],
               collinear_threshold: float = 0.999) -> Design:
    """Median fill (with a missing indicator where values are missing), one-hot categoricals (first level
    dropped), then drop constant columns and columns nearly collinear with an earlier one, and standardize."""
    fill: dict[str, float] = {}
    for c in numeric:
        values = pd.to_numeric(frame[c], errors="coerce")
        fill[c] = float(values.median()) if values.notna().any() else 0.0
        if values.isna().any():
            fill[f"{c}_missing"] = 1.0
    levels = {c: sorted(frame[c].dropna().astype(str).unique().tolist()) for c in categorical}
    raw = _expand(frame, numeric, levels, fill)
    dropped: dict[str, str] = {}
    kept: list[str] = []
    for c in raw.columns:
        sd = raw[c].std()
        if not np.isfinite(sd) or sd < 1e-12:
            dropped[c] = "constant"
            continue
        for k in kept:
            corr = np.corrcoef(raw[c], raw[k])[0, 1]
            if abs(corr) >= collinear_threshold:
                dropped[c] = f"collinear with {k} (r={corr:.4f})"
                break
        else:
            kept.append(c)
    means = {c: float(raw[c].mean()) for c in kept}
    sds = {c: float(raw[c].std()) for c in kept}
    return Design(numeric, levels, fill, means, sds, kept, dropped)


def stratified_cap(frame: pd.DataFrame, event_column: str, max_rows: int, seed: int = 0) -> pd.DataFrame:
    """At most ``max_rows`` rows, sampled within event / censored strata so the event share is kept."""
    if len(frame) <= max_rows:
        return frame
    share = max_rows / len(frame)
    parts = [group.sample(frac=share, random_state=seed) for _, group in frame.groupby(event_column)]
    return pd.concat(parts).sort_index()
