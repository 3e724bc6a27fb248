-- The risk tiers, every one listed even when no user is in it, in order, with its definition and its users.
-- The thresholds are dagster_twins/churn/pipeline.py's TIERS on P(churn within 30 days).
with tiers (tier_order, risk_tier, definition) as (
    values
        (1, 'low', 'active; P(churn within 30 days) below 5%'),
        (2, 'medium', 'active; P(churn within 30 days) 5% to 15%'),
        (3, 'high', 'active; P(churn within 30 days) 15% to 35%'),
        (4, 'very high', 'active; P(churn within 30 days) 35% or more'),
        (5, 'lapsed', 'already churned: scored for a return instead')
)
select
    t.tier_order,
    t.tier_order || '. ' || t.risk_tier as tier,
    t.risk_tier,
    t.definition,
    count(p.user_id)::integer as users
from tiers as t
left join churn.churn_predictions as p on p.risk_tier = t.risk_tier
group by all
