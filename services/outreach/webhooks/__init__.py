"""Provider callbacks, one module per provider, and the public unsubscribe links.

Every webhook: authenticate (nothing is stored for a request that fails), store the event
(unique on the provider's id: a repeat has no second effect), act, commit, answer 2xx, then
tell the journey through the inbox (services.outreach.inbox), which retries until it can.
An empty secret disables a provider's endpoints (404).
"""

from __future__ import annotations

from fastapi import APIRouter

from services.outreach.webhooks import mailgun, postmark, sendgrid, twilio
from services.outreach.webhooks.unsubscribe import public_router

router = APIRouter(prefix="/webhooks", tags=["provider webhooks"])
# an email with its attachments: these two take bodies up to
# CLOSEFLOW_INBOUND_EMAIL_MAX_BODY_BYTES; every other route, CLOSEFLOW_MAX_BODY_BYTES
INBOUND_EMAIL_PATHS = ("/webhooks/mailgun/inbound", "/webhooks/postmark/inbound")
for _provider in (twilio, mailgun, sendgrid, postmark):
    router.include_router(_provider.router)

__all__ = ["INBOUND_EMAIL_PATHS", "public_router", "router"]
