"""`Idempotency-Key` on prospecting's creating routes (shared/idempotency.py): a repeat creates
nothing; a new API key's retry gets the same key, from an answer kept sealed."""

from __future__ import annotations

from shared.codec import new_master_key
from tests.support.apps import Api, ServiceApp
from tests.support.idempotency import kept_answers, key, replayed, sent_twice

MASTER = new_master_key("k1")
NEWER = new_master_key("k2")


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


async def test_a_retried_new_api_key_gives_the_same_key_kept_sealed(
    service_app: ServiceApp, api: Api
) -> None:
    """A client whose answer to `POST /api-keys` was lost retries it: the same key again, not a
    second live one nobody knows of. The answer kept for that is sealed: the key is nowhere in
    the database, and it takes the client's Idempotency-Key and a listed master key to read."""
    app = await service_app("prospecting", payload_master_keys=MASTER)
    http = await api(app)
    body = {"name": "ci", "role": "ops"}
    first, again = await sent_twice(http, "POST", "/api-keys", "issue-ci", json=body)
    assert first.status_code == 201, first.text
    assert replayed(first, again)
    issued = first.json()["key"]
    assert len((await http.get("/api-keys")).json()) == 1
    kept = await kept_answers(app)
    assert len(kept) == 1 and kept[0].startswith("sealed.v1.k1."), kept
    assert not any(issued in answer for answer in kept)

    other = await http.post("/api-keys", json=body, headers=key("issue-ci-2"))
    assert other.status_code == 201 and other.json()["key"] != issued
    assert len((await http.get("/api-keys")).json()) == 2

    # a new master key put first: the older one still opens what it sealed
    rotated = await api("prospecting", payload_master_keys=f"{NEWER},{MASTER}")
    later = await rotated.post("/api-keys", json=body, headers=key("issue-ci"))
    assert replayed(first, later)
    # the older one removed: its answers cannot be read, and the retry makes no key either
    removed = await api("prospecting", payload_master_keys=NEWER)
    lost = await removed.post("/api-keys", json=body, headers=key("issue-ci"))
    assert (lost.status_code, lost.json()["error"]["code"]) == (409, "idempotency_outcome_lost")
    assert issued not in lost.text
    assert len((await removed.get("/api-keys")).json()) == 2


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
