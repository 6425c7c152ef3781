"""Matching objection text to playbook categories by trigger phrases."""

import pytest

from services.deals.playbook.matching import (
    OTHER,
    PlaybookCategory,
    answers_for,
    clean_phrases,
    match_objection,
    matching_triggers,
)

PLAYBOOK = [
    PlaybookCategory("price", ["price", "too expensive", "cost", "afford"], ["value pitch"]),
    PlaybookCategory("timing", ["not now", "next quarter", "busy"], ["timing pitch"]),
    PlaybookCategory("need", ["don't need", "happy with"], ["need pitch"]),
    PlaybookCategory("competitor", ["current vendor", "already use"], ["compare"]),
]


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("Honestly, it's TOO EXPENSIVE for us.", "price"),
        ("We can't afford it this year", "price"),
        ("Not now, maybe next quarter", "timing"),
        ("We don\u2019t need this", "need"),  # a phone's typographic apostrophe
        ("we\ndon't   need\tthis", "need"),  # any whitespace between a trigger's words
        ("what's the price?", "price"),
    ],
)
def test_matches_by_trigger_case_insensitively(text: str, category: str) -> None:
    assert match_objection(text, PLAYBOOK).category == category


@pytest.mark.parametrize(
    "text", ["This is priceless", "a costly mistake", "businesses like ours", "", "nothing here"]
)
def test_triggers_match_whole_words_only(text: str) -> None:
    match = match_objection(text, PLAYBOOK)
    assert match.category == OTHER
    assert match.triggers == []


def test_most_matching_triggers_wins() -> None:
    text = "We're busy, and the price and cost are too high"
    match = match_objection(text, PLAYBOOK)
    assert match.category == "price"
    assert match.triggers == ["price", "cost"]


def test_tie_goes_to_the_longer_phrase_then_the_slug() -> None:
    # one trigger each: "current vendor" is more specific than "happy with"
    assert match_objection("happy with our current vendor", PLAYBOOK).category == "competitor"
    twins = [
        PlaybookCategory("zeta", ["abc"], []),
        PlaybookCategory("alpha", ["xyz"], []),
    ]
    assert match_objection("abc xyz", twins).category == "alpha"
    assert match_objection("abc xyz", list(reversed(twins))).category == "alpha"


def test_other_is_never_matched_by_triggers() -> None:
    playbook = [*PLAYBOOK, PlaybookCategory(OTHER, ["price"], ["generic"])]
    assert match_objection("the price", playbook).category == "price"


def test_special_characters_in_triggers_are_literal() -> None:
    assert matching_triggers("that's $$$ for us", ["$$$"]) == ["$$$"]
    assert matching_triggers("we run c++ and go", ["c++", "go", "ru"]) == ["c++", "go"]
    assert matching_triggers("a.b", ["a b", "a.b"]) == ["a.b"]


def test_answers_come_from_the_playbook() -> None:
    assert answers_for("price", PLAYBOOK) == ["value pitch"]
    assert answers_for(OTHER, PLAYBOOK) == []
    assert answers_for(OTHER, [PlaybookCategory(OTHER, [], ["generic"])]) == ["generic"]


def test_clean_phrases() -> None:
    assert clean_phrases(["  too   expensive ", "Too Expensive", "", " price"]) == [
        "too expensive",
        "price",
    ]
    assert clean_phrases(["line one\nline two  ", "   "], collapse=False) == ["line one\nline two"]
