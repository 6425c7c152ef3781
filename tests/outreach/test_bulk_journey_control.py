"""Pausing, resuming or stopping every journey of a cadence: bounded requests. The request
stores one signal per journey with the change (the inbox: durable, retried, never twice),
tells the first few itself and leaves the rest to the inbox relay; the operation's status says
how far it got. Signalling every journey inside the request made thousands of Temporal calls
that outlived any proxy's timeout, and a request that broke midway left the rest untold."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import update

from services.outreach import models
from services.outreach.inbox import InboxRelay, JourneySignal, store_event
from shared.contracts.journey import ReplyReceived
from shared.contracts.names import Sig
from tests.support.journey_operations import INLINE, new_cadence, operation_done
from tests.support.runs import add_enrollment
from tests.support.settings import AUTH
from tests.support.webhooks import FAST, Rig, WebhookRigs, signals_of

BATCH = 10  # rows a relay pass claims


async def test_a_cadence_pause_is_stored_for_every_journey_and_told_by_the_relay(
    webhooks: WebhookRigs,
) -> None:
    async with webhooks(replace(FAST, inline_items=INLINE)) as rig, rig.journeys():
        cadence_id = await new_cadence(rig.http)
        running = [uuid.uuid4().hex for _ in range(4)]
        ended = uuid.uuid4().hex  # enrolled, its journey no longer running
        async with rig.sessions() as s:
            for pid in [*running, ended]:
                await add_enrollment(s, pid)
            await s.commit()
        handles = {pid: await rig.start_journey(pid) for pid in running}

        r = await rig.http.post(
            f"/cadences/{cadence_id}/pause", json={"reason": "copy review"}, headers=AUTH
        )
        answer, done = await operation_done(rig.http, r, 5)
        assert done == {
            "operation_id": answer["operation_id"],
            "operation": "cadence_pause",
            "journeys": 5,
            "pending": 0,
            "signalled": 4,
            "no_journey": 1,
            "failed": 0,
            "done": True,
        }
        for pid, handle in handles.items():
            pauses = [s for s in await signals_of(handle) if s["name"] == "pause"]
            assert [(p["payload"]["kind"], p["payload"]["reason"]) for p in pauses] == [
                ("cadence", "copy review")
            ], pid

        again = await rig.http.post(f"/cadences/{cadence_id}/resume", headers=AUTH)
        assert again.status_code == 202, again.text
        assert again.json()["operation_id"] != answer["operation_id"]
        missing = await rig.http.get("/journey-operations/nope", headers=AUTH)
        assert missing.status_code == 404, missing.text
        assert missing.json()["error"]["code"] == "journey_operation_not_found"


async def test_a_cadence_without_journeys_stores_no_operation(webhooks: WebhookRigs) -> None:
    async with webhooks() as rig:
        cadence_id = await new_cadence(rig.http)
        r = await rig.http.post(f"/cadences/{cadence_id}/stop", json={"reason": "x"}, headers=AUTH)
        assert r.status_code == 202, r.text
        assert r.json() == {
            "operation_id": None,
            "journeys": 0,
            "signalled": [],
            "skipped": {},
            "pending": 0,
        }


async def _webhook_reply_left_to_the_relay(
    rig: Rig, prospect_id: str, event_id: str = "SM-reply"
) -> int:
    """A prospect's reply stored as a webhook stores it, its inline attempt failed (Temporal
    away a moment): pending, due again after the backoff, after every bulk row stored before."""
    async with rig.sessions() as s:
        signal = JourneySignal(prospect_id, Sig.REPLY_RECEIVED, ReplyReceived("sms", event_id))
        stored = await store_event(s, "twilio", event_id, "sms_reply", {}, signal=signal)
        assert stored is not None
        await s.execute(
            update(models.InboxEvent)
            .where(models.InboxEvent.id == stored.id)
            .values(attempts=1, next_attempt_at=datetime.now(UTC))
        )
        await s.commit()
        return stored.id


def _relay(rig: Rig) -> InboxRelay:
    """A relay of the rig's own, run pass by pass (the app's loop stopped)."""
    return InboxRelay(lambda: rig.sessions, lambda: rig.client, rig.app.state.inbox.timing)


async def _told_in_one_pass(rig: Rig, reply_id: int) -> None:
    """One relay pass of a full batch delivers the reply."""
    assert await _relay(rig).run_once() == BATCH
    async with rig.sessions() as s:
        row = await s.get(models.InboxEvent, reply_id)
        assert row is not None
        assert row.delivery == "delivered", (row.delivery, row.attempts, row.last_error)


async def _pause_every_journey(rig: Rig, prospects: int) -> None:
    """A cadence's pause over `prospects` enrolled prospects (no journey running: each row is
    quickly done), all of them left to the relay."""
    cadence_id = await new_cadence(rig.http)
    async with rig.sessions() as s:
        for _ in range(prospects):
            await add_enrollment(s, uuid.uuid4().hex)
        await s.commit()
    r = await rig.http.post(f"/cadences/{cadence_id}/pause", json={"reason": "x"}, headers=AUTH)
    assert r.status_code == 202, r.text
    assert r.json()["pending"] == prospects


async def test_a_webhook_signal_is_never_held_behind_a_bulk_operation(
    webhooks: WebhookRigs,
) -> None:
    """A cadence's thousands of pauses do not delay a prospect's reply whose first attempt
    failed: the relay's next pass tells it, however many bulk rows came before it."""
    async with webhooks(replace(FAST, inline_items=0, batch=BATCH)) as rig, rig.journeys():
        await rig.app.state.inbox.stop()  # one pass at a time, by hand
        pid = uuid.uuid4().hex
        handle = await rig.start_journey(pid)
        await _pause_every_journey(rig, 3 * BATCH)
        await _told_in_one_pass(rig, await _webhook_reply_left_to_the_relay(rig, pid))
        assert [s["name"] for s in await signals_of(handle)] == [Sig.REPLY_RECEIVED]
        await handle.terminate()


async def test_bulk_rows_still_drain_while_webhook_rows_keep_coming(
    webhooks: WebhookRigs,
) -> None:
    """No starvation either way: a pass full of webhook rows still takes a share of the bulk
    rows, so an operation finishes during a storm of replies."""
    async with webhooks(replace(FAST, inline_items=0, batch=BATCH)) as rig:
        await rig.app.state.inbox.stop()
        await _pause_every_journey(rig, BATCH)
        for n in range(2 * BATCH):
            await _webhook_reply_left_to_the_relay(rig, f"p{n}", f"SM{n}")
        taken = await _relay(rig).take()
        share = int(BATCH * FAST.bulk_share)  # kept for the bulk rows, the rest the webhooks'
        assert Counter(i.provider for i in taken) == {"twilio": BATCH - share, "closeflow": share}
        # handled in that order too: the webhooks' rows first
        assert [i.provider for i in taken] == ["twilio"] * (BATCH - share) + ["closeflow"] * share


async def test_a_webhook_signal_is_not_held_behind_a_domains_do_not_contact_stops(
    webhooks: WebhookRigs,
) -> None:
    """Listing a whole domain stops every journey it covers, thousands maybe: the stops the
    request leaves to the relay are bulk too (the send path refuses the domain meanwhile)."""
    async with webhooks(replace(FAST, inline_items=0, batch=BATCH)) as rig, rig.journeys():
        await rig.app.state.inbox.stop()
        pid = uuid.uuid4().hex
        handle = await rig.start_journey(pid)
        async with rig.sessions() as s:
            for n in range(3 * BATCH):
                await add_enrollment(s, uuid.uuid4().hex, email=f"p{n}@bigcorp.example")
            await s.commit()
        r = await rig.http.post(
            "/do-not-contact", json={"value": "bigcorp.example", "reason": "legal"}, headers=AUTH
        )
        assert r.status_code == 201, r.text
        assert r.json()["journeys_stopped"] == 3 * BATCH
        await _told_in_one_pass(rig, await _webhook_reply_left_to_the_relay(rig, pid))
        await handle.terminate()
