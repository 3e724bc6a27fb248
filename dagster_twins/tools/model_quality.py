"""Write docs/model-quality.md from a real run: demo data at a given size, the whole pipeline, then the
twins scored against the demo's planted truth (which no model reads).

    dagster-twins model-quality --users 10000 --days 180
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd

from dagster_twins.demo import DemoSummary, generate_demo
from dagster_twins.pipeline import run_pipeline
from dagster_twins.settings import PROJECT_ROOT, Settings
from dagster_twins.tools.churn_truth import churn_against_truth, planted_directions
from dagster_twins.tools.transactions import evaluate_in_subprocess
from dagster_twins.tools.twins_recovery import recovery_metrics
from dagster_twins.tools.uplift_quality import uplift_section
from dagster_twins.warehouse.tables import connect

END_DATE = date(2026, 6, 30)


def coverage_reading(coverage: float) -> str:
    """What the measured coverage of the 90% intervals says, in words that follow the number."""
    if coverage >= 0.9:
        return (f"the intervals cover {coverage:.1%}, a little above 90%, as they should under forgetting: the "
                "planted propensity is constant, and a posterior over decayed counts (half-life 60 days) treats "
                "old evidence as weaker than it is, so its interval is wider than a no-forgetting one.")
    return (f"the intervals cover {coverage:.1%}, below 90%: the posteriors are narrower than the error of their "
            "means; compare the prior strengths in twins.belief_priors with the planted spread.")


def twins_section(metrics: dict, users: int, days: int, seed: int) -> str:
    coverage_text = coverage_reading(metrics["rec_click_interval_coverage"])
    return f"""## Twins: recovery of the planted truth

Demo data: {users:,} users over {days} days ending {END_DATE}, seed {seed}; the twins as of the last day
(half-life 60 days). Users "with enough evidence" have at least 20 raw observations for the belief.

| measure | value |
|---|---:|
| users | {metrics['users']:,} |
| users with enough recommendation evidence | {metrics['users_with_enough_rec_evidence']:,} |
| correlation, estimated vs planted recommendation click propensity | {metrics['rec_click_correlation']:.3f} |
| empirical coverage of the 90% credible interval of that propensity | {metrics['rec_click_interval_coverage']:.1%} |
| users with enough activity evidence | {metrics['users_with_enough_activity_evidence']:,} |
| correlation, log estimated vs log planted activity rate | {metrics['activity_rate_correlation']:.3f} |
| share of users whose planted top topic is the twin's top interest | {metrics['top_topic_match']:.1%} |

Reading it: {coverage_text} The activity rate is planted in sessions per day and estimated as user-initiated
interactions per day (several per session), so the correlation is on the log scale, where the factor drops out.
"""


# What the demo plants (dagster_twins.demo.people.Hazard) and the covariate that measures it: the fitted hazard
# ratio should point the same way. Only the directions are compared; the truth file is read here, never by a model.
# The model this layer replaced, as the previous docs/model-quality.md measured it with this command's defaults
# (10,000 users, seed 42): a Cox model on covariates measured before each user's *end* (churn or censoring),
# judged on its own 30-day backtest frame built the same way.
REPLACED = {"auc_30d": 0.679, "calibration_error_30d": 0.0163, "mean_predicted_30d": 0.032, "observed_30d": 0.046}


def churn_section(con, truth: pd.DataFrame, planted: dict, docs_dir: Path, calibration_png: Path | None) -> str:
    table, deciles, fit = churn_against_truth(con, truth, planted)
    directions = planted_directions(fit, planted)
    metrics = fit.run.metrics
    returns = metrics[metrics["question"] == "return"]
    shown = table.rename(columns={
        "horizon_days": "horizon (days)", "users": "users at risk", "mean_predicted": "mean predicted",
        "mean_true": "mean true", "auc_model": "AUC model", "auc_truth": "AUC truth (best achievable)",
        "auc_recency": "AUC recency", "auc_events_per_day": "AUC events/day", "auc_activity_rate": "AUC decayed rate",
        "calibration_error_model": "calibration error model", "calibration_error_truth": "calibration error truth"})
    gaps = (table["auc_truth"] - table["auc_model"])
    best_naive = table[["auc_recency", "auc_events_per_day", "auc_activity_rate"]].max(axis=1)
    plot = ""
    if calibration_png is not None and calibration_png.exists():
        shutil.copy(calibration_png, docs_dir / "churn_calibration.png")
        plot = "\n![held-out calibration per horizon](churn_calibration.png)\n"
    at30 = table[table["horizon_days"] == 30]
    replaced = ""
    if len(at30):
        r = at30.iloc[0]
        replaced = (f"At 30 days the model it replaces reported AUC {REPLACED['auc_30d']:.3f} and calibration error "
                    f"{REPLACED['calibration_error_30d']:.4f} (mean predicted {REPLACED['mean_predicted_30d']:.3f} "
                    f"against {REPLACED['observed_30d']:.3f} observed) on its own backtest frame, which measured "
                    "covariates at each user's end and so learnt from the future; this one: AUC "
                    f"{r['auc_model']:.3f}, calibration error {r['calibration_error_model']:.4f} (mean "
                    f"{r['mean_predicted']:.3f} against {r['observed']:.3f}), out of time and as of the cutoff.")
    return f"""
## Churn: as-of forecasts against the truth and naive rankers

The churn layer fits landmark Cox models on what was known at weekly landmarks (`dagster_twins/churn/`,
[docs/churn.md](churn.md)). For each horizon h the backtest refits as of a cutoff C (the latest landmark with C + h
before the end, two landmarks before it at least), scores the users active on C, and compares with who churned
in (C, C + h]. Beside it, on the same users: the demo's planted truth (each user's exact probability from the
planted hazard, its engagement, trouble rate, last ticket and campaign group: the best any model can do) and
naive rankers. The fit sampled {fit.sampled_users:,} of {fit.population:,} users ({fit.run.training_rows:,}
landmark rows over {fit.run.landmarks} landmarks).

{shown.to_markdown(index=False, floatfmt=".3f")}

Reading it: the model beats every naive ranker at every horizon (by {(table['auc_model'] - best_naive).min():.3f}
to {(table['auc_model'] - best_naive).max():.3f} of AUC over the best of them) and its probabilities are calibrated
(largest error {table['calibration_error_model'].max():.4f}); it stays {gaps.min():.3f} to {gaps.max():.3f} of AUC
below the truth's own scores. Most of that gap is what no model can see: the truth knows each user's planted
engagement and trouble rate exactly, the model only their noisy evidence (the twins recover the activity rate with
correlation 0.78, above), so the issue's target (within 0.01 of the truth) is not met.
{replaced}

The fitted model's hazard ratios (per standard deviation) against the directions the demo plants. The engagement
columns are strongly correlated, so single columns can share or swap the effect:

{directions.to_markdown(index=False, floatfmt=".3f")}

The return question (P(return within h) for lapsed users) has {int((returns['kind'] == 'cox').sum())} backtested
model rows here: in the demo nobody comes back after cancelling, so it is a constant rate near zero.
{plot}"""


def transactions_section(result: dict) -> str:
    table = pd.DataFrame(result["table"])
    table["horizon_days"] = table["horizon_days"].map(lambda h: "" if pd.isna(h) else int(h))
    recency = float(table.loc[table["ranker"].str.startswith("recency"), "auc"].iloc[0])
    best = float(table.loc[table["ranker"].str.startswith("the model"), "auc"].max())
    return f"""
## Churn and return on a public transaction log

Data nobody here wrote: CDNOW ({result['customers']:,} customers' CD purchases from 1997-01 to 1998-06), the copy
shipped inside the `lifetimes` package (`lifetimes/datasets/CDNOW_master.txt`, read as a file). Its purchases become
daily landing files (`user_id, occurred_at, event_type=purchase, value`), the real pipeline (ingestion, dbt, churn
with horizons 30, 90 and 273 days and the default 30-day inactivity rule) runs on the 39 weeks to 1997-09-30, and
the predictions as of that day are judged on the next 39 weeks: did the customer buy at all? Code:
`dagster_twins/tools/transactions.py`.

Customers scored: **{result['scored']:,} of {result['customers']:,}** ({result['questions'].get('churn', 0):,} active,
asked P(churn within h); {result['questions'].get('return', 0):,} lapsed, asked P(return within h)); bought again in
the holdout: {result['holdout_buyers']:,}. AUC of "bought in the holdout" over every customer, and over the lapsed:

{table.to_markdown(index=False, floatfmt=".3f")}

The model's ranking of everyone (lapsed customers by P(return within h); active ones by P(buying within h) =
1 - P(churn within 30 days) x (1 - P(return within h - 30 days) as they would be on lapsing)) reaches AUC
{best:.3f} against recency's {recency:.3f}; among the lapsed, the return model ranks above recency and frequency
(a Cox model ranks the same at every horizon). For reference, issue 16 reports BG/NBD (lifetimes 0.11.3) fitted on
the same split at AUC 0.763.
"""


def simulation_section(con, planted: dict, docs_dir: Path, reports_dir: Path) -> str:
    """The randomized campaign's estimated hazard ratio beside the planted one, and the shipped scenarios."""
    truth = float(planted["campaign_hazard_ratio"])
    effects = con.execute("select * from simulation.campaign_effects "
                          "order by campaign_id, followup_days nulls last").df()
    rows = ["| campaign | follow-up (days) | treated / controls | churned (treated / controls) | hazard ratio | "
            "90% interval | 95% interval | planted | planted inside the 90% interval |",
            "|---|---:|---:|---:|---:|---|---|---:|---|"]
    for e in effects.itertuples():
        followup = "all" if pd.isna(e.followup_days) else f"{e.followup_days:.0f}"
        planted_ratio = 1.0 if e.campaign_id == planted.get("placebo_campaign_id") else truth  # a placebo: none
        inside = "yes" if e.lower_90 <= planted_ratio <= e.upper_90 else "**no**"
        rows.append(f"| {e.campaign_id} | {followup} | {e.treatment_users:,} / {e.control_users:,} | "
                    f"{e.treatment_churned:,} / {e.control_churned:,} | {e.hazard_ratio:.3f} | "
                    f"{e.lower_90:.3f}-{e.upper_90:.3f} | {e.lower_95:.3f}-{e.upper_95:.3f} | {planted_ratio:g} | "
                    f"{inside} |")
    ratios = effects.dropna(subset=["hazard_ratio"])
    drift = (f"from {ratios['hazard_ratio'].iloc[0]:.2f} over the first {ratios['followup_days'].iloc[0]:.0f} days to "
             f"{ratios['hazard_ratio'].iloc[-1]:.2f} over all of it") if len(ratios) else "no estimate"
    ranking = con.execute("select rank, scenario, effect_kind, users_affected, horizon_days, expected_users_kept, "
                          "expected_users_kept_lower_90, expected_users_kept_upper_90, users_kept_per_user_treated, "
                          "probability_difference_positive from simulation.scenario_policy_ranking order by rank").df()
    ranking = ranking.astype({"users_affected": int, "horizon_days": int})
    results = con.execute("select scenario, baseline_retention, scenario_retention, retention_difference, "
                          "retention_difference_lower_90, retention_difference_upper_90, retention_difference_mc_error,"
                          " placebo_difference_lower_90, placebo_difference_upper_90 from simulation.scenario_results "
                          "where status = 'simulated' order by scenario").df()
    plot = ""
    png = reports_dir / "scenario_retention_campaign_top_risk_decile.png"
    if png.exists():
        shutil.copy(png, docs_dir / "scenario_retention_campaign.png")
        plot = ("\n![retention difference over draws, campaign to the top-risk decile]"
                "(scenario_retention_campaign.png)\n")
    return f"""
## Simulation: the campaign's effect and the shipped scenarios

The demo randomizes a retention campaign (treatment and control halves of the users alive a third of the way in) and
plants a hazard ratio on the treated from the send on: 0.3 for users with a support ticket in the 28 days before the
send, 0.9 for the others, {truth:g} on average (the per-user effects are in the last section); a placebo campaign
changes nothing. `simulation.campaign_effects` estimates the average from the two groups alone (Cox model on
the treatment indicator, adjusted for engagement in the 56 days before the send):

{chr(10).join(rows)}

Over longer follow-up the estimate can drift towards 1 although the planted ratio is constant (here
{drift}): the demo's users differ in frailty (engagement, recurring support trouble) that the estimate
sees only through a noisy proxy, the frail churn first in both groups, and the survivors of the control group are
sturdier than those of the treated. On a 5,000-user demo (seed 42, end 2026-10-31) it went from 0.52 over 30 days
to 0.71 over all 120, whose 90% interval (0.61-0.83) missed the planted 0.6. This is why a scenario uses the
estimate over its own horizon. The regression test
(`tests/test_simulation_pipeline.py`) asserts that the planted ratio lies inside the 90% interval over 60 days on a
4,000-user demo at a fixed seed.

Scenarios, ranked by expected users kept per user treated (90% intervals over the draws):

{ranking.to_markdown(index=False, floatfmt=".3f")}

Retention at the horizon, the difference with its 90% interval and Monte Carlo error, and the placebo's interval
(it must cover zero):

{results.to_markdown(index=False, floatfmt=".4f")}
{plot}"""


def demo_run(root: Path, users: int, days: int, seed: int) -> tuple[Settings, DemoSummary] | None:
    """Demo data in ``root`` and the whole pipeline over it: (settings, demo), or None when the run failed."""
    demo = generate_demo(root, n_users=users, n_days=days, end_date=END_DATE, seed=seed)
    settings = Settings(warehouse_path=root / "warehouse.duckdb", landing_dir=demo.landing_dir,
                        sources_config=PROJECT_ROOT / "config" / "sources.yml", partition_start=date(2025, 1, 1),
                        dbt_target="duckdb")
    result = run_pipeline(settings, demo.start_date, demo.end_date, instance=dg.DagsterInstance.ephemeral())
    return (settings, demo) if result.success else None


def main(args: argparse.Namespace) -> int:
    root = Path(args.workdir or tempfile.mkdtemp(prefix="model_quality_"))
    run = demo_run(root, args.users, args.days, args.seed)
    if run is None:
        return 1
    settings, demo = run
    planted = json.loads((demo.truth_dir / "planted.json").read_text())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    plots = sorted((settings.reports_dir).glob("churn_calibration_*.png"))
    con = connect(settings.warehouse_path, read_only=True)
    try:
        metrics = recovery_metrics(con, pd.read_parquet(demo.truth_dir / "users.parquet"))
        churn = churn_section(con, pd.read_parquet(demo.truth_dir / "users.parquet"), planted, args.output.parent,
                              plots[-1] if plots else None)
        simulation = simulation_section(con, planted, args.output.parent, settings.reports_dir)
        uplift = uplift_section(con, pd.read_parquet(demo.truth_dir / "users.parquet"), planted,
                                f"dagster-twins model-quality --users {args.users} --days {args.days}")
    finally:
        con.close()
    print(json.dumps(metrics, indent=2))
    header = ("# Model quality\n\nMeasured from a real run by `dagster-twins model-quality --users "
              f"{args.users} --days {args.days}` (re-run it to reproduce; the numbers below are its output).\n\n")
    transactions = transactions_section(evaluate_in_subprocess(root / "cdnow"))
    from dagster_twins.tools.purchases_quality import preserved_section  # its own command rewrites it

    args.output.write_text(header + twins_section(metrics, args.users, args.days, args.seed) + churn + transactions
                           + simulation + "\n" + uplift + preserved_section(args.output))
    return 0
