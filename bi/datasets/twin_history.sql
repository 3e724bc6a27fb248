-- Belief drift: every run appends to twins.user_twins_history the twins it summarized (users with evidence that day);
-- one row per user and snapshot.
select
    user_id,
    as_of::timestamp as as_of,
    coalesce(top_interest, '(none yet)') as top_interest,
    coalesce(primary_goal, '(none yet)') as primary_goal,
    coalesce(preferred_channel, '(none yet)') as preferred_channel,
    overall_confidence,
    interactions_per_week
from twins.user_twins_history
