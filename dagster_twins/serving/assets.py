"""The serving asset: publish the read-only copy BI tools read, after every other asset of the run, and check it."""

import dagster as dg
import pandas as pd

from dagster_twins.metadata import md_table
from dagster_twins.serving.publish import MANIFEST, publish_serving_copy, verify_serving_copy
from dagster_twins.warehouse.resources import WarehouseResource

GROUP = "serving"
SERVING_KEY = dg.AssetKey(["serving", "published_warehouse"])
CHECK_NAME = "opens_read_only_and_matches_manifest"


def build_serving_asset(upstream: list[dg.AssetKey]) -> dg.AssetsDefinition:
    """The asset that publishes the serving copy; it depends on ``upstream`` (the data-quality report, which comes
    after every other asset), so it runs last."""

    @dg.asset(
        key=SERVING_KEY, group_name=GROUP, kinds={"duckdb"}, deps=list(upstream),
        description="A read-only copy of the whole warehouse for BI tools and SQL clients (TWINS_SERVING_PATH, "
                    f"default data/serving/warehouse.duckdb), replaced atomically at the end of each run, with a "
                    f"manifest {MANIFEST} (run, time, each table's row count). Readers never block the pipeline "
                    "and see the last run whole.",
        check_specs=[dg.AssetCheckSpec(
            CHECK_NAME, asset=SERVING_KEY,
            description="The published copy opens read-only, every table's row count equals its manifest's, every "
                        "table is listed, and every view binds.")],
    )
    def published_warehouse(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        published = publish_serving_copy(warehouse.path, warehouse.serving_file, context.run.run_id)
        tables = pd.DataFrame(published["tables"])
        context.log.info(f"published {published['path']} ({published['bytes']:,} bytes, {len(tables)} tables) "
                         f"in {published['seconds']} s")
        if published["removed_leftovers"]:
            context.log.warning(f"removed what unfinished publications left: {published['removed_leftovers']}")
        metadata = {
            "path": dg.MetadataValue.path(published["path"]),
            "bytes": published["bytes"],
            "seconds": published["seconds"],
            "published_at": published["published_at"],
            "table_count": len(tables),
            "view_count": published["views"],
            "tables": md_table(tables),
        }
        if published["broken_views"]:
            metadata["broken_views"] = dg.MetadataValue.json(published["broken_views"])
        yield dg.MaterializeResult(metadata=metadata)

        verified = verify_serving_copy(published["path"])
        check_metadata = {"run_id": str(verified["run_id"]), "tables_checked": verified["tables"]}
        for field in ("mismatched", "missing", "unlisted", "broken_views", "error"):
            if verified[field]:
                check_metadata[field] = dg.MetadataValue.json(verified[field])
        yield dg.AssetCheckResult(check_name=CHECK_NAME,
                                  passed=bool(verified["ok"] and verified["run_id"] == context.run.run_id),
                                  metadata=check_metadata)

    return published_warehouse
