{#- Model-level checks over many columns at once: one test (and one query) instead of one per column. -#}
{% test columns_not_null(model, columns) %}
select *
from {{ model }}
where {% for c in columns %}{{ c }} is null{% if not loop.last %} or {% endif %}{% endfor %}
{% endtest %}

{% test columns_non_negative(model, columns) %}
select *
from {{ model }}
where {% for c in columns %}{{ c }} < 0{% if not loop.last %} or {% endif %}{% endfor %}
{% endtest %}
