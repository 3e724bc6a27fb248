-- One row per user: churn (active users) or return (lapsed users) probabilities with 90% intervals, the risk tier
-- and the three strongest drivers in plain words.
select
    user_id,
    state,
    question,
    risk_tier,
    tenure_days::integer as tenure_days,
    days_since_last_active::integer as days_since_last_active,
    p_churn_7d,
    p_churn_14d,
    p_churn_30d,
    p_churn_30d_lower_90,
    p_churn_30d_upper_90,
    p_churn_90d,
    p_return_7d,
    p_return_14d,
    p_return_30d,
    p_return_30d_lower_90,
    p_return_30d_upper_90,
    p_return_90d,
    top_drivers,
    model,
    as_of::timestamp as as_of
from churn.churn_predictions
