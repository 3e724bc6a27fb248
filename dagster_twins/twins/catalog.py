"""What a twin believes about a user, and the evidence in ``marts.fct_events`` behind each belief."""

from __future__ import annotations

from dataclasses import dataclass

from dagster_twins.twins.families import Family


@dataclass(frozen=True)
class Belief:
    name: str
    family: Family
    description: str
    dimension: str | None = None  # fct_events column whose values are the Dirichlet categories


BELIEFS: dict[str, Belief] = {b.name: b for b in (
    Belief("rec_click", "beta", "Responds to recommendations: probability a shown recommendation is clicked."),
    Belief("campaign_response", "beta", "Responds to campaigns: probability a campaign send leads to an email click."),
    Belief("activity_rate", "gamma", "User-initiated interactions per day."),
    Belief("purchase_rate", "gamma", "Purchases per day."),
    Belief("ticket_rate", "gamma", "Support tickets opened per day."),
    Belief("topic_interest", "dirichlet", "Share of the user's interest in each topic.", "topic"),
    Belief("channel_preference", "dirichlet", "Share of the user's activity on each channel.", "channel"),
    Belief("format_preference", "dirichlet", "Share of the user's content by format.", "content_format"),
    Belief("goal", "dirichlet", "What the user is trying to do, from intents in search and chat text.", "goal"),
)}


def evidence_sql(events_table: str, landing_filter: str) -> str:
    """One query for every belief's daily evidence (user_id, belief, category, stat_a, stat_b, day) from the
    interactions that landed in the window. Counts only, so folding late rows later stays exact."""
    base = f"select * from {events_table} where {landing_filter}"
    scalar = """
        select user_id, 'rec_click' as belief, '' as category,
               count(*) filter (where interaction_type = 'rec_clicked') as stat_a,
               count(*) filter (where interaction_type = 'rec_shown') as stat_b, activity_date as day
        from landed where interaction_type in ('rec_clicked', 'rec_shown') group by all
        union all
        select user_id, 'campaign_response', '',
               count(*) filter (where source = 'events' and channel = 'email' and interaction_type = 'click'),
               count(*) filter (where interaction_type = 'campaign_sent'), activity_date
        from landed where interaction_type in ('campaign_sent', 'click') group by all
        union all
        select user_id, 'activity_rate', '', count(*), 0, activity_date
        from landed where is_user_initiated group by all
        union all
        select user_id, 'purchase_rate', '', count(*), 0, activity_date
        from landed where spend > 0 or interaction_type = 'purchase' group by all
        union all
        select user_id, 'ticket_rate', '', count(*), 0, activity_date
        from landed where interaction_type = 'ticket_opened' group by all"""
    shares = " union all ".join(
        f"select user_id, '{b.name}', cast({b.dimension} as string), count(*), 0, activity_date from landed "
        f"where is_user_initiated and {b.dimension} is not null"
        + (" and source = 'events'" if b.dimension == "channel" else "")
        + " group by all"
        for b in BELIEFS.values() if b.family == "dirichlet"
    )
    return (f"with landed as ({base}) select * from ({scalar} union all {shares}) as evidence "
            "where stat_a > 0 or stat_b > 0")
