"""A fitted forecast to JSON and back, so a stored fit can score later days and explain any past prediction."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np

from dagster_twins.churn.backtest import ForecastConfig
from dagster_twins.churn.covariates import Design
from dagster_twins.churn.forecast import Calibrator, QuestionModel
from dagster_twins.churn.landmarks import LandmarkSpec
from dagster_twins.churn.models import SurvivalModel
from dagster_twins.churn.pipeline import Forecast


def _plain(value):
    return value.tolist() if isinstance(value, np.ndarray) else value


def _model_from(raw: dict | None) -> SurvivalModel | None:
    if raw is None:
        return None
    arrays = {k: np.asarray(raw[k], dtype=float) for k in ("coef", "center", "baseline_times", "baseline_cumhaz")}
    optional = {k: np.asarray(raw[k], dtype=float) for k in ("coef_se", "param_cov") if raw.get(k) is not None}
    return SurvivalModel(kind=raw["kind"], columns=raw["columns"], intercept=raw["intercept"], rho=raw["rho"],
                         events=int(raw.get("events", 0)), **optional, **arrays)


def dumps(forecast: Forecast) -> str:
    models = {}
    for question, qm in forecast.models.items():
        models[question] = {
            "model": {k: _plain(v) for k, v in asdict(qm.model).items()} if qm.model is not None else None,
            "design": asdict(qm.design) if qm.design is not None else None,
            "rate_events": qm.rate_events, "rate_days": qm.rate_days, "rows": qm.rows, "users": qm.users,
            "calibrators": {str(h): asdict(c) for h, c in qm.calibrators.items()},
        }
    config = asdict(forecast.config)
    return json.dumps({"models": models, "config": config, "data_start": forecast.data_start})


def loads(text: str) -> Forecast:
    raw = json.loads(text)
    config = raw["config"]
    config = ForecastConfig(**{**config, "horizons": tuple(config["horizons"]),
                               "covariates": tuple(config["covariates"]) if config["covariates"] else None,
                               "spec": LandmarkSpec(**config["spec"])})
    models = {}
    for question, m in raw["models"].items():
        models[question] = QuestionModel(
            question, _model_from(m["model"]), Design(**m["design"]) if m["design"] else None,
            m["rate_events"], m["rate_days"], m["rows"], m["users"],
            {int(h): Calibrator(**c) for h, c in m["calibrators"].items()})
    return Forecast(models, config, raw["data_start"])
