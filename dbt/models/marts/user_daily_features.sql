{{
    config(
        materialized='incremental',
        unique_key=['user_id', 'activity_date'],
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns'
    )
}}
{#- On Spark (no delete, no merge on Parquet) a run overwrites the activity-day partitions it touched, recomputed
    whole (spark__touched_interactions_cte; README "Engines"). -#}
{%- if target.type == 'spark' %}{{ config(incremental_strategy='insert_overwrite', partition_by=['activity_date']) }}{% endif %}
{#-
    One row per user per activity day. On incremental runs, exactly the (user, day) pairs touched by rows
    that landed in the window are re-aggregated from all of fct_events, so a late event updates its day.
-#}
with
{{ touched_interactions_cte(ref('fct_events')) }},

daily as (
    select
        user_id,
        activity_date,
        count(*) as interactions,
        sum(case when is_user_initiated then 1 else 0 end) as user_initiated_interactions,
        sum(case when source = 'events' then 1 else 0 end) as events,
        sum(case when interaction_type = 'search' then 1 else 0 end) as searches,
        sum(case when spend > 0 or (source = 'events' and interaction_type in (
            {%- for t in var('purchase_event_types') %}'{{ t }}'{% if not loop.last %}, {% endif %}{% endfor -%}
        )) then 1 else 0 end) as purchases,
        sum(spend) as spend,
        count(distinct topic) as distinct_topics,
        sum(case when interaction_type = 'rec_shown' then 1 else 0 end) as recs_shown,
        sum(case when interaction_type = 'rec_clicked' then 1 else 0 end) as recs_clicked,
        sum(case when interaction_type = 'rec_dismissed' then 1 else 0 end) as recs_dismissed,
        sum(case when interaction_type = 'ticket_opened' then 1 else 0 end) as tickets_opened,
        sum(case when interaction_type = 'message' then 1 else 0 end) as chat_messages,
        sum(case when interaction_type = 'campaign_sent' then 1 else 0 end) as campaign_sends,
        sum(case when source = 'subscriptions' then 1 else 0 end) as subscription_actions,
        min(occurred_at) as first_interaction_at,
        max(occurred_at) as last_interaction_at
    from interactions
    group by user_id, activity_date
)

select * from daily
