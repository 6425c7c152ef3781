"""`Idempotency-Key` on outreach's creating routes (shared/idempotency.py): a repeat creates
nothing (no second cadence, version, sender or listing); a subscription's or a rotation's retry
gets the same signing secret, from an answer kept sealed."""

from __future__ import annotations

from typing import Any

from services.outreach.models import EventSubscription
from tests.support.apps import Api, ServiceApp
from tests.support.idempotency import kept_answers, key, replayed, sent_twice
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


async def test_a_retried_subscription_or_rotation_gives_the_same_secret_kept_sealed(
    service_app: ServiceApp, api: Api
) -> None:
    """A lost answer to a subscription or a rotation, retried: the same subscription and secret,
    not a second subscription or a second rotation (whose first secret nobody knows). Kept
    sealed by the Idempotency-Key alone here (no master keys outside production): the secrets
    are nowhere in the database."""
    app = await service_app("outreach")
    http = await api(app)
    body = {"url": "https://hooks.example.com/closeflow", "events": ["deal.won"]}
    first, again = await sent_twice(http, "POST", "/event-subscriptions", "sub", json=body)
    assert first.status_code == 201, first.text
    assert replayed(first, again)
    assert len((await http.get("/event-subscriptions")).json()) == 1

    url = f"/event-subscriptions/{first.json()['id']}/secret"
    rotated, rotated_again = await sent_twice(http, "POST", url, "rotate-1")
    assert rotated.status_code == 200, rotated.text
    assert replayed(rotated, rotated_again)
    # one rotation: the first secret retired beside the new one, no third secret
    async with app.state.sessions() as session:
        sub = await session.get(EventSubscription, first.json()["id"])
        assert sub is not None and len(sub.retired_secrets) == 1, sub

    kept = await kept_answers(app)
    assert len(kept) == 2 and all(a.startswith("sealed.v1.-.") for a in kept), kept
    for secret in (first.json()["secret"], rotated.json()["secret"]):
        assert not any(secret in answer for answer in kept)


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
