{{ config(materialized='table') }}
{#- A table, not a view: it reads the whole interaction stream, and a dozen tests would each recompute it. -#}
{#-
    The churn definition, one row per user as of the end of the window:
    - a user with subscription rows has churned when their latest action is `cancelled` (at that time);
    - a user without any has churned after `inactivity_days` with no user-initiated interaction
      (at their last interaction);
    - everyone else is censored at as_of.
-#}
{{ churn_status_sql(as_of_timestamp()) }}
