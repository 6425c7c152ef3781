"""ICP scoring (pure) and the import's streaming parser (no database)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from services.prospecting.fit import IcpRules, score
from services.prospecting.imports import lines, records

RULES = IcpRules.model_validate(
    {
        "criteria": [
            {"name": "senior", "field": "title", "kind": "keywords",
             "values": ["cto", "vp", "head of"], "weight": 40},
            {"name": "software", "field": "industry", "kind": "in",
             "values": ["Software", "SaaS"], "weight": 20},
            {"name": "mid-market", "field": "company_size", "kind": "range",
             "ranges": [{"min": 50, "max": 500}, {"min": 5000}], "weight": 20},
            {"name": "dach", "field": "country", "kind": "in",
             "values": ["DE", "AT", "CH"], "weight": 10},
            {"name": "salesforce shop", "field": "custom.crm", "kind": "in",
             "values": ["salesforce"], "weight": 10},
        ],
        "tiers": {"A": 80, "B": 60, "C": 30},
    }
)  # fmt: skip


def test_every_criterion_met_scores_100_tier_a_with_points_per_criterion() -> None:
    value, tier, why = score(
        RULES,
        {"title": "VP Sales", "industry": "saas", "company_size": 120, "country": "de",
         "custom": {"crm": "Salesforce"}},
    )  # fmt: skip
    assert (value, tier) == (100, "A")
    assert [(e["criterion"], e["points"]) for e in why] == [
        ("senior", 40.0), ("software", 20.0), ("mid-market", 20.0), ("dach", 10.0),
        ("salesforce shop", 10.0),
    ]  # fmt: skip
    assert why[0]["matched"] == "vp"


def test_partial_fit_gives_the_share_of_weight_and_the_tier_by_threshold() -> None:
    value, tier, why = score(RULES, {"title": "Head of IT", "company_size": 9000, "custom": {}})
    assert (value, tier) == (60, "B")
    assert {e["criterion"]: e["points"] for e in why}["software"] == 0.0
    assert score(RULES, {"title": "Intern", "company_size": 10})[:2] == (0, "D")
    assert score(RULES, {"title": "CTO", "company_size": "abc"})[:2] == (40, "C")


def test_empty_icp_scores_zero() -> None:
    assert score(IcpRules(), {"title": "CTO"}) == (0, "D", [])


@pytest.mark.parametrize(
    "bad",
    [
        {"criteria": [{"name": "x", "field": "shoe_size", "kind": "in", "values": ["1"], "weight": 1}]},
        {"criteria": [{"name": "x", "field": "company_size", "kind": "range", "weight": 1}]},
        {"criteria": [{"name": "x", "field": "title", "kind": "keywords", "values": [], "weight": 1}]},
        {"tiers": {"A": 50, "B": 60, "C": 10}},
    ],
)  # fmt: skip
def test_invalid_rules_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        IcpRules.model_validate(bad)


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def _records(data: bytes, fmt: str, size: int = 3) -> list[tuple[int, Any]]:
    return [r async for r in records(lines(_chunks(data, size)), fmt)]  # type: ignore[arg-type]


async def test_lines_survive_chunks_split_inside_characters_and_crlf() -> None:
    data = "\ufeffa,b\r\nJosé,Ünal\r\nlast".encode()
    got = [x async for x in lines(_chunks(data, 1))]
    assert got == [(1, "a,b"), (2, "José,Ünal"), (3, "last")]


async def test_csv_records_keep_line_numbers_quoted_breaks_and_custom_columns() -> None:
    data = (
        b'First Name,email,Company,CRM\n'
        b'Ada,ada@example.com,"Engines, ""Analytical""\nLtd",salesforce\n'
        b'\n'
        b'Bob,bob@example.com,Acme\n'
        b'Cy,cy@example.com,Cyco,\n'
    )  # fmt: skip
    got = await _records(data, "csv")
    assert got[0] == (
        2,
        {"first_name": "Ada", "email": "ada@example.com", "company": 'Engines, "Analytical"\nLtd',
         "custom": {"crm": "salesforce"}},
    )  # fmt: skip
    assert got[1] == (5, "3 columns where the header has 4")
    assert got[2] == (6, {"first_name": "Cy", "email": "cy@example.com", "company": "Cyco",
                          "custom": {}})  # fmt: skip


async def test_ndjson_records_refuse_what_is_not_an_object() -> None:
    data = b'{"first_name": "Ada", "phone": "+1 415 555 0100", "plan": "pro"}\n[1]\n{oops\n'
    got = await _records(data, "ndjson", size=7)
    assert got[0] == (
        1,
        {"first_name": "Ada", "phone": "+1 415 555 0100", "custom": {"plan": "pro"}},
    )
    assert got[1] == (2, "not a JSON object")
    assert got[2][0] == 3 and got[2][1].startswith("not JSON")
