{#-
    What differs between the engines the project runs on (DuckDB, the default, and Spark), one macro each,
    dispatched on the adapter. default__ is DuckDB's SQL, unchanged; spark__ is Spark SQL giving the same results
    (tests/test_spark_parity.py compares every mart between the two).
-#}

{#-
    On-run-start: declare the raw sources on Spark as tables over the Parquet lake the pipeline exports from
    DuckDB (dagster_twins/transform/lake.py): <TWINS_SPARK_DIR>/lake/raw/<table>/<landing day>_<n>.parquet.
    Columns and types come from the sources' YAML. Re-declared on every run (dropping an external table keeps its
    files), so a changed contract or a new day's file is always seen. Nothing to do on DuckDB: ingestion writes
    the raw schema itself.
-#}
{% macro register_raw_lake() -%}
    {{ return(adapter.dispatch('register_raw_lake')()) }}
{%- endmacro %}

{% macro default__register_raw_lake() -%}
{%- endmacro %}

{% macro spark__register_raw_lake() -%}
    {%- if execute -%}
        {%- set lake = env_var('TWINS_SPARK_DIR') ~ '/lake/raw' -%}
        {%- set sources = graph.sources.values() | selectattr('source_name', 'equalto', 'raw') | list -%}
        {%- for schema in sources | map(attribute='schema') | unique -%}
            {%- do run_query('create database if not exists ' ~ adapter.quote(schema)) -%}
        {%- endfor -%}
        {%- for node in sources -%}
            {%- set relation = adapter.quote(node.schema) ~ '.' ~ adapter.quote(node.identifier) -%}
            {%- if not node.columns -%}
                {{ exceptions.raise_compiler_error('source raw.' ~ node.name ~ ' lists no columns (_sources.yml)') }}
            {%- endif -%}
            {%- set columns = [] -%}
            {%- for column in node.columns.values() -%}
                {%- do columns.append(adapter.quote(column.name) ~ ' ' ~ column.data_type) -%}
            {%- endfor -%}
            {%- do run_query('drop table if exists ' ~ relation) -%}
            {%- do run_query('create table ' ~ relation ~ ' (' ~ columns | join(', ') ~ ') using parquet'
                             ~ " location '" ~ lake ~ '/' ~ node.identifier ~ "'") -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}

{#-
    The config of an incremental mart on the engine dbt runs on (the one place that says it; README "Engines"):
    - DuckDB: `delete+insert` on `unique_key`, which rewrites only the rows of the keys a run produces;
    - Spark: its Parquet tables have neither delete nor merge, so `insert_overwrite` of the `partition_by` partitions
      a run writes (dynamic partition overwrite): the model must write each partition it touches whole.
    Any other config (pre_hook, contract, ...) is passed through. Call it as the model's config:
    {{ incremental_config(unique_key='id', partition_by='landing_date', pre_hook='...') }}
-#}
{% macro incremental_config(unique_key, partition_by) -%}
    {%- set settings = {'materialized': 'incremental', 'unique_key': unique_key, 'on_schema_change': 'append_new_columns'} -%}
    {%- do settings.update(adapter.dispatch('incremental_strategy_config')(partition_by)) -%}
    {%- do settings.update(kwargs) -%}
    {%- do config(**settings) -%}
{%- endmacro %}

{% macro default__incremental_strategy_config(partition_by) -%}
    {{ return({'incremental_strategy': 'delete+insert'}) }}
{%- endmacro %}

{% macro spark__incremental_strategy_config(partition_by) -%}
    {{ return({'incremental_strategy': 'insert_overwrite', 'partition_by': [partition_by]}) }}
{%- endmacro %}

{#-
    fct_events' pre-hook on incremental runs: empty the window's landing days first, so a re-run leaves exactly what
    the re-landed files hold (a corrected file's dropped rows, or a whole day gone). Without a window, every day.
-#}
{% macro clear_landing_window(relation) -%}
    {{ return(adapter.dispatch('clear_landing_window')(relation)) }}
{%- endmacro %}

{% macro default__clear_landing_window(relation) -%}
    delete from {{ relation }} where {{ landing_window_filter('landing_date') }}
{%- endmacro %}

{#- Spark's Parquet tables have no delete: drop the window's landing-day partitions (insert_overwrite then
    rewrites those that have rows). Runs the statements itself and renders nothing. -#}
{% macro spark__clear_landing_window(relation) -%}
    {%- set min_date = window_bound('min_date') -%}
    {%- set max_date = window_bound('max_date') -%}
    {%- if min_date and max_date -%}
        {%- set first = modules.datetime.date.fromisoformat(min_date) -%}
        {%- set days = (modules.datetime.date.fromisoformat(max_date) - first).days -%}
        {%- for i in range(days) -%}
            {%- set day = first + modules.datetime.timedelta(days=i) -%}
            {%- do run_query('alter table ' ~ relation ~ " drop if exists partition (landing_date = date '"
                             ~ day.isoformat() ~ "')") -%}
        {%- endfor -%}
    {%- else -%}
        {%- do run_query('truncate table ' ~ relation) -%}
    {%- endif -%}
{%- endmacro %}

{#- A timestamp plus a number of days (negative: minus), to the microsecond. -#}
{% macro add_days(timestamp, days) -%}
    {{ return(adapter.dispatch('add_days')(timestamp, days)) }}
{%- endmacro %}

{% macro default__add_days(timestamp, days) -%}
    {{ dbt.dateadd('day', days, timestamp) }}
{%- endmacro %}

{#- dbt-spark's dateadd goes through unix seconds, dropping fractions of a second; timestampadd keeps them. -#}
{% macro spark__add_days(timestamp, days) -%}
    timestampadd(day, {{ days }}, {{ timestamp }})
{%- endmacro %}

{#- Days between two timestamps as a double, counted in whole seconds as DuckDB's datediff('second') does. -#}
{% macro days_between(start_ts, end_ts) -%}
    {{ return(adapter.dispatch('days_between')(start_ts, end_ts)) }}
{%- endmacro %}

{% macro default__days_between(start_ts, end_ts) -%}
    ({{ dbt.datediff(start_ts, end_ts, 'second') }} / 86400.0)
{%- endmacro %}

{#- Spark reads 86400.0 as a decimal and would return a decimal; unix_seconds truncates like DuckDB's datediff. -#}
{% macro spark__days_between(start_ts, end_ts) -%}
    (cast(unix_seconds({{ end_ts }}) - unix_seconds({{ start_ts }}) as double) / 86400)
{%- endmacro %}

{#- numerator / denominator as a double (the caller guards against a zero denominator). -#}
{% macro ratio(numerator, denominator) -%}
    {{ return(adapter.dispatch('ratio')(numerator, denominator)) }}
{%- endmacro %}

{% macro default__ratio(numerator, denominator) -%}
    1.0 * {{ numerator }} / {{ denominator }}
{%- endmacro %}

{#- On Spark 1.0 is a decimal literal, and 1.0 * n / d a decimal. -#}
{% macro spark__ratio(numerator, denominator) -%}
    cast({{ numerator }} as double) / {{ denominator }}
{%- endmacro %}
