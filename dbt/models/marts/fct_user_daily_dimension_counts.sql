{#- Spark overwrites the activity-day partitions a run touched, recomputed whole (spark__touched_interactions_cte). -#}
{{
    incremental_config(
        unique_key=['user_id', 'activity_date', 'dimension', 'dimension_value'],
        partition_by='activity_date',
        contract={'enforced': true}
    )
}}
{#-
    Per user and day, interaction counts by event type, topic, channel, content format and goal, in long
    form so the columns never depend on the data. Incremental exactly like fct_user_daily_features.
    One pass: each interaction is read once and fanned out to one row per dimension (a cross join with the
    dimensions' names), and one aggregate counts them all; it was a union of five aggregates, each reading the
    interactions again (21 s of a 98 s dbt build at 10,000 users x 180 days).
-#}
{% set dimensions = {'event_type': 'interaction_type', 'topic': 'topic', 'channel': 'channel',
                     'content_format': 'content_format', 'goal': 'goal'} %}
with
{{ touched_interactions_cte(ref('fct_events')) }},

dimensions as (
    {% for dimension in dimensions %}
    select '{{ dimension }}' as dimension
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

long_form as (
    select
        i.user_id,
        i.activity_date,
        d.dimension,
        case d.dimension
            {% for dimension, column in dimensions.items() %}
            when '{{ dimension }}' then i.{{ column }}
            {% endfor %}
        end as dimension_value
    from interactions as i
    cross join dimensions as d
)

select
    user_id,
    activity_date,
    dimension,
    dimension_value,
    count(*) as interactions
from long_form
where dimension_value is not null
group by user_id, activity_date, dimension, dimension_value
