{#- Deprecated: user_daily_dimension_counts was renamed fct_user_daily_dimension_counts.
    This view keeps BI queries on the old name working until 2027-03-01 (legacy/_legacy.yml). -#}
-- select *: every column the mart has, whatever it will have
-- noqa: disable=AM04
select * from {{ ref('fct_user_daily_dimension_counts') }}
