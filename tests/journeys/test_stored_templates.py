"""Journeys that carry where their templates are (CLOSEFLOW_JOURNEY_TEMPLATES=stored, issue 13):
what goes out is what the cadence version says, variants and HTML included, a journey stays on
the version it started on unless moved, and its history holds none of the templates."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from shared.contracts.journey import journey_id
from tests.support.eventually import eventually
from tests.support.scenarios import fast_cadence
from tests.support.stack import StackDriver

pytestmark = pytest.mark.stack(settings={"journey_templates": "stored"})

# seconds after enrolment: the first touches go, both cadences get a new version and Bob's journey
# is moved to it before the follow-ups are due, with room for a loaded machine
FOLLOW_UP_AFTER = 25


def cadence(marker: str, follow_up: str) -> dict[str, Any]:
    spec = fast_cadence()
    first, text, later = spec["steps"]
    first["variants"] = [
        {
            "name": "plain",
            "subject": "Hello {{ first_name }}",
            "body": f"Plain {marker}",
            "html": f"<p>Plain {marker} for {{{{ company }}}}</p>",
        },
        {"name": "bold", "subject": "HELLO {{ first_name }}", "body": f"Bold {marker}"},
    ]
    text["body"] = f"Hi {{{{ first_name }}}}, a text {marker}"
    later.update(offset_seconds=FOLLOW_UP_AFTER, subject="Following up", body=follow_up)
    return spec


async def history_bytes(d: StackDriver, prospect_id: str) -> bytes:
    handle = d.env.client.get_workflow_handle(journey_id(prospect_id))
    history = await handle.fetch_history()
    # payloads are bytes fields: their data is verbatim in the serialized events
    return b"".join(event.SerializeToString() for event in history.events)


async def test_stored_templates_are_sent_pinned_and_kept_out_of_history(
    stack: StackDriver,
) -> None:
    d, urls = stack, stack.u
    await d.setup()
    marker = uuid.uuid4().hex
    pinned = await d.ok("POST", f"{urls.outreach}/cadences", json=cadence(marker, "v1 follow-up"))
    moved = await d.ok("POST", f"{urls.outreach}/cadences", json=cadence(marker, "v1 follow-up"))
    ann = await d.new_prospect("Ann", company="Acme & Co")
    bob = await d.new_prospect("Bob", company="Bobcorp")
    await d.enroll(ann["id"], pinned["id"])
    await d.enroll(bob["id"], moved["id"])

    [mail] = await d.wait_mails(ann["email"], 1)
    variant = "plain" if mail["subject"] == "Hello Ann" else "bold"
    assert mail["subject"] == ("Hello Ann" if variant == "plain" else "HELLO Ann")
    assert f"{variant.title()} {marker}" in mail["text"]
    if variant == "plain":
        assert f"<p>Plain {marker} for Acme &amp; Co</p>" in mail["html"]

    [text] = await eventually(lambda: d.sms_to(ann["phone"]), "Ann's first text")
    assert text["body"].startswith(f"Hi Ann, a text {marker}")

    # a new version of both cadences; Bob's journey is moved to it, Ann's stays on hers
    await d.wait_mails(bob["email"], 1)
    for c in (pinned, moved):
        await d.ok(
            "PUT", f"{urls.outreach}/cadences/{c['id']}", json=cadence(marker, "v2 follow-up")
        )
    assert len(await d.mails_to(ann["email"])) == 1, "the follow-up went before v2 was saved"
    applied = await d.ok("POST", f"{urls.outreach}/cadences/{moved['id']}/migration")
    assert applied["signalled"] == [bob["id"]]

    def follow_up(mails: list[dict[str, Any]]) -> str:
        [found] = [m["text"] for m in mails if m["subject"] == "Following up"]
        return str(found)

    assert follow_up(await d.wait_mails(ann["email"], 2)).startswith("v1 follow-up")
    assert follow_up(await d.wait_mails(bob["email"], 2)).startswith("v2 follow-up")

    # what Temporal keeps of both journeys names the versions and holds none of the templates
    for prospect in (ann, bob):
        recorded = await history_bytes(d, prospect["id"])
        assert b'"stored"' in recorded
        assert marker.encode() not in recorded
        assert b"follow-up" not in recorded
