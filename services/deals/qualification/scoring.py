"""Qualification frameworks as data: criteria with a question, an answer type and a rule.

BANT is built in. A framework is plain data (no code per criterion), so MEDDIC or an ops-defined
framework is another `Framework(...)` value, loadable from JSON later.

A malformed answer (wrong type, unknown criterion) raises AnswerError instead of failing the
criterion: disqualification is one-way, so a typo must be a 422, never a lost deal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class AnswerType(StrEnum):
    YES_NO = "yes_no"  # JSON true/false, or "yes"/"no"
    CHOICE = "choice"  # one of the criterion's choices
    NUMBER = "number"  # a number >= 0
    TEXT = "text"


class Op(StrEnum):
    IS_TRUE = "is_true"
    ONE_OF = "one_of"
    AT_MOST = "at_most"
    AT_LEAST = "at_least"
    NOT_EMPTY = "not_empty"
    ANSWERED = "answered"  # any well-formed answer passes (an optional or informative criterion)


@dataclass(frozen=True)
class Rule:
    op: Op
    failure: str  # the reason given when the answer does not pass, e.g. "no budget confirmed"
    value: Any = None  # operand of ONE_OF (a tuple), AT_MOST / AT_LEAST (a number)


@dataclass(frozen=True)
class Criterion:
    key: str
    question: str
    answer_type: AnswerType
    rule: Rule
    weight: int = 1
    choices: tuple[str, ...] = ()
    hint: str = ""
    # Custom criteria combine rules (threshold min and max, allowed values); every one must pass.
    more_rules: tuple[Rule, ...] = ()
    # An optional criterion left unanswered is left out of the score (neither earned nor lost)
    # and is no reason; answered, its rules count like any other.
    required: bool = True

    @property
    def rules(self) -> tuple[Rule, ...]:
        return (self.rule, *self.more_rules)


@dataclass(frozen=True)
class Framework:
    name: str
    label: str
    criteria: tuple[Criterion, ...]
    pass_score: int  # qualified when the weighted score (0-100) reaches it

    def criterion(self, key: str) -> Criterion | None:
        return next((c for c in self.criteria if c.key == key), None)


@dataclass(frozen=True)
class Verdict:
    qualified: bool
    score: int
    reasons: list[str]
    passed: dict[str, bool] = field(default_factory=dict)  # criterion -> passed (missing: False)
    answers: dict[str, Any] = field(default_factory=dict)  # the normalized answers given


class AnswerError(ValueError):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


BANT = Framework(
    name="bant",
    label="BANT (budget, authority, need, timeline)",
    pass_score=100,
    criteria=(
        Criterion(
            key="budget",
            question="Is budget confirmed for this purchase?",
            answer_type=AnswerType.YES_NO,
            rule=Rule(Op.IS_TRUE, "no budget confirmed"),
            weight=25,
        ),
        Criterion(
            key="authority",
            question="What is the contact's role in the buying decision?",
            answer_type=AnswerType.CHOICE,
            choices=("decision_maker", "champion", "influencer", "none"),
            rule=Rule(
                Op.ONE_OF,
                "contact can neither make nor sponsor the decision",
                ("decision_maker", "champion"),
            ),
            weight=25,
            hint="champion: not the decider, but has the decider's backing",
        ),
        Criterion(
            key="need",
            question="Which problem of theirs does the product solve?",
            answer_type=AnswerType.TEXT,
            rule=Rule(Op.NOT_EMPTY, "no need identified"),
            weight=25,
        ),
        Criterion(
            key="timeline",
            question="In how many months do they plan to buy?",
            answer_type=AnswerType.NUMBER,
            rule=Rule(Op.AT_MOST, "no purchase planned within 6 months", 6),
            weight=25,
            hint="0 means now",
        ),
    ),
)

MEDDIC = Framework(
    name="meddic",
    label="MEDDIC (metrics, economic buyer, decision criteria, decision process, pain, champion)",
    pass_score=100,
    criteria=(
        Criterion(
            key="metrics",
            question="Which measurable gain do they expect (in their numbers)?",
            answer_type=AnswerType.TEXT,
            rule=Rule(Op.NOT_EMPTY, "no metrics agreed"),
            weight=15,
        ),
        Criterion(
            key="economic_buyer",
            question="Have we identified and met the economic buyer?",
            answer_type=AnswerType.YES_NO,
            rule=Rule(Op.IS_TRUE, "economic buyer not identified"),
            weight=20,
        ),
        Criterion(
            key="decision_criteria",
            question="What criteria will they decide on?",
            answer_type=AnswerType.TEXT,
            rule=Rule(Op.NOT_EMPTY, "decision criteria unknown"),
            weight=15,
        ),
        Criterion(
            key="decision_process",
            question="What are the steps and who signs, by when?",
            answer_type=AnswerType.TEXT,
            rule=Rule(Op.NOT_EMPTY, "decision process unknown"),
            weight=15,
        ),
        Criterion(
            key="identify_pain",
            question="Which pain does the product remove, in their words?",
            answer_type=AnswerType.TEXT,
            rule=Rule(Op.NOT_EMPTY, "no pain identified"),
            weight=20,
        ),
        Criterion(
            key="champion",
            question="Is there a champion who sells for us internally?",
            answer_type=AnswerType.YES_NO,
            rule=Rule(Op.IS_TRUE, "no champion"),
            weight=15,
        ),
    ),
)

BUILTIN_FRAMEWORKS: dict[str, Framework] = {BANT.name: BANT, MEDDIC.name: MEDDIC}
FRAMEWORKS = BUILTIN_FRAMEWORKS
DEFAULT_FRAMEWORK = BANT


def _normalize(criterion: Criterion, raw: Any) -> Any:
    """The answer in its canonical form, or AnswerError when it does not fit the answer type."""
    key, kind = criterion.key, criterion.answer_type
    if kind is AnswerType.YES_NO:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in ("yes", "no"):
            return raw.strip().lower() == "yes"
        raise AnswerError(key, "expected true/false (or 'yes'/'no')")
    if kind is AnswerType.CHOICE:
        if isinstance(raw, str) and raw.strip().lower() in criterion.choices:
            return raw.strip().lower()
        raise AnswerError(key, f"expected one of {', '.join(criterion.choices)}")
    if kind is AnswerType.NUMBER:
        # bool is an int in Python; True months is a client bug, not a number
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not _finite(raw):
            raise AnswerError(key, "expected a number")
        if raw < 0:
            raise AnswerError(key, "expected a number >= 0")
        return raw
    if not isinstance(raw, str):
        raise AnswerError(key, "expected text")
    return raw.strip()


def _finite(number: float) -> bool:
    """A JSON integer too long for a float (10**400) is no answer either, not an OverflowError."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def _passes(rule: Rule, answer: Any) -> bool:
    match rule.op:
        case Op.IS_TRUE:
            return answer is True
        case Op.ONE_OF:
            return answer in rule.value
        case Op.AT_MOST:
            return bool(answer <= rule.value)
        case Op.AT_LEAST:
            return bool(answer >= rule.value)
        case Op.NOT_EMPTY:
            return bool(answer)
        case Op.ANSWERED:
            return True
    raise ValueError(f"unknown rule {rule.op!r}")


def still_fitting(answers: dict[str, Any], framework: Framework) -> dict[str, Any]:
    """The stored answers `framework` takes as it is now: ops may have replaced it since they were
    given, and an answer to a criterion it no longer asks, or of a type it no longer takes, is
    left out (asked again as unanswered) rather than failing every later verdict."""
    kept: dict[str, Any] = {}
    for key, raw in answers.items():
        criterion = framework.criterion(key)
        if criterion is None:
            continue
        try:
            kept[key] = _normalize(criterion, raw)
        except AnswerError:
            continue
    return kept


def evaluate(answers: dict[str, Any], framework: Framework = DEFAULT_FRAMEWORK) -> Verdict:
    """Score the answers; a reason per failing or missing criterion. None counts as missing."""
    unknown = sorted(set(answers) - {c.key for c in framework.criteria})
    if unknown:
        expected = ", ".join(c.key for c in framework.criteria)
        raise AnswerError(unknown[0], f"unknown criterion; {framework.name} asks {expected}")

    total = 0
    earned = 0
    reasons: list[str] = []
    passed: dict[str, bool] = {}
    normalized: dict[str, Any] = {}
    for criterion in framework.criteria:
        raw = answers.get(criterion.key)
        if raw is None:
            passed[criterion.key] = not criterion.required
            if criterion.required:
                total += criterion.weight
                reasons.append(f"{criterion.key}: not answered")
            continue
        total += criterion.weight
        answer = _normalize(criterion, raw)
        normalized[criterion.key] = answer
        failed = next((r for r in criterion.rules if not _passes(r, answer)), None)
        passed[criterion.key] = failed is None
        if failed is None:
            earned += criterion.weight
        else:
            reasons.append(f"{criterion.key}: {failed.failure}")

    score = round(100 * earned / (total or 1))
    qualified = score >= framework.pass_score
    return Verdict(qualified, score, reasons, passed, normalized)
