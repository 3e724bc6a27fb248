{{ config(contract={'enforced': true}) }}
{#- One row per user seen anywhere: the users source plus users who only appear in interactions. -#}
with activity as (
    select
        user_id,
        min(occurred_at) as first_seen_at,
        max(case when is_user_initiated then occurred_at end) as last_active_at,
        max(occurred_at) as last_seen_at,
        count(*) as interactions,
        cast(sum(spend) as decimal(38, 2)) as lifetime_spend
    from {{ ref('fct_events') }}
    group by user_id
),

profiles as (
    select
        user_id,
        min(signed_up_at) as signed_up_at,
        max(plan) as signup_plan,
        max(country) as country,
        max(acquisition_channel) as acquisition_channel
    from {{ ref('stg_users') }}
    group by user_id
),

plans as (
    select
        user_id,
        plan,
        row_number() over (partition by user_id order by occurred_at desc) as recency
    from {{ ref('stg_subscriptions') }}
    where plan is not null
),

campaign_groups as (
    select
        user_id,
        campaign_group,
        row_number() over (partition by user_id order by sent_at desc) as recency
    from {{ ref('stg_campaigns') }}
    where campaign_group is not null
),

all_users as (
    select user_id from activity
    union
    select user_id from profiles
)

select
    u.user_id,
    p.user_id is not null as is_known_user,
    coalesce(p.signed_up_at, a.first_seen_at) as signed_up_at,
    coalesce(pl.plan, p.signup_plan) as plan,
    p.country,
    p.acquisition_channel,
    a.first_seen_at,
    a.last_active_at,
    a.last_seen_at,
    coalesce(a.interactions, 0) as interactions,
    cast(coalesce(a.lifetime_spend, 0) as decimal(38, 2)) as lifetime_spend,
    cg.campaign_group as latest_campaign_group
from all_users as u
left join profiles as p on u.user_id = p.user_id
left join activity as a on u.user_id = a.user_id
left join plans as pl on u.user_id = pl.user_id and pl.recency = 1
left join campaign_groups as cg on u.user_id = cg.user_id and cg.recency = 1
