"""Ops-defined frameworks: the JSON spec becomes rules that score, and MEDDIC is built in."""

from typing import Any

import pytest

from services.deals.qualification.framework_json import describe, framework_from_spec
from services.deals.qualification.schemas import CriterionSpec
from services.deals.qualification.scoring import BANT, MEDDIC, AnswerError, evaluate

SPEC: list[dict[str, Any]] = [
    {"key": "pain", "question": "Pain?", "answer_type": "bool", "rule": {"allowed": [True]}},
    {
        "key": "seats",
        "question": "Seats?",
        "answer_type": "number",
        "rule": {"min": 10, "max": 500},
        "weight": 2,
    },
    {
        "key": "plan",
        "question": "Plan?",
        "answer_type": "choice",
        "choices": ["basic", "pro", "enterprise"],
        "rule": {"allowed": ["pro", "enterprise"]},
    },
    {"key": "notes", "question": "Notes?", "answer_type": "text", "rule": {"required": False}},
]


def custom(pass_score: int = 100) -> Any:
    criteria = [CriterionSpec.model_validate(c).model_dump(mode="json") for c in SPEC]
    return framework_from_spec("custom", "Custom", pass_score, criteria)


def test_every_rule_of_a_custom_criterion_is_applied() -> None:
    fw = custom()
    good = {"pain": True, "seats": 20, "plan": "pro"}
    assert (evaluate(good, fw).qualified, evaluate(good, fw).score) == (True, 100)
    cases = [
        ({"seats": 5}, "seats: below the minimum of 10"),
        ({"seats": 900}, "seats: above the maximum of 500"),
        ({"plan": "basic"}, "plan: not one of pro, enterprise"),
        ({"pain": False}, "pain: not one of yes"),
        ({"pain": None}, "pain: not answered"),
    ]
    for change, reason in cases:
        verdict = evaluate({**good, **change}, fw)
        assert (verdict.qualified, verdict.reasons) == (False, [reason]), change


def test_optional_criterion_left_out_of_the_score_when_unanswered() -> None:
    fw = custom(pass_score=60)
    verdict = evaluate({"pain": True, "seats": 20, "plan": "basic"}, fw)
    # weights 1 + 2 earned of 1 + 2 + 1: "notes" (optional, unanswered) does not count
    assert (verdict.score, verdict.qualified, verdict.passed["notes"]) == (75, True, True)
    verdict = evaluate({"pain": True, "seats": 20, "plan": "pro", "notes": "x"}, fw)
    assert verdict.score == 100


def test_custom_answers_are_type_checked() -> None:
    with pytest.raises(AnswerError):
        evaluate({"seats": "many"}, custom())
    with pytest.raises(AnswerError):
        evaluate({"plan": "gold"}, custom())


@pytest.mark.parametrize(
    "bad",
    [
        {"key": "x", "question": "?", "answer_type": "choice"},
        {"key": "x", "question": "?", "answer_type": "text", "rule": {"min": 1}},
        {"key": "x", "question": "?", "answer_type": "number", "rule": {"min": 5, "max": 1}},
        {"key": "x", "question": "?", "answer_type": "bool", "rule": {"allowed": ["yes"]}},
        {
            "key": "x",
            "question": "?",
            "answer_type": "choice",
            "choices": ["a"],
            "rule": {"allowed": ["b"]},
        },
        {"key": "x", "question": "?", "answer_type": "date"},
    ],
)
def test_inconsistent_criterion_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        CriterionSpec.model_validate(bad)


def test_meddic_is_built_in_with_its_six_criteria() -> None:
    assert [c.key for c in MEDDIC.criteria] == [
        "metrics",
        "economic_buyer",
        "decision_criteria",
        "decision_process",
        "identify_pain",
        "champion",
    ]
    assert sum(c.weight for c in MEDDIC.criteria) == 100
    verdict = evaluate({"metrics": "cut close from 10 to 3 days", "champion": False}, MEDDIC)
    assert verdict.qualified is False
    assert "champion: no champion" in verdict.reasons
    assert "economic_buyer: not answered" in verdict.reasons


def test_builtin_described_in_the_api_shape() -> None:
    bant = describe(BANT, builtin=True)
    by_key = {c["key"]: c for c in bant["criteria"]}
    assert by_key["budget"]["answer_type"] == "bool"
    assert by_key["budget"]["rule"]["allowed"] == [True]
    assert by_key["timeline"]["rule"]["max"] == 6
    assert by_key["authority"]["rule"]["allowed"] == ["decision_maker", "champion"]
    # the description round-trips to a framework that judges alike
    again = framework_from_spec("b2", "B2", 100, bant["criteria"])
    good = {"budget": True, "authority": "champion", "need": "x", "timeline": 6}
    assert evaluate(good, again).qualified is True
    assert evaluate({**good, "timeline": 7}, again).qualified is False
