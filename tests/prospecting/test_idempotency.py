"""`Idempotency-Key` on prospecting's creating routes (shared/idempotency.py): a repeat creates
nothing; a route whose answer holds a secret refuses the header rather than ignore it."""

from __future__ import annotations

from tests.support.apps import Api
from tests.support.idempotency import key, replayed, sent_twice


async def test_a_repeated_rep_prospect_or_import_creates_nothing(api: Api) -> None:
    http = await api("prospecting")
    rep = {"name": "Ann", "email": "ann@closeflow.example.com"}
    first, again = await sent_twice(http, "POST", "/reps", "rep", json=rep)
    assert first.status_code == 201, first.text
    assert replayed(first, again)
    assert len((await http.get("/reps")).json()) == 1

    person = {"first_name": "Ada", "email": "ada@example.com"}
    first, again = await sent_twice(http, "POST", "/prospects", "p", json=person)
    assert first.status_code == 201, first.text
    assert replayed(first, again)
    assert len((await http.get("/prospects")).json()["items"]) == 1

    csv = b"first_name,email\nGrace,grace@example.com\n"
    headers = {**key("imp"), "content-type": "text/csv"}
    first, again = await sent_twice(
        http, "POST", "/imports", "imp", content=csv, headers={"content-type": "text/csv"}
    )
    assert first.status_code == 201, first.text
    assert replayed(first, again)  # the same import's report, not a second import's
    other = await http.post("/imports", content=csv + b"Joan,joan@example.com\n", headers=headers)
    assert (other.status_code, other.json()["error"]["code"]) == (422, "idempotency_key_reused")
    # the query is part of the request: the same file read as another format is another request
    other = await http.post("/imports", params={"format": "ndjson"}, content=csv, headers=headers)
    assert (other.status_code, other.json()["error"]["code"]) == (422, "idempotency_key_reused")


async def test_a_new_api_key_takes_no_idempotency_key(api: Api) -> None:
    http = await api("prospecting")
    r = await http.post("/api-keys", json={"name": "ci", "role": "ops"}, headers=key("k"))
    assert (r.status_code, r.json()["error"]["code"]) == (400, "idempotency_not_supported")
    assert (await http.post("/api-keys", json={"name": "ci", "role": "ops"})).status_code == 201


async def test_an_erasure_forgets_the_answer_kept_for_a_retry(api: Api) -> None:
    """The answer to a prospect's creation, kept a day for the client's retry, holds their name
    and email: after their erasure the retry got it back."""
    http = await api("prospecting")
    person = {"first_name": "Ada", "email": "ada@example.com"}
    first, again = await sent_twice(http, "POST", "/prospects", "p", json=person)
    assert replayed(first, again)
    erasure = await http.post(f"/prospects/{first.json()['id']}/erasure")
    assert erasure.status_code == 202, erasure.text
    after = await http.post("/prospects", json=person, headers=key("p"))
    assert "Idempotent-Replayed" not in after.headers, after.text
