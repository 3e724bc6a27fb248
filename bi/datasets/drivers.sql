-- One row per active user and driver among their three strongest, in plain words, with the way it pushes.
with split as (
    select
        p.user_id,
        p.risk_tier,
        trim(unnest(string_split(p.top_drivers, ';'))) as driver_text
    from churn.churn_predictions as p
    where p.question = 'churn' and p.top_drivers <> ''
)
select
    user_id,
    risk_tier,
    regexp_replace(driver_text, ' \((raises|lowers) churn risk\)$', '') as driver,
    case
        when driver_text like '%(raises churn risk)' then 'raises churn risk'
        when driver_text like '%(lowers churn risk)' then 'lowers churn risk'
        else 'no direction'
    end as effect
from split
