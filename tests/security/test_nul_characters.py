"""Issue 11 (found by the fuzz and schemathesis on PostgreSQL): a NUL character in a path, a query
string or any field of a request body was a 500 there (PostgreSQL text cannot hold one); now it
is a 422 before anything reads the database, on public routes too."""

from __future__ import annotations

from tests.support.apps import Api


async def test_a_nul_in_a_body_field_is_a_422_naming_the_field(api: Api) -> None:
    prospecting = await api("prospecting")
    answer = await prospecting.post("/api-keys", json={"name": "a\u0000b", "role": "admin"})
    assert answer.status_code == 422, answer.text
    assert [d["field"] for d in answer.json()["error"]["details"]] == ["name"]
    assert "NUL" in answer.json()["error"]["message"]


async def test_a_nul_in_a_path_or_query_is_a_422_on_public_routes_too(api: Api) -> None:
    referrals = await api("referrals", key=False)
    for url in ("/r/a%00b", "/r/token?x=%00"):
        answer = await referrals.get(url)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == "nul_character"
