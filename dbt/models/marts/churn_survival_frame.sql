{#-
    One row per user for survival models: start, end (churn or censoring), the churn flag and covariates
    measured over the feature window before the end, so a churner's covariates come from before churning.
-#}
{% set window_days = var('feature_window_days') %}
with status as (
    select * from {{ ref('int_user_churn_status') }}
),

randomized_campaigns as (
    -- campaigns with a randomized holdout: both groups present
    select campaign_id
    from {{ ref('stg_campaigns') }}
    group by campaign_id
    having count(distinct campaign_group) = 2
),

campaign_exposure as (
    select
        c.user_id,
        max(case when c.campaign_group = 'treatment' then 1 else 0 end) as campaign_treated,
        max(case when c.campaign_group = 'control' then 1 else 0 end) as campaign_control,
        min(c.sent_at) as first_campaign_at
    from {{ ref('stg_campaigns') }} as c
    inner join randomized_campaigns as r on c.campaign_id = r.campaign_id
    inner join status as s on c.user_id = s.user_id and c.sent_at < s.end_at
    group by c.user_id
),

history as (
    select
        e.user_id,
        e.occurred_at,
        e.activity_date,
        e.interaction_type,
        e.source,
        e.is_user_initiated,
        e.value,
        e.spend,
        s.end_at,
        e.occurred_at >= {{ dbt.dateadd('day', -window_days, 's.end_at') }} as in_window,
        e.occurred_at < {{ dbt.dateadd('day', -window_days, 's.end_at') }}
            and e.occurred_at >= {{ dbt.dateadd('day', -2 * window_days, 's.end_at') }} as in_previous_window
    from {{ ref('fct_events') }} as e
    inner join status as s on e.user_id = s.user_id and e.occurred_at < s.end_at
),

covariates as (
    select
        user_id,
        sum(case when in_window and source = 'events' then 1 else 0 end) as events_in_window,
        sum(case when in_previous_window and source = 'events' then 1 else 0 end) as events_previous_window,
        count(distinct case when in_window and is_user_initiated then activity_date end) as active_days_in_window,
        max(case when is_user_initiated then occurred_at end) as last_active_at,
        sum(case when interaction_type = 'rec_shown' then 1 else 0 end) as recs_shown,
        sum(case when interaction_type = 'rec_clicked' then 1 else 0 end) as recs_clicked,
        sum(case when interaction_type = 'ticket_opened' then 1 else 0 end) as tickets_total,
        sum(case when interaction_type = 'ticket_opened' and in_window then 1 else 0 end) as tickets_in_window,
        avg(case when interaction_type = 'ticket_opened' then value end) as mean_satisfaction,
        sum(case when spend > 0 then 1 else 0 end) as purchases,
        sum(spend) as spend
    from history
    group by user_id
),

plans as (
    select user_id, plan, acquisition_channel
    from {{ ref('dim_users') }}
)

select
    s.user_id,
    s.start_at,
    s.end_at,
    greatest({{ days_between('s.start_at', 's.end_at') }}, 0) as duration_days,
    s.churned,
    s.churn_definition,
    s.as_of,
    coalesce(c.events_in_window, 0) as events_in_window,
    coalesce(c.events_previous_window, 0) as events_previous_window,
    coalesce(c.active_days_in_window, 0) as active_days_in_window,
    {{ days_between('coalesce(c.last_active_at, s.start_at)', 's.end_at') }} as days_since_last_active,
    coalesce(c.recs_shown, 0) as recs_shown,
    coalesce(c.recs_clicked, 0) as recs_clicked,
    case when coalesce(c.recs_shown, 0) > 0 then 1.0 * c.recs_clicked / c.recs_shown end as rec_click_rate,
    coalesce(c.tickets_total, 0) as tickets_total,
    coalesce(c.tickets_in_window, 0) as tickets_in_window,
    c.mean_satisfaction,
    coalesce(c.purchases, 0) as purchases,
    coalesce(c.spend, 0) as spend,
    p.plan,
    p.acquisition_channel,
    coalesce(ce.campaign_treated, 0) as campaign_treated,
    coalesce(ce.campaign_control, 0) as campaign_control
from status as s
left join covariates as c on s.user_id = c.user_id
left join plans as p on s.user_id = p.user_id
left join campaign_exposure as ce on s.user_id = ce.user_id
