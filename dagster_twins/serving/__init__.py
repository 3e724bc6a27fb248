"""BI serving: a read-only copy of the warehouse, published atomically at the end of each run, so BI tools never
hold the pipeline's write lock and never see a half-written run (plain functions in publish.py; assets.py: Dagster)."""
