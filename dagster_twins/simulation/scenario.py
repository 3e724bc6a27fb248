"""One scenario from spec to tables: pick the segment, resolve the effect, simulate, summarize."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from dagster_twins.simulation.effects import EffectUnavailable, HazardRatioDistribution, estimated_distribution
from dagster_twins.simulation.engine import HazardModel, combine, draw_parameters, simulate, summarize_outcome
from dagster_twins.simulation.specs import ScenarioSpec, ScenarioSpecError, segment_mask

EFFECT_KINDS = {
    "estimated": "estimated from a randomized campaign in the data",
    "assumed": "assumed in the scenario spec (not measured)",
    "covariate_shift": "implied by the churn model's coefficients (associational, not a measured causal effect)",
}


USER_COLUMNS = ["scenario", "user_id", "tenure_days", "baseline_churn_probability", "scenario_churn_probability",
                "churn_reduction", "churn_reduction_lower_90", "churn_reduction_upper_90"]
DRAW_COLUMNS = ["draw", "retention_difference", "placebo_difference"]
# scenario_results, column by column (BI reads it): text columns, then numbers (intervals are 90%).
RESULT_TEXT = ["scenario", "description", "segment", "segment_filter", "intervention", "status", "status_reason",
               "effect_kind", "effect_basis", "effect_source", "model", "value_column"]
_WITH_INTERVAL = ["baseline_retention", "scenario_retention", "retention_difference", "expected_users_kept",
                  "placebo_difference", "expected_value_kept"]
RESULT_NUMBERS = ["users_affected", "horizon_days", "draws", "seed", "effect_hazard_ratio",
                  "effect_hazard_ratio_lower_90", "effect_hazard_ratio_upper_90",
                  *[f"{m}{suffix}" for m in _WITH_INTERVAL for suffix in ("", "_lower_90", "_upper_90")],
                  "retention_difference_mc_error", "probability_difference_positive", "users_kept_per_user_treated",
                  "users_beyond_model_range"]


# Only targeting scenarios' rows have these (the table gains the columns when the first one runs).
TARGETING_COLUMNS = ["policy", "proposed", "segment_users", "share_targeted", "cost", "gain_over_random",
                     "gain_over_random_lower_90", "gain_over_random_upper_90", "probability_beats_random",
                     "value_gain_over_random", "value_gain_over_random_lower_90", "value_gain_over_random_upper_90"]


def result_frame(result: dict) -> pd.DataFrame:
    """One scenario_results row with every column, typed (a skipped scenario has empty numbers)."""
    row = {c: str(result.get(c, "")) for c in RESULT_TEXT}
    row.update({c: float(result.get(c, np.nan)) for c in RESULT_NUMBERS})
    row.update({c: result[c] for c in TARGETING_COLUMNS if c in result})
    return pd.DataFrame([row])


@dataclass(frozen=True)
class ScenarioRun:
    result: dict  # one row of scenario_results
    users: pd.DataFrame  # rows of scenario_user_effects
    draws: pd.DataFrame  # per draw: retention difference of the intervention and of its placebo


def describe_filter(spec: ScenarioSpec) -> str:
    parts = [f"{c.column} {c.op}" + ("" if c.value is None else f" {c.value!r}") for c in spec.segment.where]
    return " and ".join(parts) or "every active user"


def resolve_effect(spec: ScenarioSpec, experiments: pd.DataFrame | Callable[[], pd.DataFrame],
                   stored: pd.DataFrame | None = None, as_of: date | None = None) -> HazardRatioDistribution | None:
    """The hazard ratio's distribution, or None for a covariate shift (the model carries the effect). Raises
    EffectUnavailable when the data cannot give an estimated effect. An estimated effect comes from ``stored``
    (simulation.campaign_effects) when it has the campaign over the spec's horizon, estimated by ``as_of``."""
    effect = spec.intervention.effect
    if effect.kind == "estimated":
        return estimated_distribution(experiments, effect.campaign_id, spec.horizon_days, stored, as_of)
    if effect.kind == "assumed":
        hr = effect.hazard_ratio
        return HazardRatioDistribution.from_interval(hr.median, hr.lower_90, hr.upper_90,
                                                     f"assumed: median {hr.median:g}, 90% interval "
                                                     f"{hr.lower_90:g}-{hr.upper_90:g}")
    return None


def shifted(frame: pd.DataFrame, spec: ScenarioSpec) -> pd.DataFrame:
    out = frame.copy()
    for i, shift in enumerate(spec.intervention.effect.shifts):
        if shift.column not in frame or not pd.api.types.is_numeric_dtype(frame[shift.column]):
            numeric = sorted(c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]))
            raise ScenarioSpecError(f"intervention.effect.shifts[{i}].column: no numeric column "
                                    f"{shift.column!r} in the churn covariates (churn.scored_user_covariates); "
                                    f"shiftable: {', '.join(numeric)}")
        out[shift.column] = shift.apply(frame[shift.column])
    return out


def scenario_identity(spec: ScenarioSpec, users: int, model: str) -> dict:
    """The columns of a scenario_results row that describe the scenario rather than its outcome."""
    return {"scenario": spec.name, "description": spec.description, "segment": spec.segment.description,
            "segment_filter": describe_filter(spec), "intervention": spec.intervention.description,
            "users_affected": users, "horizon_days": spec.horizon_days, "draws": spec.draws,
            "seed": spec.seed, "effect_kind": spec.intervention.effect.kind,
            "effect_basis": EFFECT_KINDS[spec.intervention.effect.kind], "model": model}


def run_scenario(spec: ScenarioSpec, model: HazardModel | None,
                 to_matrix: Callable[[pd.DataFrame], np.ndarray],
                 covariates: pd.DataFrame | Iterable[pd.DataFrame], segment_base: pd.DataFrame,
                 experiments: pd.DataFrame | Callable[[], pd.DataFrame],
                 stored_effects: pd.DataFrame | None = None,
                 as_of: date | None = None) -> ScenarioRun:
    """``model``: the churn model, a hazard in days since the as-of day; ``to_matrix``: its columns from raw
    covariates (the churn layer's ``Forecast.churn_matrix``); ``covariates``: the active users' raw covariates as of
    that day, whole or as disjoint buckets of users (each bucket is simulated with the same parameter draws, then
    combined); ``segment_base``: one row per active user (predictions, twin, covariates) that segments filter;
    ``experiments``: the randomized campaign frame (or a function reading it); ``stored_effects``:
    simulation.campaign_effects, whose estimate is used where it has the spec's campaign and horizon
    (``resolve_effect``). A spec the data cannot serve raises ScenarioSpecError naming the field (the caller names
    the file)."""
    base = segment_base.sort_values("user_id", kind="stable").reset_index(drop=True)
    value_column = value_column_for(base.columns, spec.horizon_days)
    value_of = base.set_index("user_id")[value_column] if value_column else None
    members = base.loc[segment_mask(base, spec.segment), "user_id"]
    identity = scenario_identity(spec, len(members), model.kind if model is not None else "none")
    try:
        if model is None:
            raise EffectUnavailable("the churn layer has no model to simulate with (too few churn events to fit "
                                    "one; churn.churn_model_metrics says how many)")
        effect = resolve_effect(spec, experiments, stored_effects, as_of)
    except EffectUnavailable as exc:
        # Not an error in the spec but a gap in the data (own data without the campaign, say): recorded as
        # skipped with the reason, so the rest of the pipeline still runs and the gap is visible.
        return ScenarioRun({**identity, "status": "skipped", "status_reason": str(exc)},
                           pd.DataFrame(columns=USER_COLUMNS), pd.DataFrame(columns=DRAW_COLUMNS))

    rng = np.random.default_rng(spec.seed)
    params = draw_parameters(model, rng, spec.draws)
    ratio = effect.draw(rng, spec.draws) if effect is not None else None
    placebo = effect.placebo().draw(rng, spec.draws) if effect is not None else None
    wanted = set(members)
    outcomes, user_frames, beyond = [], [], 0
    for part in [covariates] if isinstance(covariates, pd.DataFrame) else covariates:
        raw = part[part["user_id"].isin(wanted)].sort_values("user_id", kind="stable").reset_index(drop=True)
        if raw.empty:
            continue
        x = to_matrix(raw)
        x_scenario = to_matrix(shifted(raw, spec)) if effect is None else None
        # The model's clock starts on the as-of day (a landmark): every user is at time zero of their horizon.
        start = np.zeros(len(raw))
        tenure = raw["tenure_days"].to_numpy(dtype=float)
        values = None if value_of is None else raw["user_id"].map(value_of).fillna(0.0).to_numpy(float)
        outcome = simulate(model, params, x, start, spec.horizon_days, hazard_ratio=ratio, placebo_ratio=placebo,
                           x_scenario=x_scenario, values=values)
        outcomes.append(outcome)
        user_frames.append(pd.DataFrame({
            "scenario": spec.name, "user_id": raw["user_id"].to_numpy(), "tenure_days": tenure,
            "baseline_churn_probability": outcome.user_p_baseline,
            "scenario_churn_probability": outcome.user_p_scenario,
            "churn_reduction": outcome.user_p_baseline - outcome.user_p_scenario,
            "churn_reduction_lower_90": outcome.user_kept_lower, "churn_reduction_upper_90": outcome.user_kept_upper,
        }))
        if model.kind == "cox" and len(model.baseline_times):
            beyond += int((start + spec.horizon_days > model.baseline_times.max()).sum())
    outcome = combine(outcomes, spec.draws)
    if outcome.users != len(members):
        raise ValueError(f"{spec.name}: {len(members) - outcome.users:,} segment users have no row in "
                         "churn.scored_user_covariates (predictions and covariates out of step: re-run churn)")

    lower, upper = effect.interval_90() if effect is not None else (np.nan, np.nan)
    result = {
        **identity, "status": "simulated", "status_reason": "" if len(members) else "the segment is empty",
        "effect_source": effect.source if effect is not None else "; ".join(
            f"{s.column} {_shift_text(s)}" for s in spec.intervention.effect.shifts),
        "effect_hazard_ratio": effect.median if effect is not None else np.nan,
        "effect_hazard_ratio_lower_90": lower, "effect_hazard_ratio_upper_90": upper,
        **(summarize_outcome(outcome) if len(members) else {}),
        "users_beyond_model_range": beyond, "value_column": value_column or "",
    }
    users = pd.concat(user_frames, ignore_index=True) if user_frames else pd.DataFrame(columns=USER_COLUMNS)
    difference, placebo_difference = outcome.differences()
    draws = pd.DataFrame({"draw": np.arange(spec.draws), "retention_difference": difference,
                          "placebo_difference": placebo_difference}) if len(members) else pd.DataFrame(
        columns=DRAW_COLUMNS)
    return ScenarioRun(result, users, draws)


def value_column_for(columns, horizon_days: int) -> str | None:
    """The twin's value column a scenario's value kept is priced with: ``value_{h}d`` for the shortest purchase
    horizon h covering the scenario's horizon (else the longest); None when the twins carry no value."""
    horizons = sorted(int(c[len("value_"):-1]) for c in columns
                      if c.startswith("value_") and c.endswith("d") and c[len("value_"):-1].isdigit())
    if not horizons:
        return None
    return f"value_{next((h for h in horizons if h >= horizon_days), horizons[-1])}d"


def value_note(result: dict, horizon_days: int) -> str:
    """What a scenario result's value kept is priced with, or why it is empty (for metadata)."""
    if result["status"] != "simulated":
        return "none: the scenario was skipped"
    column = result["value_column"]
    if column:
        return (f"priced with the twins' {column} (each user's expected value over {column[len('value_'):]}, as of "
                f"the as-of day) for a {horizon_days}-day horizon")
    return ("not priced (expected_value_kept empty): twins.user_twins has no value_{h}d columns because the purchase "
            "layer found no purchases to learn from (own data without orders?)")


def _shift_text(shift) -> str:
    if shift.set is not None:
        return f"set to {shift.set:g}"
    return f"+ {shift.add:g}" if shift.add is not None else f"x {shift.multiply:g}"


def policy_ranking(results: pd.DataFrame) -> pd.DataFrame:
    """Scenarios ranked by expected users kept per user treated, the number a growth team compares."""
    columns = ["scenario", "segment", "effect_kind", "users_affected", "horizon_days", "expected_users_kept",
               "expected_users_kept_lower_90", "expected_users_kept_upper_90", "users_kept_per_user_treated",
               "retention_difference", "retention_difference_lower_90", "retention_difference_upper_90",
               "probability_difference_positive"]
    # Users kept priced by the purchase layer (null without it), and for targeting scenarios (one row per policy)
    # how each policy compares with treating at random.
    columns += [c for c in ("expected_value_kept", "expected_value_kept_lower_90", "expected_value_kept_upper_90",
                            "value_column") if c in results]
    # Targeting scenarios (one row per policy) add how each policy compares with treating at random.
    columns += [c for c in TARGETING_COLUMNS if c in results]
    simulated = results.loc[results["status"] == "simulated", columns]
    ranked = simulated.sort_values("users_kept_per_user_treated", ascending=False, kind="stable")
    return ranked.reset_index(drop=True).rename_axis("rank").reset_index().assign(rank=lambda f: f["rank"] + 1)
