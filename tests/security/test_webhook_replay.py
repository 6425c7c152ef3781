"""Issue 11: a captured SendGrid batch replayed later (a valid signature over an old timestamp)
is refused before anything is stored; it used to recreate suppressions forever, even for an
erased address. So is a batch signed for the future."""

from __future__ import annotations

import time

import pytest

from services.outreach import models
from shared.providers import sendgrid
from shared.providers.sendgrid import generate_key_pair, signed_headers
from tests.support.webhooks import WebhookRigs, webhooks  # noqa: F401  (fixture)

PRIVATE, PUBLIC = generate_key_pair()
URL = "/webhooks/sendgrid/events"


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_a_replayed_old_batch_is_refused_and_nothing_stored(webhooks: WebhookRigs) -> None:  # noqa: F811
    async with webhooks(sendgrid_webhook_public_key=PUBLIC) as rig:
        now = time.time()
        complaint = sendgrid.event(
            "spamreport", email="ada@example.com", smtp_id="<ada@closeflow>", now=now - 1200
        )
        body = sendgrid.batch_body([complaint])
        for signed_at in (now - 1200, now + 600):  # 20 minutes ago; 10 minutes ahead
            answer = await rig.http.post(
                URL, content=body, headers=signed_headers(PRIVATE, body, signed_at)
            )
            assert answer.status_code == 403, answer.text
            assert answer.json()["error"]["code"] == "timestamp_out_of_window"
        assert await rig.count(models.InboxEvent) == 0
        assert await rig.count(models.RejectedItem) == 0
        assert await rig.suppressed("email") == set()
        # the same batch, signed now (SendGrid signs each attempt anew): accepted
        fresh = await rig.http.post(URL, content=body, headers=signed_headers(PRIVATE, body, now))
        assert fresh.status_code == 200, fresh.text
        assert await rig.suppressed("email") == {"ada@example.com"}
