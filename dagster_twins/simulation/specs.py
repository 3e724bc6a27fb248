"""Scenario specs: YAML files in ``scenarios/``, validated against a schema. A bad spec fails with the file and
the field at fault, e.g. ``scenarios/x.yaml: intervention.effect.hazard_ratio.median: must be > 0``.

    name: retention_campaign_top_risk_decile
    description: Send the retention campaign to the users most likely to churn.
    segment:
      description: The 10% of active users with the highest 30-day churn probability
      where:
        - {column: p_churn_30d_percentile, op: ">=", value: 0.9}
    intervention:
      description: The retention campaign, as randomized in the data
      effect: {kind: estimated, campaign_id: retention_q}
    horizon_days: 60
    draws: 1000
    seed: 11
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Scalar = float | int | str | bool


class ScenarioSpecError(ValueError):
    """A scenario spec that cannot be used; the message names the field (and the file, once the caller adds it:
    ``naming_file``)."""


@contextmanager
def naming_file(path: Path) -> Iterator[None]:
    """Spec errors raised inside the block name ``path`` first."""
    try:
        yield
    except ScenarioSpecError as exc:
        raise ScenarioSpecError(f"{path}: {exc}") from exc


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(_Strict):
    column: str
    op: Literal["==", "!=", "<", "<=", ">", ">=", "in", "not in", "is null", "is not null"]
    value: Scalar | list[Scalar] | None = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> Condition:
        if self.op in ("is null", "is not null"):
            if self.value is not None:
                raise ValueError(f"op {self.op!r} takes no value")
        elif self.op in ("in", "not in"):
            if not isinstance(self.value, list) or not self.value:
                raise ValueError(f"op {self.op!r} needs a non-empty list as value")
        elif self.value is None or isinstance(self.value, list):
            raise ValueError(f"op {self.op!r} needs a single value")
        return self


class Segment(_Strict):
    description: str
    where: list[Condition] = Field(default_factory=list)  # all must hold; none: every active user


class HazardRatioBelief(_Strict):
    """An assumed hazard ratio: its median and a 90% interval (below 1 lowers churn)."""

    median: float = Field(gt=0)
    lower_90: float = Field(gt=0)
    upper_90: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> HazardRatioBelief:
        if not self.lower_90 <= self.median <= self.upper_90:
            raise ValueError("needs lower_90 <= median <= upper_90")
        return self


class Shift(_Strict):
    """A change to one covariate of the churn survival frame: set it, add to it or multiply it."""

    column: str
    set: float | None = None
    add: float | None = None
    multiply: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_operation(self) -> Shift:
        if sum(v is not None for v in (self.set, self.add, self.multiply)) != 1:
            raise ValueError("give exactly one of set, add, multiply")
        return self

    def apply(self, values: pd.Series) -> pd.Series:
        if self.set is not None:
            out = pd.Series(self.set, index=values.index, dtype=float)
        elif self.add is not None:
            out = values.astype(float) + self.add
        else:
            out = values.astype(float) * self.multiply
        return out.clip(lower=0.0)  # counts, rates and shares cannot go below zero


class Effect(_Strict):
    kind: Literal["estimated", "assumed", "covariate_shift"]
    campaign_id: str | None = None  # estimated: the randomized campaign whose measured effect is used
    hazard_ratio: HazardRatioBelief | None = None  # assumed
    shifts: list[Shift] = Field(default_factory=list)  # covariate_shift: what changes; the model says what follows

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> Effect:
        needs = {"estimated": "campaign_id", "assumed": "hazard_ratio", "covariate_shift": "shifts"}
        for kind, field in needs.items():
            given = bool(getattr(self, field))
            if kind == self.kind and not given:
                raise ValueError(f"kind {kind!r} needs {field}")
            if kind != self.kind and given:
                raise ValueError(f"{field} is for kind {kind!r}, not {self.kind!r}")
        return self


class Intervention(_Strict):
    description: str
    effect: Effect


class Targeting(_Strict):
    """Who in the segment gets the intervention: the ``users`` (or the ``share``, or as many as ``budget`` /
    ``cost_per_send`` pays for) ranked first by ``policy``: ``benefit`` (the estimated per-user effect,
    simulation.user_treatment_effects), ``risk`` (churn probability without it) or ``random``. The results of all
    three policies are reported side by side; ``policy`` names the one the scenario proposes."""

    policy: Literal["benefit", "risk", "random"] = "benefit"
    users: int | None = Field(default=None, ge=1)
    share: float | None = Field(default=None, gt=0, le=1)
    budget: float | None = Field(default=None, gt=0)
    cost_per_send: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_size(self) -> Targeting:
        if sum(v is not None for v in (self.users, self.share, self.budget)) != 1:
            raise ValueError("give exactly one of users, share, budget")
        if self.budget is not None and self.cost_per_send is None:
            raise ValueError("budget needs cost_per_send")
        return self


class ScenarioSpec(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    description: str
    segment: Segment
    intervention: Intervention
    horizon_days: int = Field(ge=1, le=365)
    draws: int = Field(default=1000, ge=20, le=100_000)
    seed: int = Field(default=0, ge=0)
    targeting: Targeting | None = None  # treat only the best-ranked users of the segment (an estimated effect)

    @model_validator(mode="after")
    def _targeting_needs_a_campaign(self) -> ScenarioSpec:
        if self.targeting is not None and self.intervention.effect.kind != "estimated":
            raise ValueError("targeting ranks users by a randomized campaign's per-user effects: it needs "
                             "intervention.effect.kind 'estimated' (with campaign_id)")
        return self


def _field_path(location: tuple[Any, ...]) -> str:
    out = ""
    for part in location:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def load_spec(path: Path) -> ScenarioSpec:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ScenarioSpecError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ScenarioSpecError(f"{path}: (top level): expected a mapping of fields, got {type(raw).__name__}")
    raw.setdefault("name", path.stem)
    try:
        return ScenarioSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{_field_path(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ScenarioSpecError(f"{path}: {problems}") from None


def load_specs(folder: Path) -> dict[str, tuple[ScenarioSpec, Path]]:
    """Every ``*.yaml`` / ``*.yml`` spec in the folder, by name (names must be unique)."""
    specs: dict[str, tuple[ScenarioSpec, Path]] = {}
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if folder.is_dir() else []:
        spec = load_spec(path)
        if spec.name in specs:
            raise ScenarioSpecError(f"{path}: name: {spec.name!r} is also the name of {specs[spec.name][1]}")
        specs[spec.name] = (spec, path)
    return specs


OPS = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal, ">": np.greater,
       ">=": np.greater_equal}


def segment_mask(frame: pd.DataFrame, segment: Segment) -> np.ndarray:
    """Rows of ``frame`` in the segment. A column the frame does not have fails naming the spec's field."""
    mask = np.ones(len(frame), dtype=bool)
    for i, cond in enumerate(segment.where):
        if cond.column not in frame:
            raise ScenarioSpecError(f"segment.where[{i}].column: no column {cond.column!r}; segments can "
                                    f"filter on {', '.join(sorted(frame.columns))}")
        values = frame[cond.column]
        if cond.op == "is null":
            hit = values.isna().to_numpy()
        elif cond.op == "is not null":
            hit = values.notna().to_numpy()
        elif cond.op in ("in", "not in"):
            hit = values.isin(cond.value).to_numpy() ^ (cond.op == "not in")
        else:
            numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
            if numeric != (isinstance(cond.value, int | float) and not isinstance(cond.value, bool)):
                raise ScenarioSpecError(f"segment.where[{i}].value: {cond.value!r} cannot be compared with "
                                        f"column {cond.column!r} ({values.dtype})")
            hit = OPS[cond.op](values.to_numpy(), cond.value) & values.notna().to_numpy()
        mask &= hit
    return mask
