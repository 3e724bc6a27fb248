{#- The Dagster partition window (landing dates in [min_date, max_date)) as a predicate; 1 = 1 when unset. -#}
{% macro landing_window_filter(column) -%}
    {%- set min_date = var('min_date', none) -%}
    {%- set max_date = var('max_date', none) -%}
    {%- if min_date and max_date -%}
        {{ column }} >= cast('{{ min_date }}' as date) and {{ column }} < cast('{{ max_date }}' as date)
    {%- else -%}
        1 = 1
    {%- endif -%}
{%- endmacro %}

{#- The moment the data is observed at: the end of the partition window, else the latest interaction. -#}
{% macro as_of_timestamp() -%}
    {%- set max_date = var('max_date', none) -%}
    {%- if max_date -%}
        cast('{{ max_date }}' as {{ dbt.type_timestamp() }})
    {%- else -%}
        (select max(occurred_at) from {{ ref('int_interactions') }})
    {%- endif -%}
{%- endmacro %}

{#-
    The interactions a daily model must re-aggregate: on incremental runs every interaction of each
    (user, activity day) that a row landed in the window touches, so a late event updates its whole day;
    on a first build, all of them. Renders the CTE `interactions`.
-#}
{% macro touched_interactions_cte(events_relation) -%}
    {{ return(adapter.dispatch('touched_interactions_cte')(events_relation)) }}
{%- endmacro %}

{% macro default__touched_interactions_cte(events_relation) -%}
{% if is_incremental() %}
touched as (
    select distinct user_id, activity_date
    from {{ events_relation }}
    where {{ landing_window_filter('landing_date') }}
),

interactions as (
    select e.*
    from {{ events_relation }} as e
    inner join touched as t on e.user_id = t.user_id and e.activity_date = t.activity_date
)
{% else %}
interactions as (
    select * from {{ events_relation }}
)
{% endif %}
{%- endmacro %}

{#-
    On Spark the daily models overwrite whole activity-day partitions (insert_overwrite): every interaction of
    each activity day a row landed in the window touches, all users of that day, so the partitions written are
    complete. The (user, day) rows come out the same as DuckDB's; more of them are recomputed.
-#}
{% macro spark__touched_interactions_cte(events_relation) -%}
{% if is_incremental() %}
touched as (
    select distinct activity_date
    from {{ events_relation }}
    where {{ landing_window_filter('landing_date') }}
),

interactions as (
    select e.*
    from {{ events_relation }} as e
    inner join touched as t on e.activity_date = t.activity_date
)
{% else %}
interactions as (
    select * from {{ events_relation }}
)
{% endif %}
{%- endmacro %}
