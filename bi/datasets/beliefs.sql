-- Every belief of every twin with its 90% interval and the sentence that explains it (the user page).
select
    user_id,
    belief,
    nullif(category, '') as category,
    belief || coalesce(': ' || nullif(category, ''), '') as belief_label,
    family,
    mean,
    lower_90,
    upper_90,
    confidence,
    raw_evidence::bigint as raw_events,
    evidence_weighted,
    last_evidence_day::timestamp as last_evidence_day,
    why
from twins.belief_explanations
