{#-
    The survival frame as of the backtest cutoff (backtest_horizon_days before the end of the window), with
    what happened next: a model fit on it and scored on users alive at the cutoff is judged against
    churned_within_horizon, which only the later data knows.
-#}
with at_cutoff as (
    {{ survival_frame_sql(ref('int_user_churn_status_at_cutoff')) }}
),

now as (
    select user_id, churned, end_at from {{ ref('int_user_churn_status') }}
)

select
    c.*,
    case
        when c.churned = 0 and n.churned = 1
            and n.end_at < {{ add_days('c.as_of', var('backtest_horizon_days')) }} then 1
        else 0
    end as churned_within_horizon,
    {{ days_between('c.as_of', 'coalesce(n.end_at, c.as_of)') }} as days_observed_after_cutoff,
    coalesce(n.churned, 0) as churned_by_now
from at_cutoff as c
left join now as n on c.user_id = n.user_id
