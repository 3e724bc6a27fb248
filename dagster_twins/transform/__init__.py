"""Transformation: the dbt project (staging -> intermediate -> marts) as Dagster assets."""
