{#- Spark overwrites the landing-day partitions a run rebuilt (the pre_hook drops the window's first), which
    replaces the same rows: an interaction_id lands on one day only (macros/engines.sql). -#}
{{
    incremental_config(
        unique_key='interaction_id',
        partition_by='landing_date',
        pre_hook="{% if is_incremental() %}{{ clear_landing_window(this) }}{% endif %}",
        contract={'enforced': true}
    )
}}
{#-
    Every interaction, one row each, with topic and goal resolved. Free text is read here (topics and goals) but not
    stored: nothing downstream reads it, and it was the widest column of the largest table (it stays in
    intermediate.int_interactions and the staging views). Processes the rows that landed in the
    Dagster partition window, so late events are folded in whenever they land. A re-run replaces every row of
    the window's landing days first (pre_hook), so a corrected file's dropped or changed rows leave the mart as
    they left raw.
-#}
with landed as (
    select *
    from {{ ref('int_interactions') }}
    where {{ landing_window_filter('landing_date') }}
),

texts as (
    select
        interaction_id,
        lower(text) as text
    from landed
    -- Topics and goals from text need a taxonomy: off (no text matched) when var text_taxonomy is false.
    where text is not null and {{ 'true' if var('text_taxonomy') else 'false' }}
),

topic_matches as (
    {{ best_phrase_match('texts', 'topic_taxonomy', 'keyword', 'topic') }}
),

goal_matches as (
    {{ best_phrase_match('texts', 'goal_intents', 'intent_phrase', 'goal') }}
)

select
    l.interaction_id,
    l.user_id,
    l.occurred_at,
    cast(l.occurred_at as date) as activity_date,
    l.source,
    l.interaction_type,
    l.is_user_initiated,
    coalesce(l.topic, tm.topic) as topic,
    case when l.topic is null and tm.topic is not null then 'text' when l.topic is not null then 'source' end
        as topic_origin,
    gm.goal,
    l.channel,
    l.content_format,
    l.item_id,
    l.value,
    cast(case
        when l.source = 'events' and l.interaction_type in (
            {%- for t in var('purchase_event_types') %}'{{ t }}'{% if not loop.last %}, {% endif %}{% endfor -%}
        ) then coalesce(l.value, 0)
        else 0
    end as decimal(18, 2)) as spend,
    l.landing_date
from landed as l
left join topic_matches as tm on l.interaction_id = tm.interaction_id and tm.preference = 1
left join goal_matches as gm on l.interaction_id = gm.interaction_id and gm.preference = 1
