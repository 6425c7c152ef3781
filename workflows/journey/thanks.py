"""A referrer's thanks (stage 7): what the journey runs in the background once a prospect they
referred books a first meeting or becomes a client, and what ThankReferrer
(workflows/referrer_thanks.py) runs when the journey's run ends before it is done."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from shared.contracts.journey import (
        Contact,
        ProspectRef,
        ReferrerThanks,
        ThanksRequest,
        TouchRequest,
        TouchResult,
    )
    from shared.contracts.names import Act

from workflows.journey.steps import call, send_in_window, wait_for_window


async def thank(req: ThanksRequest) -> None:
    """The referrer's address as prospecting has it now, the thanks by email and SMS when their
    window allows (outreach honours their consent), then the referral notes it. The journey's
    background thanks and ThankReferrer run the same commands."""
    queues = req.queues
    contact = await call(
        Act.GET_CONTACT, ProspectRef(req.referrer.prospect_id), queues.prospecting, Contact
    )
    touch = TouchRequest(
        journey_id=req.journey_id,
        touch_key=f"referrer-thanks-{req.event}",
        kind=f"referrer_thanks_{req.event}",
        contact=contact,
        cadence_id=req.cadence_id,
        channels=["email", "sms"],
        send_window=req.send_window,
    )

    async def send() -> TouchResult:
        return await call(Act.SEND_TOUCH, touch, queues.outreach, TouchResult)

    await send_in_window(send, wait_for_window)
    thanks = ReferrerThanks(req.referrer.referral_id, req.event, workflow.now().isoformat())
    await call(Act.RECORD_REFERRER_THANKS, thanks, queues.referrals)
