-- Back-test calibration per question and horizon: mean predicted vs observed rate per decile of predicted risk.
select
    question,
    horizon_days::integer as horizon_days,
    question || ' within ' || lpad(horizon_days::varchar, 2, '0') || ' days' as horizon,
    decile::integer as decile,
    users::integer as users,
    predicted,
    observed
from churn.churn_calibration
