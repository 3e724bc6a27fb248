"""The data contract: the raw interaction sources, their columns and types.

One place describes what a landing file may contain. Ingestion validates against it, the demo
generator writes it, and the dbt sources (``dbt/models/staging/_sources.yml``) read the raw tables
it produces. Only ``events`` with ``user_id, occurred_at, event_type`` is required of a user.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

# string: text, NFC-normalized; timestamp: UTC; double: a finite number; money: an exact DECIMAL(18, 2) amount.
ColumnType = Literal["string", "timestamp", "double", "money"]
SQL_TYPES: dict[str, str] = {"string": "varchar", "timestamp": "timestamp", "double": "double",
                             "money": "decimal(18, 2)"}
MONEY_MAX = 9_999_999_999_999_999.99  # the largest DECIMAL(18, 2)

# The quarantine policy's defaults (docs/reliability.md; sources.yml may override the first three).
# Text that means "no value": a required column or an id holding one is quarantined, an optional number or time
# holding one is empty. Compared case-insensitively after trimming; free text columns keep such words as written.
DEFAULT_NULL_VALUES: tuple[str, ...] = ("null", "none", "nil", "na", "nan", "undefined")
# A time is plausible from EARLIEST_PLAUSIBLE_TIME up to the end of the day after its landing day (an undated
# file: after the day it was last modified); a column may allow more (Column.days_after_landing).
EARLIEST_PLAUSIBLE_TIME = date(1970, 1, 1)
DAYS_AFTER_LANDING = 1

# Bookkeeping columns every raw table carries after the contract columns.
RAW_ROW_ID = "_row_id"  # the source's id column, or a hash of the row where the source has none
RAW_SOURCE_FILE = "_source_file"
RAW_SOURCE_LINE = "_source_line"  # 1-based line in the file (the header is line 1); row number for Parquet
RAW_LANDING_DATE = "_landing_date"  # the daily partition the file belongs to
RAW_LOADED_AT = "_loaded_at"
RAW_BOOKKEEPING = (RAW_ROW_ID, RAW_SOURCE_FILE, RAW_SOURCE_LINE, RAW_LANDING_DATE, RAW_LOADED_AT)

RAW_SCHEMA = "raw"
QUARANTINE_TABLE = "quarantine"
LOAD_LOG_TABLE = "load_log"
CONFLICTS_TABLE = "conflicts"
FILE_INDEX_TABLE = "file_index"


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType = "string"
    required: bool = False
    accepted_values: tuple[str, ...] | None = None
    min_value: float | None = None  # numbers: the contract's range (inclusive)
    max_value: float | None = None
    decimals: int | None = None  # numbers: at most this many decimal places (money: always 2)
    days_after_landing: int | None = None  # timestamps: None is DAYS_AFTER_LANDING
    free_text: bool = False  # strings: kept as written (no sentinel words, control characters allowed but NUL)

    @property
    def is_id(self) -> bool:
        """An identifier: null-like words and invisible or control characters are quarantined, never loaded."""
        return self.type == "string" and self.name.endswith("_id")


@dataclass(frozen=True)
class SourceContract:
    name: str
    columns: tuple[Column, ...]
    time_column: str
    id_column: str | None = None  # None: rows are keyed by a hash of their contract columns
    required_source: bool = False

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"source {self.name!r} has no column {name!r}")


def _req(name: str, type_: ColumnType = "string") -> Column:
    return Column(name, type_, required=True)


SOURCES: dict[str, SourceContract] = {
    s.name: s
    for s in (
        SourceContract(
            "users",
            (
                _req("user_id"),
                _req("signed_up_at", "timestamp"),
                Column("plan"),
                Column("country"),
                Column("acquisition_channel"),
            ),
            time_column="signed_up_at",
            id_column="user_id",
        ),
        SourceContract(
            "events",
            (
                Column("event_id"),
                _req("user_id"),
                _req("occurred_at", "timestamp"),
                _req("event_type"),
                Column("topic"),
                Column("item_id"),
                Column("channel"),
                Column("content_format"),
                Column("value", "money", min_value=0, max_value=MONEY_MAX),  # spend; refunds are not modelled
                Column("text", free_text=True),
            ),
            time_column="occurred_at",
            id_column="event_id",
            required_source=True,
        ),
        SourceContract(
            "conversations",
            (
                Column("message_id"),
                _req("user_id"),
                _req("sent_at", "timestamp"),
                Column("role", accepted_values=("user", "agent", "bot")),
                Column("text", free_text=True),
            ),
            time_column="sent_at",
            id_column="message_id",
        ),
        SourceContract(
            "recommendations",
            (
                Column("rec_id"),
                _req("user_id"),
                _req("shown_at", "timestamp"),
                Column("item_id"),
                Column("topic"),
                Column("response", accepted_values=("clicked", "dismissed", "ignored")),
                Column("responded_at", "timestamp"),
            ),
            time_column="shown_at",
            id_column="rec_id",
        ),
        SourceContract(
            "support_tickets",
            (
                Column("ticket_id"),
                _req("user_id"),
                _req("opened_at", "timestamp"),
                Column("category"),
                # A ticket's row lands when it is opened and may carry its planned close time (the demo's: <= 5 days).
                Column("closed_at", "timestamp", days_after_landing=30),
                # A rating: the marts carry it beside money, as DECIMAL(18, 2), so it must be exact in 2 decimals.
                Column("satisfaction", "double", min_value=1, max_value=5, decimals=2),
            ),
            time_column="opened_at",
            id_column="ticket_id",
        ),
        SourceContract(
            "subscriptions",
            (
                _req("user_id"),
                _req("occurred_at", "timestamp"),
                Column(
                    "action",
                    required=True,
                    accepted_values=("started", "renewed", "upgraded", "downgraded", "cancelled"),
                ),
                Column("plan"),
                Column("mrr", "money", min_value=0, max_value=MONEY_MAX),
            ),
            time_column="occurred_at",
        ),
        SourceContract(
            "campaigns",
            (
                Column("send_id"),
                _req("user_id"),
                _req("sent_at", "timestamp"),
                Column("campaign_id"),
                Column("group", accepted_values=("treatment", "control")),
                Column("topic"),
            ),
            time_column="sent_at",
            id_column="send_id",
        ),
    )
}

SOURCE_NAMES: tuple[str, ...] = tuple(SOURCES)
