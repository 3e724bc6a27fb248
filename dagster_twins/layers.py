"""The layers of the pipeline, in the order a run goes through them, and which layer an asset belongs to."""

from __future__ import annotations

from collections.abc import Sequence

LAYERS = ("ingestion", "transform", "twins", "churn", "simulation", "quality", "serving")
# Who answers for each layer's assets (Dagster owners: "team:<name>" or an e-mail); a deployment edits these.
LAYER_OWNERS = {"ingestion": ("team:data-platform",), "transform": ("team:analytics-engineering",),
                "twins": ("team:data-science",), "churn": ("team:data-science",), "simulation": ("team:data-science",),
                "quality": ("team:data-platform",), "serving": ("team:data-platform",)}
DBT_SCHEMAS = frozenset({"staging", "intermediate", "marts", "reference"})  # dbt builds these: the transform layer
_BY_SCHEMA = {"raw": "ingestion", "twins": "twins", "churn": "churn", "simulation": "simulation",
              "quality": "quality", "serving": "serving"}


def layer_of(asset_path: Sequence[str]) -> str:
    """The layer an asset belongs to, from the first part of its key (raw/..., twins/..., dbt's schemas: transform)."""
    return _BY_SCHEMA.get(asset_path[0], "transform")
