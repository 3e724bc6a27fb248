{#-
    The best phrase of a seed found in each text: the longest match wins, ties by value. Renders a SELECT of
    (interaction_id, <value_column>, preference); keep the rows with preference = 1.
-#}
{% macro best_phrase_match(texts, seed, phrase_column, value_column) -%}
    select
        t.interaction_id,
        s.{{ value_column }},
        row_number() over (
            partition by t.interaction_id order by {{ dbt.length('s.' ~ phrase_column) }} desc, s.{{ value_column }}
        ) as preference
    from {{ texts }} as t
    inner join {{ ref(seed) }} as s
        on {{ dbt.position('s.' ~ phrase_column, 't.text') }} > 0
{%- endmacro %}
