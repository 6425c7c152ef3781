"""Outreach's erasure order and the suppression it leaves: the real send activity on the
Temporal dev server, real SMTP (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from services.outreach import models
from services.outreach.consent.erasure import erase
from shared.erasure import ErasureOrder, digest
from tests.support.sending import SendingRig, contact, email_touch, outcome
from tests.support.settings import SERVICE_AUTH


async def test_an_erased_address_is_never_sent_to_again(sending_rig: SendingRig) -> None:
    async with sending_rig() as r:
        ada = contact()
        assert outcome(await r.send(email_touch(ada))) == "sent"
        assert len(r.sb.mailbox.list(to=ada.email)) == 1
        pepper = r.settings.erasure_pepper.get_secret_value()
        order = {
            "erasure_id": "e1",
            "prospect_id": ada.prospect_id,
            "email": ada.email,
            "email_digest": digest(pepper, "email", ada.email or ""),
        }
        first = await r.api.post("/internal/erasures", json=order, headers=SERVICE_AUTH)
        assert first.status_code == 200, first.text
        assert first.json()["deleted"]["messages"] == 1
        again = await r.api.post("/internal/erasures", json=order, headers=SERVICE_AUTH)
        assert again.status_code == 200 and again.json()["deleted"]["messages"] == 0
        assert await r.ledger(ada) == []
        async with r.sessions() as session:
            kept = (await session.scalars(select(models.ErasedPerson.digest))).all()
        assert kept == [order["email_digest"]]  # the digest, never the address

        # The same address under any prospect (a later journey, a re-created person), or her
        # own journey's next step (an activity under way when the erasure came): refused, and
        # nothing of her written back: no ledger row with her address and the text for her.
        back = contact(email=ada.email)
        for touch in (email_touch(back), email_touch(ada, key="step-1")):
            result = await r.send(touch)
            assert outcome(result) == "suppressed"
            assert result.outcomes[0].detail.startswith("erased")
        assert await r.ledger(back) == [] and await r.ledger(ada) == []
        async with r.sessions() as session:
            addresses = (await session.scalars(select(models.Message.to_address))).all()
        assert ada.email not in addresses
        assert len(r.sb.mailbox.list(to=ada.email)) == 1  # nothing more arrived
        # everyone else is still reached
        other = contact()
        assert outcome(await r.send(email_touch(other))) == "sent"


@pytest.mark.parametrize("to", ["her", "her address under another prospect"])
async def test_a_send_racing_her_erasure_leaves_no_row_of_her(
    sending_rig: SendingRig, to: str
) -> None:
    """A send the erasure does not wait for (not her journey's: a hand-over's cancellation, a
    meeting's invitation; or to her address under another prospect, a person created again)
    looked for her erasure while the erasure had deleted her rows and not yet committed: its
    ledger row, with her address and the text for her, outlived the erasure."""
    async with sending_rig() as r:
        ada = contact()
        pepper = r.settings.erasure_pepper.get_secret_value()
        order = ErasureOrder(
            erasure_id="e2",
            prospect_id=ada.prospect_id,
            email=ada.email,
            email_digest=digest(pepper, "email", ada.email or ""),
        )
        recipient = ada if to == "her" else contact(email=ada.email)
        async with r.sessions() as erasing:
            await erase(erasing, order)  # her rows deleted, not committed yet
            sending = asyncio.create_task(r.send(email_touch(recipient)))
            await asyncio.sleep(2)  # the send's look and row, were they not held
            await erasing.commit()
        result = await sending
        assert outcome(result) == "suppressed", result
        assert await r.ledger(recipient) == []
        async with r.sessions() as session:
            addresses = (await session.scalars(select(models.Message.to_address))).all()
        assert ada.email not in addresses
        assert r.sb.mailbox.list(to=ada.email) == []
