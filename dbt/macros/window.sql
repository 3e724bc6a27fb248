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

{#- Days between two timestamps as a fraction, portable across adapters. -#}
{% macro days_between(start_ts, end_ts) -%}
    ({{ dbt.datediff(start_ts, end_ts, 'second') }} / 86400.0)
{%- endmacro %}
