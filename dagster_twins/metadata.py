"""What every layer's assets show in the Dagster UI, written one way: tables as Markdown with rounded numbers."""

from __future__ import annotations

import dagster as dg
import pandas as pd


def md_table(frame: pd.DataFrame, floatfmt: str = ".3f", index: bool = False, empty: str = "(empty)"
             ) -> dg.MetadataValue:
    """A frame as a Markdown table (numbers rounded by ``floatfmt``), or ``empty`` when it has no rows."""
    return dg.MetadataValue.md(frame.to_markdown(index=index, floatfmt=floatfmt) if len(frame) else empty)
