"""The built-in demo: seeded, realistic interaction data with planted structure, written as landing files.

    from dagster_twins.demo import generate_demo
    summary = generate_demo(Path("data"), n_users=2000, n_days=180, end_date=date(2026, 6, 30))

Writes ``<out>/landing/<source>/<YYYY-MM-DD>.<csv|jsonl|parquet>`` and the planted per-user truth in
``<out>/truth/`` (for tests and reports only: no model may read it).

The population is generated in chunks of ``chunk_users`` users (default 100,000), each simulated, faulted and
written on its own and then freed, so memory is bounded by a chunk whatever the number of users. Chunk ``k``
draws from its own random stream (``chunk_rng(seed, k)``), numbers its users from ``k * chunk_users`` and its
events, messages, ... from ``k * ID_STRIDE``, and writes ``<source>/<YYYY-MM-DD>/part-<k>.<ext>`` (chunk 0 keeps
``<source>/<YYYY-MM-DD>.<ext>``): a demo of one chunk is exactly the demo of an unchunked generator. Chunks are
independent populations of the same world (same window, same campaign send), so everything planted holds
within each chunk, and the truth covers all of them. ``workers > 1`` generates chunks in that many processes
(the same files; memory grows with the number of workers).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dagster_twins.demo.days import (
    DAY,
    PLACEBO_CAMPAIGN,
    RETENTION_CAMPAIGN,
    Simulated,
    drop_after_churn,
    purchase_day_probability,
    purchase_days_after_end,
    simulate,
)
from dagster_twins.demo.faults import assign_landing_days, draw_faults, inject_faults
from dagster_twins.demo.landing import (
    FORMAT_OF,
    ID_STRIDE,
    SOURCE_ORDER,
    EventFiles,
    build_frame,
    offset_some_times,
    write_csv_source,
    write_source,
)
from dagster_twins.demo.people import Hazard, Population, draw_population
from dagster_twins.demo.vocabulary import CHANNELS, FORMATS, Vocabulary, load_vocabulary

log = logging.getLogger(__name__)

DEFAULT_CHUNK_USERS = 100_000


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
    chunks: int = 1


@dataclass(frozen=True)
class _ChunkJob:
    landing: Path
    chunk: int
    first_user: int
    n_users: int
    n_days: int
    start_s: int
    seed: int
    dirty_rate: float
    late_rate: float
    taxonomy_dir: Path | None


@dataclass
class _ChunkResult:
    rows_written: dict[str, int]
    injected: dict[str, dict[str, int]]
    late_rows: dict[str, int]
    truth: pd.DataFrame
    campaign_sent_s: int
    purchase_truth: pd.DataFrame


def chunk_rng(seed: int, chunk: int) -> np.random.Generator:
    """Chunk 0 draws from ``default_rng(seed)`` (as the unchunked generator did); chunk k from the k-th child of
    the seed, so every chunk's data depends on (seed, k) only."""
    if chunk == 0:
        return np.random.default_rng(seed)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(chunk,)))


def generate_demo(out_dir: Path, *, n_users: int = 2000, n_days: int = 180, end_date: date, seed: int = 42,
                  dirty_rate: float = 0.002, late_rate: float = 0.02, taxonomy_dir: Path | None = None,
                  chunk_users: int = DEFAULT_CHUNK_USERS, workers: int = 1) -> DemoSummary:
    if n_users < 1 or n_days < 1 or chunk_users < 1 or workers < 1:
        raise ValueError("n_users, n_days, chunk_users and workers must be positive")
    started = time.perf_counter()
    start_date = end_date - timedelta(days=n_days - 1)
    start_s = int(pd.Timestamp(start_date).timestamp())
    out_dir = Path(out_dir)
    landing, truth = out_dir / "landing", out_dir / "truth"
    jobs = [_ChunkJob(landing, k, first, min(chunk_users, n_users - first), n_days, start_s, seed, dirty_rate,
                      late_rate, taxonomy_dir) for k, first in enumerate(range(0, n_users, chunk_users))]

    written: dict[str, int] = {}
    injected: dict[str, dict[str, int]] = {}
    late: dict[str, int] = {}
    campaign_sent_s: int | None = None
    truth.mkdir(parents=True, exist_ok=True)
    truth_users = _TruthWriter(truth / "users.parquet")
    purchases_file = truth / "purchases.csv"  # CSV: the recorded demo's Parquet files stay exactly as they were
    purchases_file.unlink(missing_ok=True)
    try:
        for job, result in zip(jobs, _run(jobs, workers), strict=True):
            log.info("demo chunk %d/%d: %d users, %d events", job.chunk + 1, len(jobs), job.n_users,
                     result.rows_written.get("events", 0))
            for source, n in result.rows_written.items():
                written[source] = written.get(source, 0) + n
            for source, n in result.late_rows.items():
                late[source] = late.get(source, 0) + n
            for source, counts in result.injected.items():
                totals = injected.setdefault(source, {})
                for kind, n in counts.items():
                    totals[kind] = totals.get(kind, 0) + n
            if campaign_sent_s is None:
                campaign_sent_s = result.campaign_sent_s
            assert result.campaign_sent_s == campaign_sent_s, "every chunk sends the campaign at the same moment"
            truth_users.write(result.truth)
            result.purchase_truth.to_csv(purchases_file, mode="a", header=not purchases_file.exists(), index=False)
    finally:
        truth_users.close()
    summary = DemoSummary(landing, truth, start_date, end_date, written, injected, late,
                          round(time.perf_counter() - started, 2), len(jobs))
    assert campaign_sent_s is not None
    _write_planted(truth, campaign_sent_s, Hazard(), summary, seed, n_users, n_days, chunk_users)
    return summary


def _run(jobs: list[_ChunkJob], workers: int):
    """The chunks' results in chunk order, from this process or from ``workers`` processes."""
    if workers == 1 or len(jobs) == 1:
        for job in jobs:
            yield _generate_chunk(job)
        return
    # spawn: a fresh interpreter per worker (forking a process that holds Arrow's thread pools is unsafe).
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
        yield from pool.map(_generate_chunk, jobs)


def _generate_chunk(job: _ChunkJob) -> _ChunkResult:
    """Simulate one chunk of users and write its landing files; the truth rows are handed back."""
    rng = chunk_rng(job.seed, job.chunk)
    vocab = load_vocabulary(job.taxonomy_dir)
    hazard = Hazard()
    pop = draw_population(rng, job.n_users, job.n_days, job.start_s, vocab, first_id=job.first_user)
    sim = simulate(rng, pop, job.n_days, job.start_s, vocab, hazard)
    drop_after_churn(sim)
    _release_memory()
    for source, columns in sim.rows.items():
        n = sum(len(part) for part in next(iter(columns.values()), []))
        if n >= ID_STRIDE:
            raise ValueError(f"a chunk of {job.n_users:,} users made {n:,} {source} rows, more than the "
                             f"{ID_STRIDE:,} ids a chunk may use: use smaller chunks (chunk_users)")
    # The random draws happen in the order of the unchunked generator: times offset on tickets, then landing days
    # and faults source by source.
    tickets = build_frame("support_tickets", sim, pop, vocab, job.first_user, job.chunk * ID_STRIDE)
    offset_some_times(tickets, "opened_at", 0.3, rng)
    written: dict[str, int] = {}
    injected: dict[str, dict[str, int]] = {}
    late: dict[str, int] = {}
    for source in SOURCE_ORDER:
        late[source], injected[source], written[source] = _land_source(
            source, job, sim, pop, vocab, rng, tickets if source == "support_tickets" else None)
        if source == "support_tickets":
            tickets = None
        if source != "users":
            sim.rows.pop(source, None)  # its rows are written: free them
        _release_memory()
    after = purchase_days_after_end(np.random.default_rng(np.random.SeedSequence(job.seed, spawn_key=(job.chunk, 16))),
                                    pop, sim, hazard, job.n_days)
    return _ChunkResult(written, injected, late, _truth_users(pop, sim, vocab, hazard), sim.campaign_sent_s,
                        _truth_purchases(pop, after))


def _land_source(source: str, job: _ChunkJob, sim: Simulated, pop: Population, vocab: Vocabulary,
                 rng: np.random.Generator, frame: pd.DataFrame | None) -> tuple[int, dict[str, int], int]:
    """Landing days, injected faults and the files of one source of one chunk: (late rows, injected, written)."""
    id_base = job.chunk * ID_STRIDE
    events = None
    if source == "events":
        # Events become strings a landing day at a time: landing days and faults are drawn over an index of the
        # simulated rows (the same draws as over the frame of strings: they depend on its length only).
        e = sim.columns("events")
        events = EventFiles(e, pop.user_ids, vocab, id_base)
        frame = pd.DataFrame({"_t": e["t"], "_row": np.arange(len(e["t"]), dtype=np.int32)})
    elif frame is None:
        frame = build_frame(source, sim, pop, vocab, job.first_user, id_base)
    late = assign_landing_days(frame, job.start_s, job.n_days, job.late_rate, rng, allow_late=source != "users")
    if FORMAT_OF[source] == "jsonl":
        frame, injected = inject_faults(source, frame, job.dirty_rate, job.n_days, rng)
        return late, injected, write_source(source, frame, job.landing, job.start_s, job.chunk)
    extra, injected, order = draw_faults(source, frame, job.dirty_rate, job.n_days, rng)
    parts = [frame, *extra]
    del frame, extra
    if events is not None:
        rows = np.concatenate([p["_row"].to_numpy() for p in parts])
        days = np.concatenate([p["_landing_day"].to_numpy() for p in parts]).astype(np.int32)
        del parts
        return late, injected, events.write(rows[order], days[order], job.landing, job.start_s, job.chunk)
    return late, injected, write_csv_source(source, parts, order, job.landing, job.start_s, job.chunk)


def _release_memory() -> None:
    """Hand freed heap back to the system (glibc keeps it otherwise, and the next chunk's peak adds to it)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _truth_purchases(pop: Population, after_end: dict[int, np.ndarray]) -> pd.DataFrame:
    """truth/purchases.csv (docs/purchases.md): the planted chance of buying on a day while subscribed, and the
    days with a purchase in the first h days after the end, continuing the planted process."""
    return pd.DataFrame({"user_id": pop.user_ids,
                         "purchase_day_probability": purchase_day_probability(pop.activity_rate),
                         **{f"purchase_days_after_end_{h}d": days for h, days in after_end.items()}})


def _truth_users(pop: Population, sim: Simulated, vocab: Vocabulary, hazard: Hazard) -> pd.DataFrame:
    churned = sim.churned_s >= 0
    return pd.DataFrame({
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
        "risk_score": hazard.b_eng * pop.z_engagement,  # z is standardized within the user's chunk
        "churned": churned,
        "churned_at": pd.to_datetime(np.where(churned, sim.churned_s, 0), unit="s", utc=True).where(churned),
        "campaign_group": np.array(["none", "treatment", "control"])[sim.campaign_group],
        # The retention campaign's planted hazard ratio for this user (1 where not sent) and the placebo's group.
        "campaign_hazard_ratio": sim.campaign_ratio,
        "placebo_group": np.array(["none", "treatment", "control"])[sim.placebo_group],
    })


class _TruthWriter:
    """truth/users.parquet, one row group per chunk (one chunk: what ``DataFrame.to_parquet`` writes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer: pq.ParquetWriter | None = None

    def write(self, users: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(users, preserve_index=False)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema, compression="snappy")
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _write_planted(truth: Path, campaign_sent_s: int, hazard: Hazard, summary: DemoSummary, seed: int,
                   n_users: int, n_days: int, chunk_users: int) -> None:
    chunking = {"chunk_users": chunk_users, "chunks": summary.chunks} if summary.chunks > 1 else {}
    planted = {
        "seed": seed, "n_users": n_users, "n_days": n_days, **chunking,
        "start_date": summary.start_date.isoformat(), "end_date": summary.end_date.isoformat(),
        **asdict(hazard),
        "campaign_id": RETENTION_CAMPAIGN, "placebo_campaign_id": PLACEBO_CAMPAIGN,
        "campaign_sent_at": pd.Timestamp(campaign_sent_s, unit="s", tz="UTC").isoformat(),
        "injected": summary.injected, "rows_written": summary.rows_written, "late_rows": summary.late_rows,
        "seconds_per_day": DAY,
    }
    (truth / "planted.json").write_text(json.dumps(planted, indent=2) + "\n")


__all__ = ["DEFAULT_CHUNK_USERS", "DemoSummary", "chunk_rng", "generate_demo"]
