"""Outreach lists that stopped at a fixed count (the provider events at 500, the follow-ups at
500) with no way to the rows past it: they page like the other lists now (shared/paging.py),
and a row deleted between two pages takes nothing else with it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.outreach import models
from services.outreach.inbox import store_event
from tests.support.apps import assert_pages, deleting
from tests.support.settings import AUTH
from tests.support.webhooks import WebhookRigs


async def test_provider_events_come_in_pages(webhooks: WebhookRigs) -> None:
    async with webhooks() as rig:
        pid = uuid.uuid4().hex
        async with rig.sessions() as s:
            for i in range(5):
                await store_event(s, "closeflow", f"paging-{i}", "test", {}, prospect_id=pid)
            await s.commit()
        forget = deleting(rig.sessions, models.InboxEvent)
        await assert_pages(
            rig.http, "/inbox-events", 5, AUTH, forget=forget, by_id=True, prospect_id=pid
        )


async def test_follow_ups_come_in_pages(webhooks: WebhookRigs) -> None:
    async with webhooks() as rig:
        start = datetime.now(UTC)
        async with rig.sessions() as s:
            for i in range(5):  # two due at once: the id breaks the tie
                s.add(
                    models.FollowUp(
                        prospect_id=f"p{i}",
                        after_run=1,
                        from_cadence_id="c1",
                        cadence_id="c2",
                        due_at=start + timedelta(days=min(i, 3)),
                    )
                )
            await s.commit()
        forget = deleting(rig.sessions, models.FollowUp)
        await assert_pages(rig.http, "/follow-ups", 5, AUTH, forget=forget)


async def test_an_after_past_the_ids_column_is_refused(webhooks: WebhookRigs) -> None:
    """The events and suppressions are keyed by Integer ids: an `after` past 2**31-1 was sent to
    PostgreSQL as is, which refused it (a 500 the fuzz run found); now a 422 naming `after`."""
    async with webhooks() as rig:
        for path in ("/inbox-events", "/suppressions"):
            largest = await rig.http.get(path, headers=AUTH, params={"after": 2**31 - 1})
            assert largest.status_code == 200, largest.text
            past = await rig.http.get(path, headers=AUTH, params={"after": 2**31})
            assert past.status_code == 422, (path, past.status_code, past.text)
            assert past.json()["error"]["details"][0]["field"] == "after", past.text
