"""Turning simulated codes into landing files: strings, late arrivals, injected faults, one file a day."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from dagster_twins.demo.days import DAY, DIGEST_CAMPAIGN, RETENTION_CAMPAIGN, Simulated
from dagster_twins.demo.people import Population
from dagster_twins.demo.vocabulary import CHANNELS, EVENT_TYPES, FORMATS, TICKET_CATEGORIES, Vocabulary

FORMAT_OF = {"events": "parquet", "conversations": "jsonl", "users": "csv", "recommendations": "csv",
             "support_tickets": "csv", "subscriptions": "csv", "campaigns": "csv"}
ACTIONS = np.array(["started", "renewed", "upgraded", "downgraded", "cancelled"])
RESPONSES = np.array(["clicked", "dismissed", "ignored"])


def iso(seconds: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
    """ISO 8601 UTC strings ('Z') for epoch seconds; '' where missing."""
    text = pd.to_datetime(seconds, unit="s").strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(dtype=object)
    if missing is not None:
        text[missing] = ""
    return text


def _pick(options: dict, keys: np.ndarray, uniform: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """For each row, one of options[names[key]] chosen by a uniform draw."""
    out = np.empty(len(keys), dtype=object)
    for k, name in enumerate(names):
        mask = keys == k
        if mask.any():
            choices = np.array(options[name], dtype=object)
            out[mask] = choices[np.minimum((uniform[mask] * len(choices)).astype(int), len(choices) - 1)]
    return out


def _text(vocab: Vocabulary, goal: np.ndarray, topic: np.ndarray, pick: np.ndarray) -> np.ndarray:
    phrase = _pick(vocab.phrases, goal, pick, vocab.goals)
    keyword = _pick(vocab.keywords, topic, (pick * 7.31) % 1.0, vocab.topics)
    return phrase + " " + keyword


def build_frames(sim: Simulated, pop: Population, vocab: Vocabulary) -> dict[str, pd.DataFrame]:
    """Every source as a frame of strings in the contract's columns, with the event time in '_t'."""
    uid = pop.user_ids
    topics = np.array(vocab.topics, dtype=object)
    frames: dict[str, pd.DataFrame] = {}

    u = sim.columns("users")
    frames["users"] = pd.DataFrame({
        "user_id": uid[u["user"]], "signed_up_at": iso(u["t"]),
        "plan": np.where(pop.plan_pro[u["user"]], "pro", "basic"),
        "country": np.array(["US", "GB", "DE", "FR", "BR", "IN"])[u["user"] % 6],
        "acquisition_channel": np.array(["organic", "paid_search", "social", "referral"])[(u["user"] * 7) % 4],
        "_t": u["t"]})

    e = sim.columns("events")
    search = e["etype"] == EVENT_TYPES.index("search")
    fmt = np.array(FORMATS, dtype=object)[e["fmt"]]
    item = pd.Series(fmt).str.cat([pd.Series(topics[e["topic"]]), pd.Series(e["seq"] % 500).astype(str).str.zfill(5)],
                                  sep="-").to_numpy(dtype=object)
    text = np.full(len(search), None, dtype=object)
    text[search] = _text(vocab, e["goal"][search], e["topic"][search], e["pick"][search])
    frames["events"] = pd.DataFrame({
        "event_id": pd.Series(e["seq"]).map("ev{:09d}".format).to_numpy(dtype=object),
        "user_id": uid[e["user"]], "occurred_at": pd.to_datetime(e["t"], unit="s", utc=True),
        "event_type": np.array(EVENT_TYPES, dtype=object)[e["etype"]],
        "topic": np.where(search, None, topics[e["topic"]]),
        "item_id": np.where(search, None, item), "channel": np.array(CHANNELS, dtype=object)[e["channel"]],
        "content_format": np.where(search, None, fmt), "value": e["value"], "text": text, "_t": e["t"]})

    c = sim.columns("conversations")
    n = len(c["t"])
    frames["conversations"] = pd.DataFrame({
        "message_id": [f"msg{i:08d}" for i in range(n)], "user_id": uid[c["user"]], "sent_at": iso(c["t"]),
        "role": np.where(c["agent"], "agent", "user"),
        "text": np.where(c["agent"], "Thanks for reaching out, let me look into that.",
                         _text(vocab, c["goal"], c["topic"], c["pick"]) if n else np.array([], dtype=object)),
        "_t": c["t"]})

    r = sim.columns("recommendations")
    n = len(r["t"])
    rec_topic = topics[r["topic"]]
    frames["recommendations"] = pd.DataFrame({
        "rec_id": [f"rec{i:09d}" for i in range(n)], "user_id": uid[r["user"]], "shown_at": iso(r["t"]),
        "item_id": pd.Series(np.array(FORMATS, dtype=object)[r["fmt"]]).str.cat(pd.Series(rec_topic), sep="-")
        .to_numpy(),
        "topic": rec_topic, "response": RESPONSES[r["response"]],
        # A recommendation row is exported once its response is known: it lands on the day of the response.
        "responded_at": iso(r["responded"], r["responded"] < 0), "_t": np.maximum(r["t"], r["responded"])})

    t = sim.columns("support_tickets")
    n = len(t["t"])
    frames["support_tickets"] = pd.DataFrame({
        "ticket_id": [f"tk{i:08d}" for i in range(n)], "user_id": uid[t["user"]], "opened_at": iso(t["t"]),
        "category": np.array(TICKET_CATEGORIES, dtype=object)[t["category"]],
        "closed_at": iso(t["closed"], t["closed"] < 0),
        "satisfaction": pd.Series(t["satisfaction"]).map(lambda v: "" if np.isnan(v) else str(int(v))).to_numpy(),
        "_t": t["t"]})

    s = sim.columns("subscriptions")
    frames["subscriptions"] = pd.DataFrame({
        "user_id": uid[s["user"]], "occurred_at": iso(s["t"]), "action": ACTIONS[s["action"]],
        "plan": np.where(s["pro"], "pro", "basic"),
        "mrr": np.where(s["action"] == 4, "0.00", np.where(s["pro"], "29.00", "9.00")), "_t": s["t"]})

    k = sim.columns("campaigns")
    n = len(k["t"])
    frames["campaigns"] = pd.DataFrame({
        "send_id": [f"send{i:09d}" for i in range(n)], "user_id": uid[k["user"]], "sent_at": iso(k["t"]),
        "campaign_id": np.array([RETENTION_CAMPAIGN, DIGEST_CAMPAIGN])[k["campaign"]],
        "group": np.array(["none", "treatment", "control"])[k["group"]], "topic": topics[k["topic"]], "_t": k["t"]})
    return frames


def offset_some_times(frame: pd.DataFrame, column: str, share: float, rng: np.random.Generator) -> None:
    """Write some times with a +01:00 offset: the same instant, another notation."""
    chosen = np.flatnonzero((rng.random(len(frame)) < share) & (frame[column] != ""))
    shifted = pd.to_datetime(frame[column].iloc[chosen], utc=True) + pd.Timedelta(hours=1)
    frame.loc[frame.index[chosen], column] = shifted.dt.strftime("%Y-%m-%dT%H:%M:%S+01:00").to_numpy()


def write_landing(frames: dict[str, pd.DataFrame], landing: Path, start_s: int, n_days: int) -> dict[str, int]:
    """One file per source per landing day (column '_landing_day'); rows shuffled inside each file already."""
    written: dict[str, int] = {}
    for source, frame in frames.items():
        folder = landing / source
        folder.mkdir(parents=True, exist_ok=True)
        data = frame.drop(columns=["_t"])
        days = data.pop("_landing_day").to_numpy()
        order = np.argsort(days, kind="stable")
        data, days = data.iloc[order], days[order]
        bounds = np.flatnonzero(np.diff(days)) + 1
        for chunk, day_rows in zip(np.split(np.arange(len(days)), bounds), np.split(days, bounds), strict=True):
            if len(chunk) == 0:
                continue
            name = pd.Timestamp(start_s + int(day_rows[0]) * DAY, unit="s").strftime("%Y-%m-%d")
            part = data.iloc[chunk]
            _write(part, folder / f"{name}.{FORMAT_OF[source]}", FORMAT_OF[source])
        written[source] = len(data)
    return written


def _write(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, compression="zstd")
    elif fmt == "jsonl":
        raw = frame.pop("_raw_json") if "_raw_json" in frame else None
        lines = frame.to_json(orient="records", lines=True).splitlines()
        if raw is not None:
            lines = [r if isinstance(r, str) and r else line for line, r in zip(lines, raw.to_numpy(), strict=True)]
        path.write_text("\n".join(lines) + "\n")
    else:
        table = pa.Table.from_pandas(frame.astype(object).where(frame.notna(), ""), preserve_index=False)
        table = table.cast(pa.schema([(name, pa.string()) for name in table.column_names]))
        pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="needed"))


__all__ = ["build_frames", "iso", "offset_some_times", "pc", "write_landing"]
