"""Finding landing files and the daily partition (landing date) each belongs to.

A file's landing date is the ``YYYY-MM-DD`` in its path (``events/2026-05-01.csv`` or
``events/dt=2026-05-01/part-0.parquet``). A file whose path carries no date (a one-off export) lands
on the date of its latest valid timestamp, which the loader reads from the file itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

FileFormat = Literal["csv", "jsonl", "parquet"]

FORMATS: dict[str, FileFormat] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_DATE_IN_PATH = re.compile(r"(?<!\d)(\d{4}-\d{2}-\d{2})(?!\d)")


@dataclass(frozen=True)
class LandingFile:
    path: Path
    format: FileFormat
    path_date: date | None  # the date written in the path, if any

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    @property
    def is_empty(self) -> bool:
        """No bytes, or (CSV, JSON Lines) nothing but whitespace: a file with zero rows, not a malformed one."""
        if self.size == 0:
            return True
        if self.format == "parquet":
            return False
        with self.path.open("rb") as f:
            while chunk := f.read(1 << 16):
                if chunk.strip():
                    return False
        return True


def date_from_path(path: Path, root: Path) -> date | None:
    """The last valid date in the path below ``root`` (file name wins over folders)."""
    for match in reversed(_DATE_IN_PATH.findall(str(path.relative_to(root)))):
        try:
            return date.fromisoformat(match)
        except ValueError:
            continue
    return None


def discover(folder: Path) -> list[LandingFile]:
    """Every landing file under ``folder`` (recursively), sorted by path; unknown extensions are skipped
    only if hidden (``.``/``_`` prefixed), otherwise they are an error so nothing is silently ignored."""
    if not folder.exists():
        return []
    files: list[LandingFile] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.name.startswith((".", "_")):
            continue
        fmt = FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise ValueError(
                f"{path}: unsupported landing file type {path.suffix!r}; use one of {sorted(FORMATS)} "
                "(prefix the name with '_' or '.' to keep a file there without loading it)"
            )
        files.append(LandingFile(path, fmt, date_from_path(path, folder)))
    return files
