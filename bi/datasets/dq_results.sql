-- Every data-quality check of every run: the verdict per run and the trend over runs.
select
    run_id,
    checked_at::timestamp as checked_at,
    layer,
    asset,
    check_name,
    severity,
    passed,
    case when passed then 0 else 1 end as failed,
    run_id = last_value(run_id) over (
        order by checked_at rows between unbounded preceding and unbounded following
    ) as is_last_run,
    observed
from quality.dq_results
