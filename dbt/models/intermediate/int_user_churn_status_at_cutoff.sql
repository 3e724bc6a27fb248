{{ config(materialized='table') }}
{#- The churn definition as of the backtest cutoff: backtest_horizon_days before the end of the window. -#}
{{ churn_status_sql(add_days(as_of_timestamp(), -var('backtest_horizon_days'))) }}
