-- Each user's prediction in every run (one row per user and as_of day).
select
    user_id,
    as_of::timestamp as as_of,
    state,
    risk_tier,
    p_churn_30d,
    p_churn_30d_lower_90,
    p_churn_30d_upper_90,
    p_return_30d
from churn.churn_predictions_history
