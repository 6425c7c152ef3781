"""Ideal-customer-profile rules and the fit score they give a prospect. Pure: no I/O.

Each criterion carries a weight; the score is the share of the total weight a prospect earns,
0-100, and the explanation names every criterion with the points it gave (they add up to the
score, give or take rounding).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from shared.bounds import INT32_MAX
from shared.requests import WriteModel

# Fields a criterion may look at; "custom.<key>" reaches into the prospect's custom fields.
FIELDS = ("title", "industry", "company_size", "country", "company", "source", "timezone")
Tier = Literal["A", "B", "C", "D"]
_WORD = re.compile(r"\w+")


class SizeRange(WriteModel):
    min: int | None = Field(None, ge=0, le=INT32_MAX)
    max: int | None = Field(None, ge=0, le=INT32_MAX)

    def contains(self, value: int) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


class Criterion(WriteModel):
    name: str = Field(min_length=1, max_length=100)
    field: str = Field(
        max_length=100, description="title, industry, company_size, country, ... or custom.<key>"
    )
    kind: Literal["keywords", "in", "range"] = Field(
        description="keywords: any entry occurs in the text as whole words, in that order "
        "(case-insensitive; punctuation ignored: 'VP, Sales' matches 'vp sales'); "
        "in: equals one of the values (case-insensitive); range: a number within one range"
    )
    values: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, max_length=500
    )
    ranges: list[SizeRange] = Field(default_factory=list, max_length=50)
    weight: int = Field(ge=1, le=1000)

    @model_validator(mode="after")
    def _check(self) -> Criterion:
        if self.field not in FIELDS and not (
            self.field.startswith("custom.") and len(self.field) > len("custom.")
        ):
            raise ValueError(f"unknown field {self.field!r}: use {', '.join(FIELDS)} or custom.KEY")
        if self.kind == "range" and not self.ranges:
            raise ValueError("a range criterion needs ranges")
        if self.kind != "range" and not self.values:
            raise ValueError(f"a {self.kind} criterion needs values")
        wordless = [v for v in self.values if self.kind == "keywords" and not keyword_words(v)]
        if wordless:
            raise ValueError(f"keywords must contain a letter or a digit: {wordless}")
        return self


class Thresholds(WriteModel):
    """Lowest score of each tier; below C is D."""

    A: int = Field(80, ge=0, le=100)
    B: int = Field(60, ge=0, le=100)
    C: int = Field(40, ge=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if not self.A >= self.B >= self.C:
            raise ValueError("thresholds must satisfy A >= B >= C")
        return self


class IcpRules(WriteModel):
    criteria: Annotated[list[Criterion], Field(max_length=100)] = Field(default_factory=list)
    tiers: Thresholds = Field(default_factory=Thresholds)


def _value(prospect: Mapping[str, Any], field: str) -> Any:
    if field.startswith("custom."):
        return (prospect.get("custom") or {}).get(field.removeprefix("custom."))
    return prospect.get(field)


def _matches(criterion: Criterion, value: Any) -> str | None:
    """What matched (for the explanation), or None."""
    if value is None or value == "":
        return None
    if criterion.kind == "range":
        try:
            number = int(value)
        except (TypeError, ValueError):
            return None
        return str(number) if any(r.contains(number) for r in criterion.ranges) else None
    text = str(value).casefold()
    if criterion.kind == "in":
        hit = [v for v in criterion.values if v.casefold() == text.strip()]
    else:
        words = keyword_words(text)
        hit = [v for v in criterion.values if _contains_words(words, keyword_words(v))]
    return hit[0] if hit else None


def keyword_words(text: str) -> list[str]:
    """The words of `text`, case-folded: punctuation and spacing between them do not count, so
    the keyword "VP, Sales" is the words vp, sales."""
    return _WORD.findall(text.casefold())


def _contains_words(words: list[str], keyword: list[str]) -> bool:
    """The keyword's words appear in a row among `words`: whole words only, so "cto" is not in
    "Director" and "vp" is not in "MVP"."""
    n = len(keyword)
    return n > 0 and any(words[i : i + n] == keyword for i in range(len(words) - n + 1))


def tier_for(score: int, tiers: Thresholds) -> Tier:
    if score >= tiers.A:
        return "A"
    if score >= tiers.B:
        return "B"
    if score >= tiers.C:
        return "C"
    return "D"


def score(rules: IcpRules, prospect: Mapping[str, Any]) -> tuple[int, Tier, list[dict[str, Any]]]:
    """(score 0-100, tier, one explanation entry per criterion)."""
    total = sum(c.weight for c in rules.criteria)
    explanation: list[dict[str, Any]] = []
    earned = 0
    for c in rules.criteria:
        matched = _matches(c, _value(prospect, c.field))
        points = round(100 * c.weight / total, 1) if matched is not None and total else 0.0
        earned += c.weight if matched is not None else 0
        explanation.append(
            {"criterion": c.name, "field": c.field, "matched": matched, "points": points}
        )
    value = round(100 * earned / total) if total else 0
    return value, tier_for(value, rules.tiers), explanation
