"""The demo's vocabulary: topics, keywords and intent phrases, read from the dbt seeds so the demo speaks
the same taxonomy the models map text with (as a product team's content taxonomy would)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

EVENT_TYPES = ("view", "click", "search", "add_to_cart", "purchase", "share")
EVENT_TYPE_PROBS = (0.44, 0.2, 0.15, 0.08, 0.06, 0.07)
CHANNELS = ("web", "ios", "android", "email")
FORMATS = ("article", "video", "podcast")
TICKET_CATEGORIES = ("billing", "bug", "account", "how_to")
GOAL_PRIOR = {"learn": 0.3, "purchase": 0.25, "compare_options": 0.2, "get_support": 0.1, "upgrade_plan": 0.1,
              "cancel_or_refund": 0.05}


@dataclass(frozen=True)
class Vocabulary:
    topics: tuple[str, ...]
    keywords: dict[str, tuple[str, ...]]  # topic -> keywords
    goals: tuple[str, ...]
    phrases: dict[str, tuple[str, ...]]  # goal -> intent phrases
    goal_probs: tuple[float, ...]


def default_taxonomy_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "dbt" / "seeds"


def load_vocabulary(taxonomy_dir: Path | None = None) -> Vocabulary:
    folder = taxonomy_dir or default_taxonomy_dir()
    keywords: dict[str, list[str]] = {}
    with (folder / "topic_taxonomy.csv").open() as f:
        for row in csv.DictReader(f):
            keywords.setdefault(row["topic"], []).append(row["keyword"])
    phrases: dict[str, list[str]] = {}
    with (folder / "goal_intents.csv").open() as f:
        for row in csv.DictReader(f):
            phrases.setdefault(row["goal"], []).append(row["intent_phrase"])
    goals = tuple(phrases)
    weights = [GOAL_PRIOR.get(g, 0.05) for g in goals]
    total = sum(weights)
    return Vocabulary(
        topics=tuple(keywords),
        keywords={t: tuple(k) for t, k in keywords.items()},
        goals=goals,
        phrases={g: tuple(p) for g, p in phrases.items()},
        goal_probs=tuple(w / total for w in weights),
    )
