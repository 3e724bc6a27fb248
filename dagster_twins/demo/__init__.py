"""The built-in demo: seeded, realistic interaction data with planted structure, written as landing files.

    from dagster_twins.demo import generate_demo
    summary = generate_demo(Path("data"), n_users=2000, n_days=180, end_date=date(2026, 6, 30))

Writes ``<out>/landing/<source>/<YYYY-MM-DD>.<csv|jsonl|parquet>`` and the planted per-user truth in
``<out>/truth/`` (for tests and reports only: no model may read it).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from dagster_twins.demo.days import DAY, RETENTION_CAMPAIGN, drop_after_churn, simulate
from dagster_twins.demo.faults import assign_landing_days, inject_faults
from dagster_twins.demo.landing import build_frames, offset_some_times, write_landing
from dagster_twins.demo.people import Hazard, Population, draw_population
from dagster_twins.demo.vocabulary import CHANNELS, FORMATS, Vocabulary, load_vocabulary


@dataclass(frozen=True)
class DemoSummary:
    landing_dir: Path
    truth_dir: Path
    start_date: date
    end_date: date
    rows_written: dict[str, int]
    injected: dict[str, dict[str, int]]
    late_rows: dict[str, int]
    elapsed_seconds: float


def generate_demo(out_dir: Path, *, n_users: int = 2000, n_days: int = 180, end_date: date, seed: int = 42,
                  dirty_rate: float = 0.002, late_rate: float = 0.02, taxonomy_dir: Path | None = None) -> DemoSummary:
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    vocab = load_vocabulary(taxonomy_dir)
    hazard = Hazard()
    start_date = end_date - timedelta(days=n_days - 1)
    start_s = int(pd.Timestamp(start_date).timestamp())

    pop = draw_population(rng, n_users, n_days, start_s, vocab)
    sim = simulate(rng, pop, n_days, start_s, vocab, hazard)
    drop_after_churn(sim)
    frames = build_frames(sim, pop, vocab)
    offset_some_times(frames["support_tickets"], "opened_at", 0.3, rng)

    injected: dict[str, dict[str, int]] = {}
    late: dict[str, int] = {}
    for source in list(frames):
        late[source] = assign_landing_days(
            frames[source], start_s, n_days, late_rate, rng, allow_late=source != "users"
        )
        frames[source], injected[source] = inject_faults(source, frames[source], dirty_rate, n_days, rng)

    out_dir = Path(out_dir)
    landing, truth = out_dir / "landing", out_dir / "truth"
    written = write_landing(frames, landing, start_s, n_days)
    summary = DemoSummary(landing, truth, start_date, end_date, written, injected, late,
                          round(time.perf_counter() - started, 2))
    _write_truth(truth, pop, sim, vocab, hazard, summary, seed, n_users, n_days)
    return summary


def _write_truth(truth: Path, pop: Population, sim, vocab: Vocabulary, hazard: Hazard, summary: DemoSummary,
                 seed: int, n_users: int, n_days: int) -> None:
    truth.mkdir(parents=True, exist_ok=True)
    churned = sim.churned_s >= 0
    users = pd.DataFrame({
        "user_id": pop.user_ids,
        "signed_up_at": pd.to_datetime(pop.signup_s, unit="s", utc=True),
        "activity_rate": pop.activity_rate,
        "click_propensity": pop.click_propensity,
        "campaign_response": pop.campaign_response,
        "trouble_rate": pop.trouble_rate,
        "goal": np.array(vocab.goals)[pop.goal],
        "top_topic": np.array(vocab.topics)[pop.interest.argmax(axis=1)],
        **{f"interest_{t}": pop.interest[:, k] for k, t in enumerate(vocab.topics)},
        "preferred_channel": np.array(CHANNELS)[pop.channel_pref.argmax(axis=1)],
        "preferred_format": np.array(FORMATS)[pop.format_pref.argmax(axis=1)],
        "risk_score": hazard.b_eng * pop.z_engagement,
        "churned": churned,
        "churned_at": pd.to_datetime(np.where(churned, sim.churned_s, 0), unit="s", utc=True).where(churned),
        "campaign_group": np.array(["none", "treatment", "control"])[sim.campaign_group],
    })
    users.to_parquet(truth / "users.parquet", index=False)
    planted = {
        "seed": seed, "n_users": n_users, "n_days": n_days,
        "start_date": summary.start_date.isoformat(), "end_date": summary.end_date.isoformat(),
        **asdict(hazard),
        "campaign_id": RETENTION_CAMPAIGN,
        "campaign_sent_at": pd.Timestamp(sim.campaign_sent_s, unit="s", tz="UTC").isoformat(),
        "injected": summary.injected, "rows_written": summary.rows_written, "late_rows": summary.late_rows,
        "seconds_per_day": DAY,
    }
    (truth / "planted.json").write_text(json.dumps(planted, indent=2) + "\n")


__all__ = ["DemoSummary", "generate_demo"]
