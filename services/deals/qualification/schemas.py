"""Qualification in the public API: answers and verdicts, and the frameworks that judge them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from services.deals.core.schemas import Deal, NonEmpty, Slug
from shared.bounds import INT64_MAX
from shared.requests import WriteModel


class QualificationSubmit(WriteModel):
    answers: dict[str, Any] = Field(
        description="criterion -> answer, e.g. budget: true, authority: 'decision_maker', "
        "need: 'slow manual reporting', timeline: 3 (months). A missing criterion fails."
    )
    partial: bool = Field(
        False,
        description="store the answers (merged with earlier ones) and score them without "
        "deciding: the deal stays qualifying and the journey is not told",
    )


class QualificationResult(BaseModel):
    qualified: bool
    score: int = Field(description="weighted share of passed criteria, 0-100")
    reasons: list[str] = Field(description="one per failing or missing criterion")
    deal: Deal


class CriterionOut(BaseModel):
    key: str
    question: str
    answer_type: str
    choices: list[str]
    weight: int
    hint: str


class FrameworkOut(BaseModel):
    name: str
    label: str
    pass_score: int
    criteria: list[CriterionOut]


# --- ops-defined frameworks ----------------------------------------------------------------------

CriterionKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$", max_length=40)]
# numbers a JSON column and a comparison hold; text as long as an answer may be
RuleInt = Annotated[int, Field(ge=-INT64_MAX, le=INT64_MAX)]
Allowed = bool | float | RuleInt | Annotated[str, StringConstraints(max_length=500)]


class CriterionRule(WriteModel):
    required: bool = True
    min: RuleInt | float | None = None
    max: RuleInt | float | None = None
    allowed: list[Allowed] | None = Field(None, min_length=1, max_length=100)


def _when(kind: str, then: dict[str, Any], otherwise: dict[str, Any]) -> dict[str, Any]:
    """`then` holds for a criterion of answer_type `kind`, `otherwise` for the others."""
    return {
        "if": {"properties": {"answer_type": {"const": kind}}},
        "then": then,
        "else": otherwise,
    }


def _rule(**properties: dict[str, Any]) -> dict[str, Any]:
    return {"properties": {"rule": {"properties": properties}}}


def _allowed(items: dict[str, Any]) -> dict[str, Any]:
    return _rule(allowed={"type": ["array", "null"], "items": items})


_NULL = {"type": "null"}
# _consistent's rules between fields, as far as a schema states them (a min above its max and an
# allowed value outside the choices are refused too): the OpenAPI tells a valid criterion
CRITERION_RULES: dict[str, Any] = {
    "allOf": [
        _when(
            "choice",
            {"required": ["choices"], "properties": {"choices": {"minItems": 1}}},
            {"properties": {"choices": {"maxItems": 0}}},
        ),
        _when("number", _allowed({"type": "number"}), _rule(min=_NULL, max=_NULL)),
        _when("bool", _allowed({"type": "boolean"}), {}),
        _when("text", _rule(allowed=_NULL), {}),
    ]
}


class CriterionSpec(WriteModel):
    model_config = ConfigDict(json_schema_extra=CRITERION_RULES)

    key: CriterionKey
    question: NonEmpty = Field(max_length=500)
    answer_type: Literal["bool", "text", "number", "choice"]
    choices: list[
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    ] = Field(default_factory=list, max_length=100)
    rule: CriterionRule = Field(default_factory=CriterionRule)
    weight: int = Field(1, ge=0, le=1000)
    hint: str = Field("", max_length=500)

    @field_validator("choices")
    @classmethod
    def _lower_choices(cls, value: list[str]) -> list[str]:
        # answers to a choice are matched lower-cased
        return [c.lower() for c in value]

    @model_validator(mode="after")
    def _consistent(self) -> CriterionSpec:
        # ValueErrors here name the criterion; the message names the offending part
        kind, rule = self.answer_type, self.rule
        if kind == "choice" and not self.choices:
            raise ValueError("choices: a choice criterion needs choices")
        if kind != "choice" and self.choices:
            raise ValueError("choices: only a choice criterion has choices")
        if (rule.min is not None or rule.max is not None) and kind != "number":
            raise ValueError("rule: min/max apply to number criteria only")
        if rule.min is not None and rule.max is not None and rule.min > rule.max:
            raise ValueError("rule: min is above max")
        if rule.allowed is not None:
            if kind == "text":
                raise ValueError("rule.allowed: not for text criteria")
            if kind == "bool" and not all(isinstance(a, bool) for a in rule.allowed):
                raise ValueError("rule.allowed: a bool criterion allows true and/or false")
            if kind == "choice":
                allowed = [str(a).lower() for a in rule.allowed]
                stray = [a for a in allowed if a not in self.choices]
                if stray:
                    raise ValueError(f"rule.allowed: not among the choices: {', '.join(stray)}")
                rule.allowed = list(allowed)
            if kind == "number" and any(isinstance(a, bool | str) for a in rule.allowed):
                raise ValueError("rule.allowed: a number criterion allows numbers")
        return self


class FrameworkPut(WriteModel):
    label: NonEmpty = Field(max_length=200)
    pass_score: int = Field(100, ge=0, le=100)
    criteria: list[CriterionSpec] = Field(min_length=1, max_length=50)

    @field_validator("criteria")
    @classmethod
    def _unique_keys(cls, value: list[CriterionSpec]) -> list[CriterionSpec]:
        keys = [c.key for c in value]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"duplicate criterion keys: {', '.join(dupes)}")
        return value


class FrameworkCreate(FrameworkPut):
    name: Slug


class FrameworkDetail(BaseModel):
    name: str
    label: str
    pass_score: int
    builtin: bool
    criteria: list[dict[str, Any]]
