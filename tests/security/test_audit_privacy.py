"""The audit log keeps no personal data in clear (shared/audit.py): what a key holder writes
about a person (a do-not-contact address, an imported free field; a qualification answer:
tests/deals/test_deals_audit.py) is recorded as changed, never as its value. The audit log outlives the data: a
value copied there would survive the person's erasure."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support.apps import Api
from tests.support.settings import AUTH

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True),
]


async def audit_text(http: httpx.AsyncClient) -> tuple[list[dict[str, Any]], str]:
    r = await http.get("/audit", params={"limit": "1000"})
    assert r.status_code == 200, r.text
    entries: list[dict[str, Any]] = r.json()["entries"]
    return entries, json.dumps(entries)


async def test_do_not_contact_addresses_are_not_copied_into_the_audit_log(api: Api) -> None:
    http = await api("outreach")
    for value in ("jane.private@example.com", "+14155550123"):
        r = await http.post("/do-not-contact", json={"value": value, "reason": "asked"})
        assert r.status_code == 201, r.text
    entry_id = r.json()["id"]
    assert (await http.delete(f"/do-not-contact/{entry_id}")).status_code == 204

    entries, text = await audit_text(http)
    made = [e for e in entries if e["resource"] == "do_not_contact" and e["action"] == "create"]
    assert len(made) == 2
    assert all(e["changes"]["value"] == {"changed": True} for e in made)
    assert "jane.private" not in text and "4155550123" not in text


async def test_a_prospects_free_fields_are_not_copied_into_the_audit_log(api: Api) -> None:
    http = await api("prospecting")
    custom = {"mobile": "+447700900123", "home_city": "Little Whinging"}
    r = await http.post(
        "/prospects",
        json={"first_name": "Ada", "email": "ada@example.com", "custom": custom},
        headers=AUTH,
    )
    assert r.status_code == 201, r.text

    entries, text = await audit_text(http)
    [made] = [e for e in entries if e["resource"] == "prospects"]
    assert made["changes"]["custom"] == {"changed": True}
    assert "7700900123" not in text and "Whinging" not in text


async def test_signing_secrets_and_webhook_urls_are_not_copied_into_the_audit_log(
    api: Api,
) -> None:
    """A subscription's retired secrets (a list under a name the audit did not know) and the
    URL its events go to (a Slack incoming webhook's path is its credential) were recorded in
    clear."""
    http = await api("outreach")
    hook = "https://hooks.example.com/services/T0001/B0001/xoxb-private-path"
    made = await http.post("/event-subscriptions", json={"url": hook, "events": ["deal.won"]})
    assert made.status_code == 201, made.text
    first_secret = made.json()["secret"]
    rotated = await http.post(f"/event-subscriptions/{made.json()['id']}/secret")
    assert rotated.status_code == 200, rotated.text

    entries, text = await audit_text(http)
    assert [e for e in entries if e["resource"] == "event_subscriptions"], entries
    assert first_secret not in text and rotated.json()["secret"] not in text
    assert "xoxb-private-path" not in text, text
