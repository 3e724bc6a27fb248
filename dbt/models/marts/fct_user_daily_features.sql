{#- Spark overwrites the activity-day partitions a run touched, recomputed whole (spark__touched_interactions_cte). -#}
{{
    incremental_config(
        unique_key=['user_id', 'activity_date'],
        partition_by='activity_date',
        contract={'enforced': true}
    )
}}
{#-
    One row per user per activity day. On incremental runs, exactly the (user, day) pairs touched by rows
    that landed in the window are re-aggregated from all of fct_events, so a late event updates its day.
-#}
with
{{ touched_interactions_cte(ref('fct_events')) }},

daily as (
    -- count(case when ... then 1 end), not sum(case ... then 1 else 0 end): BIGINT on both engines, as the contract
    -- says (DuckDB sums integers to HUGEINT, Spark to bigint)
    select
        user_id,
        activity_date,
        count(*) as interactions,
        count(case when is_user_initiated then 1 end) as user_initiated_interactions,
        count(case when source = 'events' then 1 end) as events,
        count(case when interaction_type = 'search' then 1 end) as searches,
        count(case when spend > 0 or (source = 'events' and interaction_type in (
            {%- for t in var('purchase_event_types') %}'{{ t }}'{% if not loop.last %}, {% endif %}{% endfor -%}
        )) then 1 end) as purchases,
        cast(sum(spend) as decimal(38, 2)) as spend,
        count(distinct topic) as distinct_topics,
        count(case when interaction_type = 'rec_shown' then 1 end) as recs_shown,
        count(case when interaction_type = 'rec_clicked' then 1 end) as recs_clicked,
        count(case when interaction_type = 'rec_dismissed' then 1 end) as recs_dismissed,
        count(case when interaction_type = 'ticket_opened' then 1 end) as tickets_opened,
        count(case when interaction_type = 'message' then 1 end) as chat_messages,
        count(case when interaction_type = 'campaign_sent' then 1 end) as campaign_sends,
        count(case when source = 'subscriptions' then 1 end) as subscription_actions,
        min(occurred_at) as first_interaction_at,
        max(occurred_at) as last_interaction_at
    from interactions
    group by user_id, activity_date
)

select * from daily
