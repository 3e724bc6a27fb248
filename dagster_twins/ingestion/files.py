"""Finding landing files and the daily partition (landing date) each belongs to.

A file's landing date is the ``YYYY-MM-DD`` in its path (``events/2026-05-01.csv`` or
``events/dt=2026-05-01/part-0.parquet``). A file whose path carries no date (a one-off export) lands
on the date of its latest valid timestamp, which the loader reads from the file itself. A date in the path that
cannot be a landing day (before 1970, or after the day after the file was last written) is not taken as one.

Nothing under the landing root goes unmentioned: what is not read (a dangling symlink, a symlink leading outside
the root, a file of an unknown type, a folder no source reads) is returned as a ``Notice`` for the load log.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Literal

from dagster_twins.contract import EARLIEST_PLAUSIBLE_TIME

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
class Notice:
    """Something under the landing root that is not read, and why."""

    path: Path
    message: str


def glob_literal(path: Path | str) -> str:
    """A path DuckDB's readers take literally: they expand ``*``, ``?`` and ``[...]`` in every path they are given
    (a file named ``x_br[AB].csv`` would read ``x_brA.csv``), so each is put in a one-character class."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in str(path))


def modified_day(path: Path) -> date:
    return datetime.fromtimestamp(path.stat().st_mtime).date()


def plausible_path_date(found: date | None, path: Path) -> date | None:
    """A date from the path, if it can be a landing day: from 1970 to the day after the file was last written."""
    if found is None or found < EARLIEST_PLAUSIBLE_TIME or found > modified_day(path) + timedelta(days=1):
        return None
    return found


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
    """Every landing file under ``folder`` that is read (``scan`` also says what is not)."""
    return scan(folder)[0]


def scan(folder: Path, root: Path | None = None) -> tuple[list[LandingFile], list[Notice]]:
    """Every landing file under ``folder`` (recursively, symlinked folders not followed), sorted by path, and a
    notice for each entry not read. Hidden names (``.``/``_`` prefixed) are kept there on purpose: skipped
    silently. A symlink is read when it leads to a file inside ``root`` (the landing root), else noted."""
    if not folder.exists():
        return [], []
    root = (root or folder).resolve()
    files: list[LandingFile] = []
    notices: list[Notice] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        for name in list(dirnames):
            if (Path(dirpath) / name).is_symlink():
                dirnames.remove(name)
                notices.append(Notice(Path(dirpath) / name, "symlinked folder: not followed (link its files instead)"))
        for name in sorted(filenames):
            if name.startswith((".", "_")):
                continue
            path = Path(dirpath) / name
            if path.is_symlink():
                target = path.resolve()
                if not target.exists():
                    notices.append(Notice(path, f"dangling symlink (to {os.readlink(path)}): nothing to read"))
                    continue
                if not target.is_relative_to(root):
                    notices.append(Notice(path, f"symlink leads outside the landing root (to {target}): not read"))
                    continue
            fmt = FORMATS.get(path.suffix.lower())
            if fmt is None:
                notices.append(Notice(path, f"unsupported landing file type {path.suffix!r}: not read; use one of "
                                            f"{sorted(FORMATS)} (prefix the name with '_' or '.' to keep a file "
                                            "there without loading it)"))
                continue
            if not path.is_file():
                notices.append(Notice(path, "not a regular file: not read"))
                continue
            files.append(LandingFile(path, fmt, plausible_path_date(date_from_path(path, folder), path)))
    files.sort(key=lambda f: str(f.path))
    notices.sort(key=lambda n: str(n.path))
    return files, notices


def root_notices(root: Path, folders: list[str]) -> list[Notice]:
    """Entries at the top of the landing root that no source reads (a misspelt folder, a stray file)."""
    if not root.exists():
        return []
    known = {Path(f).parts[0] for f in folders}
    notices = []
    for entry in sorted(root.iterdir()):
        if entry.name in known or entry.name.startswith((".", "_")):
            continue
        guess = difflib.get_close_matches(entry.name, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean '{guess[0]}'?" if guess else ""
        kind = "folder" if entry.is_dir() else "file"
        notices.append(Notice(entry, f"unknown {kind} under the landing root: no source reads it (sources read "
                                     f"{', '.join(sorted(known))}){hint}"))
    return notices
