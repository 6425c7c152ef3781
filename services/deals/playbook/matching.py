"""Objection matching against the ops-editable playbook: pure functions, no database."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

OTHER = "other"

# Typographic apostrophes and quotes from phones and word processors must still match "don't".
_TYPOGRAPHY = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})


@dataclass(frozen=True)
class PlaybookCategory:
    category: str
    triggers: Sequence[str]
    answers: Sequence[str]


@dataclass(frozen=True)
class Match:
    category: str
    triggers: list[str]  # the category's triggers found in the text (empty for "other")


def normalize_text(text: str) -> str:
    return " ".join(text.translate(_TYPOGRAPHY).split())


@lru_cache(maxsize=1024)
def _trigger_pattern(trigger: str) -> re.Pattern[str]:
    # Lookarounds instead of \b: a trigger may begin or end with a non-word character ("$"),
    # where \b would demand a word character next to it. Any whitespace run matches a space.
    words = [re.escape(w) for w in normalize_text(trigger).split(" ")]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)


def matching_triggers(text: str, triggers: Iterable[str]) -> list[str]:
    clean = normalize_text(text)
    return [t for t in triggers if t.strip() and _trigger_pattern(t).search(clean)]


def match_objection(text: str, playbook: Iterable[PlaybookCategory]) -> Match:
    """The category with the most matching triggers; "other" when none matches.

    Ties go to the category whose matched triggers are longer in total (more specific phrases),
    then to the slug in alphabetical order, so the outcome never depends on row order.
    """
    candidates: list[tuple[int, int, str, list[str]]] = []
    for entry in playbook:
        if entry.category == OTHER:
            continue
        found = matching_triggers(text, entry.triggers)
        if found:
            candidates.append((-len(found), -sum(len(t) for t in found), entry.category, found))
    if not candidates:
        return Match(OTHER, [])
    _, _, category, found = min(candidates)  # slugs are unique: the lists are never compared
    return Match(category, found)


def answers_for(category: str, playbook: Iterable[PlaybookCategory]) -> list[str]:
    """Prepared answers of a category; an unknown category (or a missing "other") has none."""
    for entry in playbook:
        if entry.category == category:
            return list(entry.answers)
    return []


def clean_phrases(phrases: Iterable[str], *, collapse: bool = True) -> list[str]:
    """Trimmed, de-duplicated (case-insensitively), order kept; triggers also get their inner
    whitespace collapsed, answers keep their line breaks."""
    seen: set[str] = set()
    out: list[str] = []
    for phrase in phrases:
        clean = normalize_text(phrase) if collapse else phrase.strip()
        if clean and clean.lower() not in seen:
            seen.add(clean.lower())
            out.append(clean)
    return out
