"""Referral reminders and thanks to referrers, through the whole stack on the real Temporal dev
server (durations in seconds): the services over HTTP, the real journeys, SMTP and the Twilio
sandbox."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.testing import WorkflowEnvironment

from services.outreach.cadences.schemas import CadenceIn
from services.outreach.cadences.service import snapshot_from_definition
from shared.contracts.journey import journey_id
from tests.support.eventually import eventually
from tests.support.scenarios import Driver, Urls, fast_cadence
from tests.support.stack import StackDriver

ASK = "Who else should we help"
REMINDER = "A quick reminder"
LINK = re.compile(r"https?://\S+/r/[\w-]+")


async def cadence(d: Driver, **overrides: Any) -> dict[str, Any]:
    body = fast_cadence(referral_delay_seconds=1, **overrides)
    return await d.ok("POST", f"{d.u.outreach}/cadences", json=body)


async def qualify(d: Driver, deal_id: str) -> None:
    answers = {"budget": True, "authority": "decision_maker", "need": "Reports", "timeline": 3}
    verdict = await d.ok(
        "POST", f"{d.u.deals}/deals/{deal_id}/qualification", json={"answers": answers}
    )
    assert verdict["qualified"] is True


async def close_won(d: Driver, deal_id: str) -> None:
    await d.ok(
        "POST",
        f"{d.u.deals}/deals/{deal_id}/close",
        json={"outcome": "won", "reason": "signed", "value": 1000, "currency": "EUR"},
    )


async def win_client(d: Driver, first_name: str, cadence_id: str) -> dict[str, Any]:
    """A prospect who replies, qualifies and signs: their journey goes on to referrals."""
    client = await d.new_prospect(first_name)
    await d.enroll(client["id"], cadence_id)
    await d.reply_to_first_mail(client, "Interested")
    await d.wait_stage(client["id"], "qualifying")
    deal = await d.deal_of(client["id"])
    await qualify(d, deal["id"])
    await d.wait_stage(client["id"], "presenting")
    await close_won(d, deal["id"])
    return client


async def mails_about(d: Driver, address: str, subject: str) -> list[dict[str, Any]]:
    return [m for m in await d.mails_to(address) if subject in m["subject"]]


async def texts_with(d: Driver, number: str, needle: str) -> list[dict[str, Any]]:
    return [m for m in await d.sms_to(number) if needle in m.get("body", "")]


async def journey_result(env: WorkflowEnvironment, prospect_id: str) -> str:
    handle = env.client.get_workflow_handle(journey_id(prospect_id), result_type=str)
    try:
        return await asyncio.wait_for(handle.result(), 60)
    except TimeoutError as err:
        history = await handle.fetch_history()
        tail = [(e.event_type, str(e)[:300].replace("\n", " ")) for e in history.events[-8:]]
        raise AssertionError(f"journey of {prospect_id} not finished; last events: {tail}") from err


async def test_referral_reminders_go_out_while_nobody_is_referred(stack: StackDriver) -> None:
    d = stack
    await d.setup()
    plan = await cadence(d, referral_reminders=2, referral_reminder_interval_seconds=1)
    assert plan["referral_reminders"] == 2
    ada = await win_client(d, "Ada", plan["id"])
    assert await journey_result(stack.env, ada["id"]) == "won"

    (ask,) = await mails_about(d, ada["email"], ASK)
    reminders = await mails_about(d, ada["email"], REMINDER)
    assert len(reminders) == 2
    link = LINK.search(ask["text"])
    assert link, ask["text"]
    assert all(link.group(0) in r["text"] for r in reminders)
    # each one on SMS too, with the same personal link
    assert len(await texts_with(d, ada["phone"], link.group(0))) == 3


async def test_reminders_stop_once_referred_and_the_referrer_is_thanked(stack: StackDriver) -> None:
    d, urls = stack, stack.u
    await d.setup()
    plan = await cadence(
        d,
        referral_reminders=2,
        referral_reminder_interval_seconds=5,
        # the referred prospect must not time out while the test drives Bea
        qualification_reminder_seconds=3600,
        qualification_timeout_seconds=7200,
    )
    bea = await win_client(d, "Bea", plan["id"])
    ask = await eventually(lambda: mails_about(d, bea["email"], ASK), "the referral ask")
    link = LINK.search(ask[0]["text"])
    assert link, ask[0]["text"]
    gus_email = f"gus-{bea['id'][:8]}@example.com"
    form = {"first_name_0": "Gus", "email_0": gus_email, "phone_0": "+14155550142"}
    submitted = await d.http.post(link.group(0), data=form)
    assert submitted.status_code == 200, submitted.text

    # the check before the first reminder finds the referral: no reminder, journey done
    assert await journey_result(stack.env, bea["id"]) == "won"
    assert await mails_about(d, bea["email"], REMINDER) == []
    assert len(await texts_with(d, bea["phone"], link.group(0))) == 1

    referral = await referral_of(d, urls, bea["id"])
    gus_id = await eventually(lambda: _prospect_of(d, urls, bea["id"]), "the referred prospect")
    await d.wait_stage(gus_id, "qualifying")
    deal = await d.deal_of(gus_id)
    await qualify(d, deal["id"])
    await d.wait_stage(gus_id, "presenting")
    starts = "2099-01-05T15:00:00+00:00"
    await d.ok(
        "POST",
        f"{urls.deals}/deals/{deal['id']}/meetings",
        json={"starts_at": starts, "title": "Demo"},
    )
    thanks = await eventually(
        lambda: mails_about(d, bea["email"], "Thank you for the introduction"),
        "the thanks for the meeting",
    )
    assert "booked a meeting" in thanks[0]["text"]
    await eventually(lambda: texts_with(d, bea["phone"], "booked a meeting"), "the thanks by SMS")
    referral = await eventually(
        lambda: _thanked(d, urls, bea["id"], "thanked_for_meeting_at"),
        "the meeting thanks on the referral",
    )
    assert referral["thanked_for_win_at"] is None

    # Bea opts out of texts: the next thanks comes by email only
    await d.text_from(bea, "STOP")
    await close_won(d, deal["id"])
    # (Gus's own journey goes on: his referral ask waits for his local morning)
    await eventually(lambda: _thanked(d, urls, bea["id"], "thanked_for_win_at"), "win")
    (won,) = await mails_about(d, bea["email"], "became a client")
    assert "Bea" in won["text"]
    assert await texts_with(d, bea["phone"], "became a client") == []
    # one thanks per event, however many meetings follow
    assert len(await mails_about(d, bea["email"], "Thank you for the introduction")) == 1


async def test_no_reminder_once_the_link_is_used_with_nobody_referred(stack: StackDriver) -> None:
    """Cai sends his form naming only Eve, who was erased on request: the page thanks him and
    stores nothing of her, and his link now answers "already used". The reminders would ask
    him to use that link again: none goes (two did, each by email and SMS)."""
    d = stack
    await d.setup()
    plan = await cadence(d, referral_reminders=2, referral_reminder_interval_seconds=5)
    eve = await d.new_prospect("Eve")
    await d.erase(eve["id"])
    cai = await win_client(d, "Cai", plan["id"])
    ask = await eventually(lambda: mails_about(d, cai["email"], ASK), "the referral ask")
    link = LINK.search(ask[0]["text"])
    assert link, ask[0]["text"]
    form = {"first_name_0": "Eve", "email_0": eve["email"]}
    submitted = await d.http.post(link.group(0), data=form)
    assert submitted.status_code == 200, submitted.text

    assert await journey_result(stack.env, cai["id"]) == "won"
    assert (
        await d.ok("GET", f"{d.u.referrals}/referrals", params={"referrer_prospect_id": cai["id"]})
        == []
    )
    assert await mails_about(d, cai["email"], REMINDER) == []
    assert len(await texts_with(d, cai["phone"], link.group(0))) == 1  # the ask's only
    assert (await d.http.get(link.group(0))).status_code == 410


async def referral_of(d: Driver, urls: Urls, referrer_id: str) -> dict[str, Any]:
    rows = await d.ok(
        "GET", f"{urls.referrals}/referrals", params={"referrer_prospect_id": referrer_id}
    )
    (row,) = rows
    return dict(row)


async def _prospect_of(d: Driver, urls: Urls, referrer_id: str) -> str | None:
    return (await referral_of(d, urls, referrer_id))["prospect_id"]


async def _thanked(d: Driver, urls: Urls, referrer_id: str, field: str) -> dict[str, Any] | None:
    row = await referral_of(d, urls, referrer_id)
    return row if row[field] else None


# --- the cadence fields behind the reminders ------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("referral_reminders", -1),
        ("referral_reminders", 11),
        ("referral_reminder_interval_seconds", 0),
        ("referral_reminder_interval_seconds", "soon"),
    ],
)
def test_bad_reminder_settings_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as err:
        CadenceIn.model_validate(fast_cadence(**{field: value}))
    assert [e["loc"] for e in err.value.errors()] == [(field,)]


def test_cadence_versions_saved_before_reminders_get_the_defaults() -> None:
    old = CadenceIn.model_validate(fast_cadence()).model_dump()
    del old["referral_reminders"], old["referral_reminder_interval_seconds"]
    snapshot = snapshot_from_definition("cad", 1, old)
    assert (snapshot.referral_reminders, snapshot.referral_reminder_interval_seconds) == (
        2,
        3 * 86400,
    )
    chosen = CadenceIn.model_validate(
        fast_cadence(referral_reminders=0, referral_reminder_interval_seconds=60)
    ).model_dump()
    snapshot = snapshot_from_definition("cad", 2, chosen)
    assert (snapshot.referral_reminders, snapshot.referral_reminder_interval_seconds) == (0, 60)
