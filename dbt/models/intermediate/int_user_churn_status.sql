{#-
    The churn definition, one row per user as of the end of the window:
    - a user with subscription rows has churned when their latest action is `cancelled` (at that time);
    - a user without any has churned after `inactivity_days` with no user-initiated interaction
      (at their last interaction);
    - everyone else is censored at as_of.
-#}
with as_of as (
    select {{ as_of_timestamp() }} as as_of
),

activity as (
    select
        i.user_id,
        min(i.occurred_at) as first_seen_at,
        max(case when i.is_user_initiated then i.occurred_at end) as last_active_at
    from {{ ref('int_interactions') }} as i
    cross join as_of
    where i.occurred_at < as_of.as_of
    group by i.user_id
),

signups as (
    select user_id, min(signed_up_at) as signed_up_at
    from {{ ref('stg_users') }}
    group by user_id
),

ranked_subscriptions as (
    select
        s.user_id,
        s.action,
        s.occurred_at,
        row_number() over (partition by s.user_id order by s.occurred_at desc, s.action) as recency
    from {{ ref('stg_subscriptions') }} as s
    cross join as_of
    where s.occurred_at < as_of.as_of
),

latest_subscription as (
    select user_id, action, occurred_at
    from ranked_subscriptions
    where recency = 1
),

all_users as (
    select user_id from activity
    union
    select user_id from signups
),

observed as (
    select
        u.user_id,
        coalesce(su.signed_up_at, a.first_seen_at) as start_at,
        coalesce(a.last_active_at, su.signed_up_at, a.first_seen_at) as last_active_at,
        ls.action as latest_subscription_action,
        ls.occurred_at as latest_subscription_at,
        as_of.as_of
    from all_users as u
    cross join as_of
    left join signups as su on u.user_id = su.user_id
    left join activity as a on u.user_id = a.user_id
    left join latest_subscription as ls on u.user_id = ls.user_id
),

classified as (
    select
        *,
        case when latest_subscription_action is not null then 'cancellation' else 'inactivity' end as churn_definition,
        case
            when latest_subscription_action is not null then latest_subscription_action = 'cancelled'
            else {{ days_between('last_active_at', 'as_of') }} >= {{ var('inactivity_days') }}
        end as is_churned
    from observed
    where start_at < as_of
)

select
    user_id,
    start_at,
    case
        when not is_churned then as_of
        when churn_definition = 'cancellation' then latest_subscription_at
        else last_active_at
    end as end_at,
    case when is_churned then 1 else 0 end as churned,
    churn_definition,
    last_active_at,
    as_of
from classified
