"""What every layer's assets show in the Dagster UI, written one way: tables as Markdown with rounded numbers."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd


def md_table(frame: pd.DataFrame, floatfmt: str = ".3f", index: bool = False, empty: str = "(empty)"
             ) -> dg.MetadataValue:
    """A frame as a Markdown table (numbers rounded by ``floatfmt``), or ``empty`` when it has no rows."""
    return dg.MetadataValue.md(frame.to_markdown(index=index, floatfmt=floatfmt) if len(frame) else empty)


def md_image(path: Path | None, alt: str, missing: str = "(no plot)") -> dg.MetadataValue:
    """A PNG embedded in Markdown as a data URI, so the UI shows the plot itself (a path would only name a file
    on the machine that ran the step); ``missing`` when there is no plot."""
    if path is None or not Path(path).exists():
        return dg.MetadataValue.md(missing)
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{data})\n\n`{path}`")


def rounded(metadata: Mapping[str, Any], digits: int = 4) -> dict[str, Any]:
    """``metadata`` with every plain float rounded to ``digits`` significant places (0.7022376543209876 -> 0.7022)."""
    return {key: float(f"{value:.{digits}g}") if isinstance(value, float) else value
            for key, value in metadata.items()}
