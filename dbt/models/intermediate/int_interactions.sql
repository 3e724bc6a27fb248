{#- The unified interaction stream: one row per interaction from every source, keys prefixed by source. -#}
with events as (
    select
        {{ dbt.concat(["'events:'", 'event_id']) }} as interaction_id,
        user_id,
        occurred_at,
        'events' as source,
        event_type as interaction_type,
        true as is_user_initiated,
        topic,
        channel,
        content_format,
        item_id,
        value,
        text,
        landing_date
    from {{ ref('stg_events') }}
),

messages as (
    select
        {{ dbt.concat(["'conversations:'", 'message_id']) }} as interaction_id,
        user_id,
        sent_at as occurred_at,
        'conversations' as source,
        'message' as interaction_type,
        true as is_user_initiated,
        cast(null as {{ dbt.type_string() }}) as topic,
        'chat' as channel,
        cast(null as {{ dbt.type_string() }}) as content_format,
        cast(null as {{ dbt.type_string() }}) as item_id,
        cast(null as decimal(18, 2)) as value,
        text,
        landing_date
    from {{ ref('stg_conversations') }}
    where role = 'user'
),

recs_shown as (
    select
        {{ dbt.concat(["'recommendations:'", 'rec_id', "':shown'"]) }} as interaction_id,
        user_id,
        shown_at as occurred_at,
        'recommendations' as source,
        'rec_shown' as interaction_type,
        false as is_user_initiated,
        topic,
        cast(null as {{ dbt.type_string() }}) as channel,
        cast(null as {{ dbt.type_string() }}) as content_format,
        item_id,
        cast(null as decimal(18, 2)) as value,
        cast(null as {{ dbt.type_string() }}) as text,
        landing_date
    from {{ ref('stg_recommendations') }}
),

recs_answered as (
    select
        {{ dbt.concat(["'recommendations:'", 'rec_id', "':'", 'response']) }} as interaction_id,
        user_id,
        coalesce(responded_at, shown_at) as occurred_at,
        'recommendations' as source,
        {{ dbt.concat(["'rec_'", 'response']) }} as interaction_type,
        true as is_user_initiated,
        topic,
        cast(null as {{ dbt.type_string() }}) as channel,
        cast(null as {{ dbt.type_string() }}) as content_format,
        item_id,
        cast(null as decimal(18, 2)) as value,
        cast(null as {{ dbt.type_string() }}) as text,
        landing_date
    from {{ ref('stg_recommendations') }}
    where response in ('clicked', 'dismissed')
),

tickets as (
    select
        {{ dbt.concat(["'support_tickets:'", 'ticket_id']) }} as interaction_id,
        user_id,
        opened_at as occurred_at,
        'support_tickets' as source,
        'ticket_opened' as interaction_type,
        true as is_user_initiated,
        cast(null as {{ dbt.type_string() }}) as topic,
        'support' as channel,
        cast(null as {{ dbt.type_string() }}) as content_format,
        category as item_id,
        cast(satisfaction as decimal(18, 2)) as value,
        cast(null as {{ dbt.type_string() }}) as text,
        landing_date
    from {{ ref('stg_support_tickets') }}
),

subscriptions as (
    select
        {{ dbt.concat(["'subscriptions:'", 'subscription_event_id']) }} as interaction_id,
        user_id,
        occurred_at,
        'subscriptions' as source,
        {{ dbt.concat(["'subscription_'", 'action']) }} as interaction_type,
        -- renewals are automatic billing, not a sign of life
        action <> 'renewed' as is_user_initiated,
        cast(null as {{ dbt.type_string() }}) as topic,
        cast(null as {{ dbt.type_string() }}) as channel,
        cast(null as {{ dbt.type_string() }}) as content_format,
        plan as item_id,
        mrr as value,
        cast(null as {{ dbt.type_string() }}) as text,
        landing_date
    from {{ ref('stg_subscriptions') }}
),

campaign_sends as (
    select
        {{ dbt.concat(["'campaigns:'", 'send_id']) }} as interaction_id,
        user_id,
        sent_at as occurred_at,
        'campaigns' as source,
        'campaign_sent' as interaction_type,
        false as is_user_initiated,
        topic,
        'email' as channel,
        cast(null as {{ dbt.type_string() }}) as content_format,
        campaign_id as item_id,
        cast(null as decimal(18, 2)) as value,
        cast(null as {{ dbt.type_string() }}) as text,
        landing_date
    from {{ ref('stg_campaigns') }}
)

select * from events
union all
select * from messages
union all
select * from recs_shown
union all
select * from recs_answered
union all
select * from tickets
union all
select * from subscriptions
union all
select * from campaign_sends
