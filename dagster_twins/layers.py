"""The layers of the pipeline, in the order a run goes through them, and which layer an asset belongs to."""

from __future__ import annotations

from collections.abc import Sequence

LAYERS = ("ingestion", "transform", "twins", "churn", "simulation", "quality", "serving")
DBT_SCHEMAS = frozenset({"staging", "intermediate", "marts", "reference"})  # dbt builds these: the transform layer
_BY_SCHEMA = {"raw": "ingestion", "twins": "twins", "churn": "churn", "simulation": "simulation",
              "quality": "quality", "serving": "serving"}


def layer_of(asset_path: Sequence[str]) -> str:
    """The layer an asset belongs to, from the first part of its key (raw/..., twins/..., dbt's schemas: transform)."""
    return _BY_SCHEMA.get(asset_path[0], "transform")
