{#-
    One row per user and randomized campaign: the group the user was randomized to, and the user's churn
    follow-up from the send. A campaign counts as randomized when both a treatment and a control group were
    sent to. Survival models with the treatment indicator estimate the campaign's effect on churn from it.
-#}
{% set window_days = var('pre_send_days') %}

with randomized_campaigns as (
    select campaign_id
    from {{ ref('stg_campaigns') }}
    where campaign_group in ('treatment', 'control')
    group by campaign_id
    having count(distinct campaign_group) = 2
),

assignments as (
    select
        c.campaign_id,
        c.user_id,
        min(c.sent_at) as sent_at,
        min(c.campaign_group) as campaign_group,
        count(distinct c.campaign_group) as groups_seen
    from {{ ref('stg_campaigns') }} as c
    inner join randomized_campaigns as r on c.campaign_id = r.campaign_id
    where c.campaign_group in ('treatment', 'control')
    group by c.campaign_id, c.user_id
),

before_send as (
    -- engagement over the days before the send: a pre-treatment covariate, so adjusting for it
    -- sharpens the estimate without biasing it
    select
        a.campaign_id,
        a.user_id,
        sum(case when e.source = 'events' then 1 else 0 end) as events_before_send,
        count(distinct case when e.is_user_initiated then e.activity_date end) as active_days_before_send
    from assignments as a
    inner join {{ ref('fct_events') }} as e
        on a.user_id = e.user_id
        and e.occurred_at < a.sent_at
        and e.occurred_at >= {{ add_days('a.sent_at', -window_days) }}
    group by a.campaign_id, a.user_id
)

select
    a.campaign_id,
    a.user_id,
    a.campaign_group,
    case when a.campaign_group = 'treatment' then 1 else 0 end as treated,
    a.sent_at,
    s.as_of,
    a.groups_seen > 1 as in_both_groups,
    s.end_at <= a.sent_at as churned_before_send,
    greatest({{ days_between('a.sent_at', 's.end_at') }}, 0) as days_followed,
    case when s.churned = 1 and s.end_at > a.sent_at then 1 else 0 end as churned,
    least(greatest({{ days_between('s.start_at', 'a.sent_at') }}, 0), {{ window_days }}) as days_before_send_observed,
    coalesce(b.events_before_send, 0) as events_before_send,
    coalesce(b.active_days_before_send, 0) as active_days_before_send
from assignments as a
inner join {{ ref('int_user_churn_status') }} as s on a.user_id = s.user_id
left join before_send as b on a.campaign_id = b.campaign_id and a.user_id = b.user_id
