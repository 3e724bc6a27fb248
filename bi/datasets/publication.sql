-- Which run the dashboards show: one row.
select
    any_value(run_id) as run_id,
    any_value(published_at) as published_at,
    count(*)::integer as tables,
    sum(row_count)::bigint as table_rows
from serving.publication
