"""Fitted models and designs to JSON and back, so a stored fit can score later days and explain any
past prediction."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np

from dagster_twins.churn.covariates import Design
from dagster_twins.churn.models import SurvivalModel


def dumps(model: SurvivalModel, design: Design) -> str:
    def plain(value):
        return value.tolist() if isinstance(value, np.ndarray) else value

    return json.dumps({"model": {k: plain(v) for k, v in asdict(model).items()}, "design": asdict(design)})


def loads(text: str) -> tuple[SurvivalModel, Design]:
    raw = json.loads(text)
    m = raw["model"]
    arrays = {k: np.asarray(m[k], dtype=float) for k in ("coef", "center", "baseline_times", "baseline_cumhaz")}
    optional = {k: np.asarray(m[k], dtype=float) for k in ("coef_se", "param_cov") if m.get(k) is not None}
    model = SurvivalModel(kind=m["kind"], columns=m["columns"], intercept=m["intercept"], rho=m["rho"],
                          events=int(m.get("events", 0)), **optional, **arrays)
    return model, Design(**raw["design"])
