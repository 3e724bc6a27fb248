{#-
    For sqlfluff only (.sqlfluff loads this folder after dbt/macros, so these win): what dbt gives the models
    that sqlfluff's jinja templater does not. sqlfluff has no adapter.dispatch, so each project macro that
    dispatches renders its DuckDB implementation (default__) here; add one line for every new dispatched macro a
    model calls. var() gives the defaults of dbt_project.yml's vars, without a partition window.
-#}
{% macro var(name, default=none) -%}
    {%- set defaults = {'inactivity_days': 30, 'purchase_event_types': ['purchase'], 'feature_window_days': 28,
                        'pre_send_days': 56} -%}
    {{ return(defaults.get(name, default)) }}
{%- endmacro %}

{% macro incremental_config() %}{% do kwargs %}{% endmacro %}

{% macro add_days(timestamp, days) %}{{ default__add_days(timestamp, days) }}{% endmacro %}

{% macro days_between(start_ts, end_ts) %}{{ default__days_between(start_ts, end_ts) }}{% endmacro %}

{% macro ratio(numerator, denominator) %}{{ default__ratio(numerator, denominator) }}{% endmacro %}

{% macro touched_interactions_cte(events_relation) %}{{ default__touched_interactions_cte(events_relation) }}{% endmacro %}
