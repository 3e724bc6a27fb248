-- The chosen model's back-test per question and horizon, beside one-variable baselines (recency, activity).
select
    question,
    horizon_days::integer as horizon_days,
    question || ' within ' || lpad(horizon_days::varchar, 2, '0') || ' days' as horizon,
    kind,
    events::integer as events,
    training_rows::integer as training_rows,
    observed_rate,
    mean_predicted,
    auc,
    auc_recency,
    auc_events_per_day,
    brier,
    calibration_error
from churn.churn_model_metrics
where kind is not null
