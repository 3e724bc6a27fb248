"""Turning simulated codes into landing files: strings, late arrivals, injected faults, one file a day.

Every builder is row-wise (a row's strings depend on that row's codes only), so a source can be turned into
strings a landing day at a time: ``events``, by far the largest source, never exists as one frame of strings.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from dagster_twins.demo.days import DAY, DIGEST_CAMPAIGN, PLACEBO_CAMPAIGN, RETENTION_CAMPAIGN, SEARCH, Simulated
from dagster_twins.demo.people import Population
from dagster_twins.demo.vocabulary import CHANNELS, EVENT_TYPES, FORMATS, TICKET_CATEGORIES, Vocabulary

FORMAT_OF = {"events": "parquet", "conversations": "jsonl", "users": "csv", "recommendations": "csv",
             "support_tickets": "csv", "subscriptions": "csv", "campaigns": "csv"}
# The order sources get their landing days and faults in: it fixes the random draws, so it never changes.
SOURCE_ORDER = ("users", "events", "conversations", "recommendations", "support_tickets", "subscriptions",
                "campaigns")
ACTIONS = np.array(["started", "renewed", "upgraded", "downgraded", "cancelled"], dtype=object)
RESPONSES = np.array(["clicked", "dismissed", "ignored"], dtype=object)
PLANS = np.array(["basic", "pro"], dtype=object)
# Chunk k of a demo numbers its events, messages, recommendations, tickets and sends from k * ID_STRIDE, so
# ids stay unique across chunks generated independently (chunk 0 keeps the numbering of an unchunked demo).
ID_STRIDE = 10**9


def iso(seconds: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
    """ISO 8601 UTC strings ('Z') for epoch seconds; '' where missing."""
    text = _objects(iso_bytes(seconds))
    if missing is not None:
        text[missing] = ""
    return text


def iso_bytes(seconds: np.ndarray) -> np.ndarray:
    """``iso`` as a numpy bytes array: the day's date and the time of day, each looked up in a table."""
    day, second = np.divmod(np.asarray(seconds, dtype=np.int64), DAY)
    if len(day) == 0:
        return np.empty(0, dtype="S20")
    first = int(day.min())
    dates = np.datetime_as_string(np.arange(first, int(day.max()) + 1).astype("datetime64[D]")).astype("S10")
    return np.strings.add(dates[day - first], _clock()[second])


@functools.cache
def _clock() -> np.ndarray:
    """'THH:MM:SSZ' for every second of a day."""
    return np.array([f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z" for s in range(DAY)], dtype="S10")


def numbered(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    """``f"{prefix}{n:0{width}d}"`` for every (non-negative) number, vectorized."""
    return _objects(numbered_bytes(prefix, numbers, width))


def numbered_bytes(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    """``numbered`` as a numpy bytes array, digit by digit when every number has as many digits."""
    numbers = np.asarray(numbers, dtype=np.int64)
    if len(numbers) == 0:
        return np.empty(0, dtype=f"S{len(prefix) + width}")
    low, high = int(numbers.min()), int(numbers.max())
    digits = max(width, len(str(high)))
    if low < 0 or (digits > width and low < 10 ** (digits - 1)):  # not all of one length: the slow way
        text = np.strings.add(prefix, np.strings.zfill(numbers.astype(str), width))
        return text.astype(f"S{text.dtype.itemsize // 4}")
    head = prefix.encode()
    out = np.empty((len(numbers), len(head) + digits), dtype=np.uint8)
    out[:, :len(head)] = np.frombuffer(head, dtype=np.uint8)
    rest = numbers
    for i in range(len(head) + digits - 1, len(head) - 1, -1):
        rest, digit = np.divmod(rest, 10)
        out[:, i] = digit + ord("0")
    return out.view(f"S{len(head) + digits}").ravel()


def _objects(text: np.ndarray) -> np.ndarray:
    """An object array of ``str`` from a numpy bytes (ASCII) or str array."""
    return _strings(text).to_numpy(zero_copy_only=False)


def _user_ids(pop: Population) -> np.ndarray:
    return pop.user_ids.astype(object)


def _strings(text: np.ndarray) -> pa.Array:
    """Arrow strings from a numpy bytes (ASCII), str or object array (numpy pads bytes with NULs: Arrow's binary
    conversion drops them, its direct conversion to strings would not)."""
    if text.dtype.kind == "S":
        return pa.array(text).cast(pa.string())
    return pa.array(text, type=pa.string())


def _arrow(text: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """A pandas column of Arrow strings from a numpy bytes (ASCII) or str array."""
    return pd.arrays.ArrowExtensionArray(_strings(text))


def _arrow_labels(labels, codes: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """A pandas column of Arrow strings: ``labels[code]`` for every code."""
    return pd.arrays.ArrowExtensionArray(_strings(np.asarray(labels)).take(codes))


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


# The CSV sources below are built as Arrow strings (pandas' ArrowDtype), the form they are written in: no
# Python string per value. The small frames of injected rows copied from them hold Python strings, as do the
# sources built with object columns (tickets, whose times are rewritten through pandas, and conversations).


def build_users(u: dict[str, np.ndarray], pop: Population, user_base: int = 0) -> pd.DataFrame:
    number = u["user"] + user_base  # the user's number in the whole population
    return pd.DataFrame({
        "user_id": _arrow_labels(pop.user_ids, u["user"]), "signed_up_at": _arrow(iso_bytes(u["t"])),
        "plan": _arrow_labels(PLANS, pop.plan_pro[u["user"]].astype(np.intp)),
        "country": _arrow_labels(["US", "GB", "DE", "FR", "BR", "IN"], number % 6),
        "acquisition_channel": _arrow_labels(["organic", "paid_search", "social", "referral"], (number * 7) % 4),
        "_t": u["t"]})


def build_events(e: dict[str, np.ndarray], user_ids: np.ndarray, vocab: Vocabulary, id_base: int = 0) -> pd.DataFrame:
    """The events of ``e`` (any subset of the simulated rows) as contract columns; no '_t'."""
    seq = e["seq"] + id_base
    search = e["etype"] == SEARCH
    topic = np.array(vocab.topics)[e["topic"]]
    fmt = np.array(FORMATS)[e["fmt"]]
    item = np.strings.add(np.strings.add(np.strings.add(fmt, "-"), np.strings.add(topic, "-")),
                          np.strings.zfill((seq % 500).astype(str), 5)).astype(object)
    text = np.full(len(search), None, dtype=object)
    text[search] = _text(vocab, e["goal"][search], e["topic"][search], e["pick"][search])
    topic, fmt = topic.astype(object), fmt.astype(object)
    return pd.DataFrame({
        "event_id": numbered("ev", seq, 9),
        "user_id": user_ids[e["user"]], "occurred_at": pd.to_datetime(e["t"], unit="s", utc=True),
        "event_type": np.array(EVENT_TYPES, dtype=object)[e["etype"]],
        "topic": np.where(search, None, topic),
        "item_id": np.where(search, None, item), "channel": np.array(CHANNELS, dtype=object)[e["channel"]],
        "content_format": np.where(search, None, fmt), "value": e["value"], "text": text})


def build_conversations(c: dict[str, np.ndarray], pop: Population, vocab: Vocabulary, id_base: int = 0) -> pd.DataFrame:
    n = len(c["t"])
    return pd.DataFrame({
        "message_id": numbered("msg", np.arange(id_base, id_base + n), 8), "user_id": _user_ids(pop)[c["user"]],
        "sent_at": iso(c["t"]), "role": np.where(c["agent"], "agent", "user"),
        "text": np.where(c["agent"], "Thanks for reaching out, let me look into that.",
                         _text(vocab, c["goal"], c["topic"], c["pick"]) if n else np.array([], dtype=object)),
        "_t": c["t"]})


def build_recommendations(r: dict[str, np.ndarray], pop: Population, vocab: Vocabulary,
                          id_base: int = 0) -> pd.DataFrame:
    n = len(r["t"])
    k = len(vocab.topics)
    items = [f"{fmt}-{topic}" for fmt in FORMATS for topic in vocab.topics]
    responded = iso_bytes(r["responded"])
    responded[r["responded"] < 0] = b""
    return pd.DataFrame({
        "rec_id": _arrow(numbered_bytes("rec", np.arange(id_base, id_base + n), 9)),
        "user_id": _arrow_labels(pop.user_ids, r["user"]), "shown_at": _arrow(iso_bytes(r["t"])),
        "item_id": _arrow_labels(items, r["fmt"].astype(np.intp) * k + r["topic"]),
        "topic": _arrow_labels(vocab.topics, r["topic"]), "response": _arrow_labels(RESPONSES, r["response"]),
        # A recommendation row is exported once its response is known: it lands on the day of the response.
        "responded_at": _arrow(responded), "_t": np.maximum(r["t"], r["responded"])})


def build_support_tickets(t: dict[str, np.ndarray], pop: Population, id_base: int = 0) -> pd.DataFrame:
    n = len(t["t"])
    return pd.DataFrame({
        "ticket_id": numbered("tk", np.arange(id_base, id_base + n), 8), "user_id": _user_ids(pop)[t["user"]],
        "opened_at": iso(t["t"]), "category": np.array(TICKET_CATEGORIES, dtype=object)[t["category"]],
        "closed_at": iso(t["closed"], t["closed"] < 0),
        "satisfaction": pd.Series(t["satisfaction"]).map(lambda v: "" if np.isnan(v) else str(int(v))).to_numpy(),
        "_t": t["t"]})


def build_subscriptions(s: dict[str, np.ndarray], pop: Population) -> pd.DataFrame:
    pro = s["pro"].astype(np.intp)
    return pd.DataFrame({
        "user_id": _arrow_labels(pop.user_ids, s["user"]), "occurred_at": _arrow(iso_bytes(s["t"])),
        "action": _arrow_labels(ACTIONS, s["action"]), "plan": _arrow_labels(PLANS, pro),
        "mrr": _arrow_labels(["9.00", "29.00", "0.00"], np.where(s["action"] == 4, 2, pro)), "_t": s["t"]})


def build_campaigns(k: dict[str, np.ndarray], pop: Population, vocab: Vocabulary, id_base: int = 0) -> pd.DataFrame:
    n = len(k["t"])
    return pd.DataFrame({
        "send_id": _arrow(numbered_bytes("send", np.arange(id_base, id_base + n), 9)),
        "user_id": _arrow_labels(pop.user_ids, k["user"]), "sent_at": _arrow(iso_bytes(k["t"])),
        "campaign_id": _arrow_labels([RETENTION_CAMPAIGN, DIGEST_CAMPAIGN, PLACEBO_CAMPAIGN], k["campaign"]),
        "group": _arrow_labels(["none", "treatment", "control"], k["group"]),
        "topic": _arrow_labels(vocab.topics, k["topic"]), "_t": k["t"]})


def build_frame(source: str, sim: Simulated, pop: Population, vocab: Vocabulary, user_base: int = 0,
                id_base: int = 0) -> pd.DataFrame:
    """One source (not ``events``: see ``build_events``) as a frame of strings in the contract's columns, with the
    event time in '_t'."""
    cols = sim.columns(source)
    if source == "users":
        return build_users(cols, pop, user_base)
    if source == "conversations":
        return build_conversations(cols, pop, vocab, id_base)
    if source == "recommendations":
        return build_recommendations(cols, pop, vocab, id_base)
    if source == "support_tickets":
        return build_support_tickets(cols, pop, id_base)
    if source == "subscriptions":
        return build_subscriptions(cols, pop)
    if source == "campaigns":
        return build_campaigns(cols, pop, vocab, id_base)
    raise ValueError(f"no frame builder for {source!r}")


def offset_some_times(frame: pd.DataFrame, column: str, share: float, rng: np.random.Generator) -> None:
    """Write some times with a +01:00 offset: the same instant, another notation."""
    chosen = np.flatnonzero((rng.random(len(frame)) < share) & (frame[column] != ""))
    shifted = pd.to_datetime(frame[column].iloc[chosen], utc=True) + pd.Timedelta(hours=1)
    frame.loc[frame.index[chosen], column] = shifted.dt.strftime("%Y-%m-%dT%H:%M:%S+01:00").to_numpy()


def landing_file(folder: Path, day: str, fmt: str, chunk: int = 0) -> Path:
    """``<day>.<fmt>`` for chunk 0 (the layout of an unchunked demo), ``<day>/part-<chunk>.<fmt>`` for the others:
    the landing date is in the path either way (``ingestion.files.date_from_path``)."""
    return folder / f"{day}.{fmt}" if chunk == 0 else folder / day / f"part-{chunk:05d}.{fmt}"


def by_landing_day(days: np.ndarray, start_s: int) -> Iterator[tuple[str, np.ndarray]]:
    """(day name, positions of its rows in their order) per landing day present, in day order."""
    small = len(days) and days.min() >= 0 and days.max() < 2**15
    order = np.argsort(days.astype(np.int16) if small else days, kind="stable")  # 16 bits: a radix sort
    sorted_days = days[order]
    bounds = [0, *(np.flatnonzero(np.diff(sorted_days)) + 1), len(days)]
    for start, stop in itertools.pairwise(bounds):
        if stop > start:
            day = pd.Timestamp(start_s + int(sorted_days[start]) * DAY, unit="s").strftime("%Y-%m-%d")
            yield day, order[start:stop]


def write_source(source: str, frame: pd.DataFrame, landing: Path, start_s: int, chunk: int = 0) -> int:
    """One file per landing day (column '_landing_day') of one source, rows in the frame's order (shuffled
    already). Returns rows written."""
    fmt = FORMAT_OF[source]
    folder = landing / source
    data = frame.drop(columns=[c for c in ("_t", "_landing_day") if c in frame])
    for day, rows in by_landing_day(frame["_landing_day"].to_numpy(), start_s):
        _write(data.iloc[rows], _new_file(folder, day, fmt, chunk), fmt)
    return len(frame)


def write_csv_source(source: str, parts: list[pd.DataFrame], order: np.ndarray, landing: Path, start_s: int,
                     chunk: int = 0) -> int:
    """What ``write_source`` writes for the rows of ``parts`` (a source's frame, then its injected rows) taken in
    ``order``, without ever concatenating and shuffling frames of Python strings: each part becomes columns of
    Arrow strings in its own order, and the shuffle is an Arrow take."""
    assert FORMAT_OF[source] == "csv"
    table = pa.concat_tables([_string_table(p.drop(columns=[c for c in ("_t", "_landing_day") if c in p]))
                              for p in parts]).combine_chunks()  # one chunk per column: a cheap take
    days = np.concatenate([p["_landing_day"].to_numpy() for p in parts])[order]
    for day, rows in by_landing_day(days, start_s):
        path = _new_file(landing / source, day, "csv", chunk)
        pacsv.write_csv(table.take(order[rows]), path, pacsv.WriteOptions(quoting_style="needed"))
    return len(days)


class EventFiles:
    """Writes events a landing day at a time from the simulated codes: each day's rows become an Arrow table
    directly (what ``Table.from_pandas(build_events(...))`` gives, schema and pandas metadata included), and
    through pandas on a day where a text column would be all missing (pandas would type it as null)."""

    def __init__(self, e: dict[str, np.ndarray], user_ids: np.ndarray, vocab: Vocabulary, id_base: int = 0) -> None:
        self.e, self.user_ids, self.vocab, self.id_base = e, np.asarray(user_ids).astype(object), vocab, id_base
        self.users = pa.array(user_ids)
        self.event_types = pa.array(EVENT_TYPES)
        self.topics = pa.array(vocab.topics)
        self.channels = pa.array(CHANNELS)
        self.formats = pa.array(FORMATS)
        k = len(vocab.topics)
        combos = np.arange(len(FORMATS) * k * 500)  # every item id: format, topic, number in 0..499
        self.items = pa.array(np.strings.add(
            np.strings.add(np.strings.add(np.array(FORMATS)[combos // (k * 500)], "-"),
                           np.strings.add(np.array(vocab.topics)[combos // 500 % k], "-")),
            np.strings.zfill((combos % 500).astype(str), 5)))
        search = np.flatnonzero(e["etype"] == SEARCH)
        other = np.flatnonzero(e["etype"] != SEARCH)
        self.schema = None
        if len(search) and len(other):
            sample = self.frame(np.array([other[0], search[0]]))
            self.schema = pa.Table.from_pandas(sample, preserve_index=False).schema

    def frame(self, rows: np.ndarray) -> pd.DataFrame:
        return build_events({name: values[rows] for name, values in self.e.items()}, self.user_ids, self.vocab,
                            self.id_base)

    def table(self, rows: np.ndarray) -> pa.Table:
        e = {name: values[rows] for name, values in self.e.items()}
        search = e["etype"] == SEARCH
        n_search = int(search.sum())
        if self.schema is None or n_search in (0, len(rows)):
            return pa.Table.from_pandas(self.frame(rows), preserve_index=False)
        seq = e["seq"] + self.id_base
        k = len(self.vocab.topics)
        item = ((e["fmt"].astype(np.int64) * k + e["topic"]) * 500 + seq % 500)
        text = pa.array(_text(self.vocab, e["goal"][search], e["topic"][search], e["pick"][search]), type=pa.string())
        arrays = [
            _strings(numbered_bytes("ev", seq, 9)),
            self.users.take(e["user"]),
            pa.array(e["t"] * 1_000_000_000).cast(pa.timestamp("ns", tz="UTC")),
            self.event_types.take(e["etype"]),
            self.topics.take(pa.array(e["topic"], mask=search)),
            self.items.take(pa.array(item, mask=search)),
            self.channels.take(e["channel"]),
            self.formats.take(pa.array(e["fmt"], mask=search)),
            pa.array(e["value"], from_pandas=True),
            text.take(pa.array(np.cumsum(search) - 1, mask=~search)),
        ]
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def write(self, rows: np.ndarray, days: np.ndarray, landing: Path, start_s: int, chunk: int = 0) -> int:
        """Events ``rows`` (indices into the codes, duplicates repeated) in this order, landing on ``days``."""
        for day, positions in by_landing_day(days, start_s):
            path = _new_file(landing / "events", day, "parquet", chunk)
            pq.write_table(self.table(rows[positions]), path, compression="zstd")
        return len(rows)


def _new_file(folder: Path, day: str, fmt: str, chunk: int) -> Path:
    path = landing_file(folder, day, fmt, chunk)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _string_table(frame: pd.DataFrame) -> pa.Table:
    """Every column as text, missing values as '' (what the CSV files hold)."""
    return pa.table({name: _string_column(frame[name]) for name in frame.columns})


def _string_column(column: pd.Series) -> pa.Array | pa.ChunkedArray:
    if isinstance(column.dtype, pd.ArrowDtype):
        return pa.array(column).cast(pa.string()).fill_null("")
    return pa.array(column.to_numpy(dtype=object), type=pa.string(), from_pandas=True).fill_null("")


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
        pacsv.write_csv(_string_table(frame), path, pacsv.WriteOptions(quoting_style="needed"))


__all__ = ["ID_STRIDE", "SOURCE_ORDER", "EventFiles", "build_events", "build_frame", "iso",
           "landing_file", "offset_some_times", "write_csv_source", "write_source"]
