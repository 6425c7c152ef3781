"""ICP keywords match whole words (issue 10, point 12): "cto" is not in "Director", "vp" is not
in "MVP"; a keyword of several words matches them in a row, whatever punctuation or case sits
between them."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.support.apps import ServiceApp

ICP = {
    "criteria": [
        {"name": "senior", "field": "title", "kind": "keywords", "values": ["cto", "vp"],
         "weight": 50},
        {"name": "sales leader", "field": "title", "kind": "keywords",
         "values": ["VP, Sales", "head of sales"], "weight": 50},
    ],
    "tiers": {"A": 100, "B": 50, "C": 1},
}  # fmt: skip


@pytest.fixture
async def app(service_app: ServiceApp) -> FastAPI:
    return await service_app("prospecting")


async def matched(http: httpx.AsyncClient, title: str) -> dict[str, Any]:
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    r = await http.post("/prospects", json={"first_name": "Ada", "title": title, "email": email})
    assert r.status_code == 201, r.text
    return {e["criterion"]: e["matched"] for e in r.json()["fit_explanation"]}


async def test_keywords_match_whole_words_only(http: httpx.AsyncClient) -> None:
    assert (await http.put("/icp", json=ICP)).status_code == 200
    expected = {
        "Director of Engineering": {"senior": None, "sales leader": None},
        "MVP Engineer": {"senior": None, "sales leader": None},
        "Co-founder & CTO": {"senior": "cto", "sales leader": None},
        "vp sales, emea": {"senior": "vp", "sales leader": "VP, Sales"},
        "VP - Sales": {"senior": "vp", "sales leader": "VP, Sales"},
        "SVP Sales": {"senior": None, "sales leader": None},
        "VP of Sales": {"senior": "vp", "sales leader": None},
        "Head of Sales": {"senior": None, "sales leader": "head of sales"},
        "Head of Salesforce admin": {"senior": None, "sales leader": None},
    }
    got = {title: await matched(http, title) for title in expected}
    assert got == expected


async def test_a_keyword_without_a_word_is_refused(http: httpx.AsyncClient) -> None:
    bad = {"criteria": [{**ICP["criteria"][0], "values": ["cto", " & "]}]}  # type: ignore[dict-item]
    r = await http.put("/icp", json=bad)
    assert r.status_code == 422
    assert "keywords must contain a letter or a digit" in r.text
