"""Ops-defined qualification frameworks: the API/JSON shape <-> qualification.Framework.

A criterion is stored as plain JSON: {key, question, answer_type (bool|text|number|choice),
choices, rule: {required, min, max, allowed}, weight}. Built-in frameworks are described in the
same shape so clients read every framework alike.
"""

from __future__ import annotations

from typing import Any

from services.deals.qualification.scoring import AnswerType, Criterion, Framework, Op, Rule

# The API says "bool"; the BANT code predates it and says "yes_no".
API_TYPES: dict[str, AnswerType] = {
    "bool": AnswerType.YES_NO,
    "text": AnswerType.TEXT,
    "number": AnswerType.NUMBER,
    "choice": AnswerType.CHOICE,
}
_API_NAMES = {v: k for k, v in API_TYPES.items()}


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def criterion_from_spec(spec: dict[str, Any]) -> Criterion:
    """A validated spec (see schemas.CriterionSpec) as a Criterion; every rule must pass."""
    kind = API_TYPES[spec["answer_type"]]
    rule = spec.get("rule") or {}
    required = bool(rule.get("required", True))
    rules: list[Rule] = []
    if kind is AnswerType.TEXT and required:
        rules.append(Rule(Op.NOT_EMPTY, "not answered"))
    if rule.get("min") is not None:
        rules.append(Rule(Op.AT_LEAST, f"below the minimum of {_fmt(rule['min'])}", rule["min"]))
    if rule.get("max") is not None:
        rules.append(Rule(Op.AT_MOST, f"above the maximum of {_fmt(rule['max'])}", rule["max"]))
    if rule.get("allowed"):
        allowed = tuple(rule["allowed"])
        rules.append(Rule(Op.ONE_OF, "not one of " + ", ".join(_fmt(a) for a in allowed), allowed))
    if not rules:
        rules.append(Rule(Op.ANSWERED, "not answered"))
    return Criterion(
        key=spec["key"],
        question=spec["question"],
        answer_type=kind,
        rule=rules[0],
        more_rules=tuple(rules[1:]),
        weight=int(spec.get("weight", 1)),
        choices=tuple(spec.get("choices") or ()),
        required=required,
        hint=spec.get("hint") or "",
    )


def framework_from_spec(
    name: str, label: str, pass_score: int, criteria: list[dict[str, Any]]
) -> Framework:
    return Framework(name, label, tuple(criterion_from_spec(c) for c in criteria), pass_score)


def describe_criterion(c: Criterion) -> dict[str, Any]:
    rule: dict[str, Any] = {"required": c.required, "min": None, "max": None, "allowed": None}
    for r in c.rules:
        if r.op is Op.AT_LEAST:
            rule["min"] = r.value
        elif r.op is Op.AT_MOST:
            rule["max"] = r.value
        elif r.op is Op.ONE_OF:
            rule["allowed"] = list(r.value)
        elif r.op is Op.IS_TRUE:
            rule["allowed"] = [True]
    return {
        "key": c.key,
        "question": c.question,
        "answer_type": _API_NAMES[c.answer_type],
        "choices": list(c.choices),
        "rule": rule,
        "weight": c.weight,
        "hint": c.hint,
    }


def describe(fw: Framework, *, builtin: bool) -> dict[str, Any]:
    return {
        "name": fw.name,
        "label": fw.label,
        "pass_score": fw.pass_score,
        "builtin": builtin,
        "criteria": [describe_criterion(c) for c in fw.criteria],
    }
