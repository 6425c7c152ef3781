"""`Idempotency-Key` on outreach's creating routes (shared/idempotency.py): a repeat creates
nothing (no second cadence, version, sender or listing); the event subscription, whose answer
holds its signing secret once, refuses the header rather than ignore it."""

from __future__ import annotations

from typing import Any

from tests.support.apps import Api
from tests.support.idempotency import key, replayed, sent_twice
from tests.support.settings import SERVICE_AUTH

CADENCE: dict[str, Any] = {
    "name": "Two steps",
    "steps": [
        {"channel": "email", "offset_seconds": 0, "subject": "Hi", "body": "Hi {{ first_name }}"},
        {"channel": "sms", "offset_seconds": 0, "body": "Hi {{ first_name }}"},
    ],
}


async def test_a_repeated_cadence_version_sender_or_listing_creates_nothing(api: Api) -> None:
    http = await api("outreach")
    first, again = await sent_twice(http, "POST", "/cadences", "c", json=CADENCE)
    assert first.status_code == 201, first.text
    assert replayed(first, again)
    assert len((await http.get("/cadences")).json()) == 1

    cid = first.json()["id"]
    changed = {**CADENCE, "name": "Two steps, renamed"}
    first, again = await sent_twice(http, "PUT", f"/cadences/{cid}", "v2", json=changed)
    assert first.status_code == 200, first.text
    assert replayed(first, again)
    assert (await http.get(f"/cadences/{cid}")).json()["version"] == first.json()["version"] == 2

    sender = {"from_address": "ann@sales.example.com"}
    first, again = await sent_twice(http, "POST", "/senders", "s", json=sender)
    assert first.status_code == 201, first.text
    assert replayed(first, again)
    assert len((await http.get("/senders")).json()) == 1

    listing = {"value": "nobody@example.com", "reason": "asked"}
    first, again = await sent_twice(http, "POST", "/do-not-contact", "d", json=listing)
    assert first.status_code == 201, first.text
    assert replayed(first, again)  # 201 as the first said, not the 200 of a second listing


async def test_an_event_subscription_takes_no_idempotency_key(api: Api) -> None:
    http = await api("outreach")
    body = {"url": "https://hooks.example.com/closeflow", "events": ["deal.won"]}
    r = await http.post("/event-subscriptions", json=body, headers=key("sub"))
    assert (r.status_code, r.json()["error"]["code"]) == (400, "idempotency_not_supported")
    assert (await http.get("/event-subscriptions")).json() == []


async def test_an_erasure_forgets_the_answers_kept_for_retries(api: Api) -> None:
    """A listing's answer, kept a day for the client's retry, holds the address: after the
    person's erasure the retry got it back, the address in clear."""
    http = await api("outreach")
    listing = {"value": "ada@example.com", "reason": "asked"}
    first, again = await sent_twice(http, "POST", "/do-not-contact", "d", json=listing)
    assert replayed(first, again)
    order = {"erasure_id": "e-ada", "prospect_id": "p-ada", "email": "Ada@Example.com"}
    erased = await http.post("/internal/erasures", json=order, headers=SERVICE_AUTH)
    assert erased.status_code == 200, erased.text
    assert erased.json()["deleted"]["idempotency_keys"] == 1
    after = await http.post("/do-not-contact", json=listing, headers=key("d"))
    assert "Idempotent-Replayed" not in after.headers, after.text
