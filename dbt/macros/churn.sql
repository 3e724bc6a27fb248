{#- The churn definition as of a moment (the SQL of int_user_churn_status and its backtest twin). -#}
{% macro churn_status_sql(as_of_sql) %}
with as_of as (
    select {{ as_of_sql }} as as_of
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
{% endmacro %}

{#- The survival frame for a churn status relation: covariates over the window before each user's end. -#}
{% macro survival_frame_sql(status_relation) %}
{% set window_days = var('feature_window_days') %}
with status as (
    select * from {{ status_relation }}
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
        e.occurred_at >= {{ add_days('s.end_at', -window_days) }} as in_window,
        e.occurred_at < {{ add_days('s.end_at', -window_days) }}
            and e.occurred_at >= {{ add_days('s.end_at', -2 * window_days) }} as in_previous_window
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
        -- value is DECIMAL(18, 2): averaged as a double, so both engines agree (Spark averages a decimal to 6 places)
        avg(case when interaction_type = 'ticket_opened' then cast(value as double) end) as mean_satisfaction,
        sum(case when spend > 0 then 1 else 0 end) as purchases,
        sum(spend) as spend
    from history
    group by user_id
),

open_tickets as (
    -- tickets opened before the end and not closed by then: trouble the user still has
    select t.user_id, count(*) as open_tickets
    from {{ ref('stg_support_tickets') }} as t
    inner join status as s on t.user_id = s.user_id
    where t.opened_at < s.end_at and (t.closed_at is null or t.closed_at >= s.end_at)
    group by t.user_id
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
    least(greatest({{ days_between('s.start_at', 's.end_at') }}, 0), {{ window_days }}) as days_in_window,
    coalesce(c.events_in_window, 0) as events_in_window,
    coalesce(c.events_previous_window, 0) as events_previous_window,
    coalesce(c.active_days_in_window, 0) as active_days_in_window,
    {{ days_between('coalesce(c.last_active_at, s.start_at)', 's.end_at') }} as days_since_last_active,
    coalesce(c.recs_shown, 0) as recs_shown,
    coalesce(c.recs_clicked, 0) as recs_clicked,
    case when coalesce(c.recs_shown, 0) > 0 then {{ ratio('c.recs_clicked', 'c.recs_shown') }} end as rec_click_rate,
    coalesce(c.tickets_total, 0) as tickets_total,
    coalesce(c.tickets_in_window, 0) as tickets_in_window,
    coalesce(ot.open_tickets, 0) as open_tickets,
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
left join open_tickets as ot on s.user_id = ot.user_id
{% endmacro %}
