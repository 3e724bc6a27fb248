-- One row per user: the twin's headline beliefs beside the churn layer's tier (overview and user pages).
select
    t.user_id,
    coalesce(t.top_interest, '(none yet)') as top_interest,
    t.top_interests,
    coalesce(t.primary_goal, '(none yet)') as primary_goal,
    coalesce(t.preferred_channel, '(none yet)') as preferred_channel,
    coalesce(t.preferred_format, '(none yet)') as preferred_format,
    t.overall_confidence,
    case
        when t.overall_confidence >= 0.8 then 'high'
        when t.overall_confidence >= 0.5 then 'medium'
        else 'low'
    end as confidence_band,
    t.rec_click_propensity,
    t.campaign_response_propensity,
    t.interactions_per_week,
    t.purchases_per_week,
    t.tickets_per_30_days,
    t.last_evidence_day::timestamp as last_evidence_day,
    t.last_updated::timestamp as last_updated,
    p.risk_tier,
    p.state
from twins.user_twins as t
left join churn.churn_predictions as p using (user_id)
