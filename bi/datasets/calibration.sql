-- Back-test calibration per question and horizon: mean predicted vs observed rate per decile of predicted risk.
-- is_headline marks churn at 30 days (the risk tiers' horizon), or churn's longest back-tested horizon without it.
select
    question,
    horizon_days::integer as horizon_days,
    question || ' within ' || lpad(horizon_days::varchar, 2, '0') || ' days' as horizon,
    decile::integer as decile,
    users::integer as users,
    predicted,
    observed,
    question = 'churn' and horizon_days = (
        select case when bool_or(horizon_days = 30) then 30 else max(horizon_days) end
        from churn.churn_calibration
        where question = 'churn'
    ) as is_headline
from churn.churn_calibration
