"""A targeting scenario: treat the N users of a segment a policy ranks first, and what that keeps.

Three policies rank the segment's users: ``benefit`` (the estimated per-user effect of the campaign, largest
reduction in churn first), ``risk`` (churn probability without the campaign, highest first) and ``random``. What a
policy keeps is measured, not modelled: on the campaign's held-out randomized users (their effects cross-fitted),
the retention difference between treated and controls among the top ``share`` by the policy's score is the users
kept per user targeted; times N it is the users kept. Random targeting keeps the whole experiment's difference.
The 90% intervals come from a bootstrap over the randomized users, the same replicates for every policy, so
``gain_over_random`` (users kept beyond random targeting of as many) has a paired interval: a campaign whose effect
is the same for everyone (or null) gives one that covers zero. The held-out users are ranked within their
cross-fitting fold and the gain's bootstrap deviations widened (``uplift.policy_gains``: cross-fitted scores are
not fixed scores).

The share is the segment's: targeting 20% of a segment is evaluated on the top 20% of the randomized users, which
assumes the segment ranks like the experiment's population (stated in the docs).

Value kept (``value_kept``): the users a policy keeps priced at the value the purchase layer expects of each over
the horizon as of the as-of day (the twins' ``value_{h}d``), summed over the users it targets, each weighted by
their estimated churn reduction. The level follows the measured users kept, the tilt (whether the users it keeps
are worth more than those it targets on average) the estimated per-user effects; null when the twins carry no
value (data without purchases).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dagster_twins.simulation.scenario import USER_COLUMNS, result_frame, scenario_identity, value_column_for
from dagster_twins.simulation.specs import ScenarioSpec, ScenarioSpecError, segment_mask
from dagster_twins.simulation.uplift import INTERVAL, policy_gains, policy_scores, users_to_target

POLICIES = ("benefit", "risk", "random")
MODEL = "per-user effects (cross-fitted interacted Cox), evaluated on held-out randomized users"


@dataclass(frozen=True)
class TargetingRun:
    results: pd.DataFrame  # scenario_results rows: one per policy (scenario "<name>:<policy>"), or one skipped row
    users: pd.DataFrame  # scenario_user_effects rows: the users the proposed policy targets
    gains: pd.DataFrame  # per bootstrap replicate: users kept by each policy (the plot)


def _interval(values: np.ndarray) -> tuple[float, float, float]:
    lo, hi = np.quantile(values, INTERVAL)
    return float(values.mean()), float(lo), float(hi)


def value_kept(kept: np.ndarray, reduction: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Per bootstrap replicate, the value kept by treating users whose estimated churn reductions are
    ``reduction`` and whose expected values over the horizon are ``value``, when the replicate's users kept is
    ``kept``:

        V_b = kept_b * mean(value) + sum_i (r_i - mean r) (v_i - mean v)

    Each kept user is worth the targeted users' mean value, plus the covariance the per-user effects show between
    being kept and being valuable. When ``kept_b`` is the effects' own sum, sum_i r_i, V_b is exactly
    sum_i r_i v_i (value lost only through churn, each user's churn reduction times their value); when the
    measured users kept differ from the model's sum, the level follows the measurement. Value is assumed not to
    depend on the campaign other than through churn."""
    kept = np.asarray(kept, float)
    r, v = np.asarray(reduction, float), np.asarray(value, float)
    if len(v) == 0:
        return np.zeros_like(kept)
    tilt = float(np.sum((r - r.mean()) * (v - v.mean())))
    return kept * float(v.mean()) + tilt


def _targeted(members: pd.DataFrame, policy: str, n: int, seed: int) -> pd.DataFrame:
    if policy == "random":
        order = np.random.default_rng(seed).permutation(len(members))
    else:
        order = np.argsort(-policy_scores(members)[policy], kind="stable")
    return members.iloc[order[:n]]


def run_targeting(spec: ScenarioSpec, segment_base: pd.DataFrame, effects: pd.DataFrame) -> TargetingRun:
    """``effects``: simulation.user_treatment_effects (randomized users, cross-fitted, with their outcome; and the
    active users scored as of today). A campaign without effects is recorded as skipped; a horizon the effects were
    not estimated for is a spec error naming the field."""
    assert spec.targeting is not None
    t, campaign = spec.targeting, spec.intervention.effect.campaign_id
    base = segment_base.sort_values("user_id", kind="stable").reset_index(drop=True)
    value_column = value_column_for(base.columns, spec.horizon_days)
    members = base.loc[segment_mask(base, spec.segment), ["user_id", "tenure_days", *([value_column] if value_column
                                                                                      else [])]]
    rows = effects[effects["campaign_id"] == campaign]
    if rows.empty:
        known = ", ".join(sorted(effects["campaign_id"].astype(str).unique())) or "none"
        reason = (f"no per-user effects of campaign {campaign!r} in simulation.user_treatment_effects (campaigns "
                  f"with effects: {known})")
        skipped = {**scenario_identity(spec, len(members), MODEL), "status": "skipped", "status_reason": reason}
        return TargetingRun(result_frame(skipped), pd.DataFrame(columns=USER_COLUMNS), pd.DataFrame())
    horizon = int(rows["horizon_days"].iloc[0])
    if horizon != spec.horizon_days:
        raise ScenarioSpecError(f"horizon_days: the per-user effects of {campaign} are estimated for churn within "
                                f"{horizon} days (setting uplift_horizon_days): use horizon_days: {horizon}")
    current = rows[rows["population"] == "active"][["user_id", "effect", "lower_90", "upper_90",
                                                    "p_churn_control", "p_churn_treated"]]
    members = members.merge(current, on="user_id", how="inner")
    randomized = rows[(rows["population"] == "randomized") & rows["retained"].notna()]
    n = users_to_target(len(members), t.users, t.share, t.budget, t.cost_per_send)
    share = n / max(len(members), 1)
    gains = policy_gains(policy_scores(randomized), randomized["treated"].to_numpy(float),
                         randomized["retained"].to_numpy(float), share, replicates=spec.draws, seed=spec.seed,
                         folds=randomized["fold"].to_numpy())
    baseline = float(1 - members["p_churn_control"].mean()) if len(members) else np.nan
    targeted = {policy: _targeted(members, policy, n, spec.seed) for policy in POLICIES}
    values = {policy: value_kept(n * gains[policy], -chosen["effect"].to_numpy(float),
                                 chosen[value_column].fillna(0.0).to_numpy(float))
              for policy, chosen in targeted.items()} if value_column else None
    frames = []
    for policy in sorted(POLICIES, key=lambda p: p != t.policy):  # the proposed policy first
        kept = n * gains[policy]
        value = _interval(values[policy]) if values else (np.nan,) * 3
        value_over = _interval(values[policy] - values["random"]) if values else (np.nan,) * 3
        mean, lo, hi = _interval(kept)
        difference = kept / max(len(members), 1)
        d_mean, d_lo, d_hi = _interval(difference)
        over = _interval(n * (gains[policy] - gains["random"]))
        result = {
            **scenario_identity(spec, n, MODEL), "scenario": f"{spec.name}:{policy}", "status": "simulated",
            "status_reason": "" if n else "no user to target",
            "effect_source": f"campaign {campaign}: {len(randomized):,} held-out randomized users; top "
                             f"{share:.1%} by {policy}", "draws": len(kept),
            "expected_users_kept": mean, "expected_users_kept_lower_90": lo, "expected_users_kept_upper_90": hi,
            "users_kept_per_user_treated": float(gains[policy].mean()),
            "retention_difference": d_mean, "retention_difference_lower_90": d_lo,
            "retention_difference_upper_90": d_hi, "baseline_retention": baseline,
            "scenario_retention": baseline + d_mean, "probability_difference_positive": float((kept > 0).mean()),
            "policy": policy, "proposed": policy == t.policy, "segment_users": len(members), "share_targeted": share,
            "cost": n * t.cost_per_send if t.cost_per_send else np.nan,
            "gain_over_random": over[0], "gain_over_random_lower_90": over[1], "gain_over_random_upper_90": over[2],
            "probability_beats_random": float((gains[policy] > gains["random"]).mean()),
            "value_column": value_column or "", "expected_value_kept": value[0],
            "expected_value_kept_lower_90": value[1], "expected_value_kept_upper_90": value[2],
            "value_gain_over_random": value_over[0], "value_gain_over_random_lower_90": value_over[1],
            "value_gain_over_random_upper_90": value_over[2],
        }
        frames.append(result_frame(result))
    chosen = targeted[t.policy]
    users = pd.DataFrame({
        "scenario": spec.name, "user_id": chosen["user_id"].to_numpy(), "tenure_days": chosen["tenure_days"],
        "baseline_churn_probability": chosen["p_churn_control"],
        "scenario_churn_probability": chosen["p_churn_treated"],
        "churn_reduction": -chosen["effect"], "churn_reduction_lower_90": -chosen["upper_90"],
        "churn_reduction_upper_90": -chosen["lower_90"]})
    return TargetingRun(pd.concat(frames, ignore_index=True), users[USER_COLUMNS].reset_index(drop=True),
                        pd.DataFrame({p: n * g for p, g in gains.items()}))
