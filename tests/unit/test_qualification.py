"""BANT verdicts, reasons and answer validation; a second framework to prove it is data."""

import pytest

from services.deals.qualification.scoring import (
    BANT,
    AnswerError,
    AnswerType,
    Criterion,
    Framework,
    Op,
    Rule,
    evaluate,
)

GOOD = {"budget": True, "authority": "decision_maker", "need": "manual reporting", "timeline": 3}


def test_all_criteria_met_qualifies_with_full_score() -> None:
    verdict = evaluate(GOOD)
    assert (verdict.qualified, verdict.score, verdict.reasons) == (True, 100, [])
    assert verdict.passed == {"budget": True, "authority": True, "need": True, "timeline": True}


@pytest.mark.parametrize(
    ("key", "answer", "reason"),
    [
        ("budget", False, "budget: no budget confirmed"),
        ("budget", "no", "budget: no budget confirmed"),
        ("authority", "influencer", "authority: contact can neither make nor sponsor the decision"),
        ("authority", "none", "authority: contact can neither make nor sponsor the decision"),
        ("need", "   ", "need: no need identified"),
        ("timeline", 7, "timeline: no purchase planned within 6 months"),
        ("budget", None, "budget: not answered"),
    ],
)
def test_one_failing_criterion_disqualifies_with_its_reason(
    key: str, answer: object, reason: str
) -> None:
    verdict = evaluate({**GOOD, key: answer})
    assert verdict.qualified is False
    assert verdict.score == 75
    assert verdict.reasons == [reason]
    assert verdict.passed[key] is False


def test_missing_criteria_each_get_a_reason_in_framework_order() -> None:
    verdict = evaluate({"timeline": 12, "budget": True})
    assert verdict.qualified is False
    assert verdict.score == 25
    assert verdict.reasons == [
        "authority: not answered",
        "need: not answered",
        "timeline: no purchase planned within 6 months",
    ]


def test_empty_answers_fail_everything() -> None:
    verdict = evaluate({})
    assert (verdict.qualified, verdict.score, len(verdict.reasons)) == (False, 0, 4)


def test_boundaries_and_lenient_forms() -> None:
    verdict = evaluate({"budget": "YES", "authority": " Champion ", "need": " x ", "timeline": 6.0})
    assert verdict.qualified is True
    assert verdict.answers == {
        "budget": True,
        "authority": "champion",
        "need": "x",
        "timeline": 6.0,
    }
    assert evaluate({**GOOD, "timeline": 0}).qualified is True


@pytest.mark.parametrize(
    ("answers", "key"),
    [
        ({**GOOD, "budget": "maybe"}, "budget"),
        ({**GOOD, "budget": 1}, "budget"),
        ({**GOOD, "authority": "ceo"}, "authority"),
        ({**GOOD, "authority": True}, "authority"),
        ({**GOOD, "need": 42}, "need"),
        ({**GOOD, "timeline": True}, "timeline"),
        ({**GOOD, "timeline": "soon"}, "timeline"),
        ({**GOOD, "timeline": -1}, "timeline"),
        ({**GOOD, "timeline": float("nan")}, "timeline"),
        # JSON holds integers of any length: one no float can hold was a 500 (OverflowError)
        ({**GOOD, "timeline": 10**400}, "timeline"),
        ({**GOOD, "budgett": True}, "budgett"),
    ],
)
def test_malformed_answers_are_errors_not_failures(answers: dict[str, object], key: str) -> None:
    # a typo must never disqualify a deal (that is one-way), so it is refused instead
    with pytest.raises(AnswerError) as err:
        evaluate(answers)
    assert err.value.key == key


def test_bant_describes_each_criterion() -> None:
    assert [c.key for c in BANT.criteria] == ["budget", "authority", "need", "timeline"]
    for criterion in BANT.criteria:
        assert criterion.question.endswith("?")
        assert criterion.rule.failure
    assert sum(c.weight for c in BANT.criteria) == 100


def test_another_framework_is_just_data() -> None:
    mini = Framework(
        name="mini",
        label="two of three",
        pass_score=60,
        criteria=(
            Criterion("pain", "Pain?", AnswerType.YES_NO, Rule(Op.IS_TRUE, "no pain"), 1),
            Criterion("seats", "Seats?", AnswerType.NUMBER, Rule(Op.AT_LEAST, "too small", 10), 1),
            Criterion(
                "champion",
                "Champion?",
                AnswerType.CHOICE,
                Rule(Op.ONE_OF, "no champion", ("yes",)),
                1,
                choices=("yes", "no"),
            ),
        ),
    )
    verdict = evaluate({"pain": True, "seats": 12, "champion": "no"}, mini)
    assert (verdict.qualified, verdict.score, verdict.reasons) == (
        True,
        67,
        ["champion: no champion"],
    )
    verdict = evaluate({"pain": True, "seats": 3}, mini)
    assert verdict.qualified is False
    assert verdict.reasons == ["seats: too small", "champion: not answered"]
    with pytest.raises(AnswerError):
        evaluate(GOOD, mini)
