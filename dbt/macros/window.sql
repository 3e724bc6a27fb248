{#- A bound of the Dagster partition window (landing dates in [min_date, max_date)), 'YYYY-MM-DD' or none: the var
    (dbt run by hand, unit tests), else TWINS_DBT_MIN_DATE / TWINS_DBT_MAX_DATE, how Dagster passes a run's window.
    The environment is read only when executing: a new window every day then leaves dbt's partial parsing valid
    (vars, and environment variables read while parsing, are part of what a parse depends on). -#}
{% macro window_bound(name) -%}
    {%- set value = var(name, none) -%}
    {%- if value is none and execute -%}
        {%- set value = env_var('TWINS_DBT_' ~ (name | upper), '') or none -%}
    {%- endif -%}
    {{- return(value) -}}
{%- endmacro %}

{#- The Dagster partition window (landing dates in [min_date, max_date)) as a predicate; 1 = 1 when unset. -#}
{% macro landing_window_filter(column) -%}
    {%- set min_date = window_bound('min_date') -%}
    {%- set max_date = window_bound('max_date') -%}
    {%- if min_date and max_date -%}
        {{ column }} >= cast('{{ min_date }}' as date) and {{ column }} < cast('{{ max_date }}' as date)
    {%- else -%}
        1 = 1
    {%- endif -%}
{%- endmacro %}

{#- The moment the data is observed at: the end of the partition window, else the latest interaction. -#}
{% macro as_of_timestamp() -%}
    {%- set max_date = window_bound('max_date') -%}
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

{#-
    The rows of an incremental mart a run wrote, for its key tests' `where` config, so that a daily run's uniqueness
    tests read the window's rows instead of the whole table (at 10,000 users x 180 days the whole-table test of the
    dimension counts took 1.7 s of a one-day run, 0.2 s scoped; docs/benchmarks.md). dbt renders a test's `where` without the project's macros, so the YAML names one of
    two placeholders, replaced here when the test runs (dbt's documented `get_where_subquery` override):
    - `__landing_days_written__`: the window's landing days (`landing_date`; fct_events);
    - `__activity_days_written__`: every activity day an interaction landed in the window touches (`activity_date`;
      the daily marts, which re-aggregate those days).
    Without a window (a run over everything) or with --full-refresh, either is every row: the full check is one
    `dbt build --full-refresh`, or a materialization without partition, away.
-#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- set where = where | replace('__landing_days_written__', written_rows('landing_date'))
                              | replace('__activity_days_written__', written_rows('activity_date')) -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}

{% macro written_rows(date_column) -%}
    {%- if flags.FULL_REFRESH or not (window_bound('min_date') and window_bound('max_date')) -%}
        1 = 1
    {%- elif date_column == 'landing_date' -%}
        {{ landing_window_filter('landing_date') }}
    {%- else -%}
        {#- fct_events through the graph: a test may only ref() the models it depends on. -#}
        {%- set events = graph.nodes.values() | selectattr('resource_type', 'equalto', 'model')
                                              | selectattr('name', 'equalto', 'fct_events') | first -%}
        {{ date_column }} in (select distinct activity_date from {{ events.relation_name }}
            where {{ landing_window_filter('landing_date') }})
    {%- endif -%}
{%- endmacro %}
