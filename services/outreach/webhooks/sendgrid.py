"""SendGrid Event Webhook: signed batches (JSON arrays) of email events.

Verified with the account's ECDSA verification key over the timestamp header + the raw body;
each event is stored once by its sg_event_id. An event that cannot be understood is kept aside
(rejected_items, with the reason) and the rest of the batch is processed: the answer is 200 so
SendGrid does not resend a batch that can never get better. Inbound Parse is not used.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach.inbox import Stored, reject
from services.outreach.webhooks.common import (
    COMPLAINT,
    DELIVERED,
    HARD_BOUNCE,
    NOTED,
    SOFT_FAILURE,
    UNSUBSCRIBE,
    UnusableEmail,
    deliver,
    inbound_address,
    settings_of,
    store_email_event,
)
from shared.db import Session
from shared.errors import AppError
from shared.providers.sendgrid import (
    EVENTS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    InvalidPublicKey,
    timestamp_problem,
    verify_sendgrid_signature,
)
from shared.requests import InvalidJson, parse_json, without_nul

log = logging.getLogger(__name__)
router = APIRouter(prefix="/sendgrid")

# SendGrid drops a message to an address on its own suppression lists: those reasons say the
# address itself is done with, not just this message.
SUPPRESSING_DROP_REASONS = {
    "Bounced Address": HARD_BOUNCE,
    "Spam Reporting Address": COMPLAINT,
    "Unsubscribed Address": UNSUBSCRIBE,
}


def _meaning(item: dict[str, Any]) -> str:
    event = item["event"]
    if event == "delivered":
        return DELIVERED
    if event == "bounce":
        # type "bounce": the receiving server refused the address for good; "blocked": this
        # message was refused (reputation, content) and SendGrid will not retry it.
        return HARD_BOUNCE if item.get("type", "bounce") == "bounce" else SOFT_FAILURE
    if event == "dropped":
        return SUPPRESSING_DROP_REASONS.get(str(item.get("reason", "")), SOFT_FAILURE)
    if event == "spamreport":
        return COMPLAINT
    if event in ("unsubscribe", "group_unsubscribe"):
        return UNSUBSCRIBE
    return NOTED  # processed, deferred, open, click, group_resubscribe


def _problem(item: Any) -> str | None:
    """Why an item of the batch cannot be processed; None when it can."""
    if not isinstance(item, dict):
        return f"an event must be a JSON object, not {type(item).__name__}"
    for field in ("sg_event_id", "event", "email"):
        if not isinstance(item.get(field), str) or not item[field].strip():
            return f"missing or empty {field!r}"
    if item["event"] not in EVENTS:
        return f"unknown event {item['event']!r}"
    if len(item["sg_event_id"]) > 200:
        return "sg_event_id longer than 200 characters"
    try:
        inbound_address(item["email"], "email")
    except UnusableEmail as err:
        return str(err)
    return None


async def _process(session: AsyncSession, item: dict[str, Any], pepper: str) -> Stored | None:
    detail = str(item.get("reason") or item.get("response") or "")
    stored, row = await store_email_event(
        session,
        "sendgrid",
        item["sg_event_id"],
        item["event"],
        item,
        message_ids=[str(item.get("smtp-id") or "")],
        recipient=inbound_address(item["email"], "email"),
        meaning=_meaning(item),
        provider_status=item["event"],
        pepper=pepper,
        detail=detail,
    )
    # it never left SendGrid; a row still `sending` was not named (a named one is `submitted`
    # by now): the drop may be of an earlier email to the address, and this row's attempt may
    # have died before its call: failing it would make its retry skip an email never sent
    if (
        stored is not None
        and item["event"] == "dropped"
        and row is not None
        and row.status == "submitted"
    ):
        row.status, row.error = "failed", detail[:1000]
    return stored


@router.post("/events", summary="SendGrid Event Webhook (signed, batched)")
async def events(request: Request, session: Session) -> dict[str, int]:
    key = settings_of(request).sendgrid_webhook_public_key.strip()
    if not key:
        raise AppError(404, "webhook_disabled", "the SendGrid webhook is not configured")
    body = await request.body()
    headers = request.headers
    try:
        ok = verify_sendgrid_signature(
            key, headers.get(TIMESTAMP_HEADER), body, headers.get(SIGNATURE_HEADER)
        )
    except InvalidPublicKey as err:
        # 5xx: SendGrid keeps the batch and retries once the key is fixed
        log.error("CLOSEFLOW_SENDGRID_WEBHOOK_PUBLIC_KEY is unusable: %s", err)
        raise AppError(500, "webhook_misconfigured", "the SendGrid key is not usable") from err
    if not ok:
        raise AppError(403, "invalid_signature", f"{SIGNATURE_HEADER} does not match this request")
    settings = settings_of(request)
    stale = timestamp_problem(
        headers.get(TIMESTAMP_HEADER),
        now=time.time(),
        max_age_seconds=settings.sendgrid_max_age_seconds,
        max_ahead_seconds=settings.sendgrid_max_ahead_seconds,
    )
    if stale is not None:  # refused before anything is stored: no replayed suppressions
        raise AppError(403, "timestamp_out_of_window", stale)
    counts = {"processed": 0, "duplicates": 0, "rejected": 0}
    whole_problem: str | None
    try:
        items = without_nul(parse_json(body))  # signature checked on the bytes; NUL unstorable
    except InvalidJson as err:
        items, whole_problem = None, f"body is not JSON: {err}"
    else:
        whole_problem = None if isinstance(items, list) else "body is not a JSON array of events"
    pepper = settings.erasure_pepper.get_secret_value()
    if whole_problem or not isinstance(items, list):
        raw = body.decode("utf-8", "replace")
        await reject(session, "sendgrid", raw, whole_problem or "", pepper)
        counts["rejected"] = 1
        await session.commit()
        return counts
    stored: list[Stored | None] = []
    for index, item in enumerate(items):
        problem = _problem(item)
        if problem is not None:
            await reject(session, "sendgrid", json.dumps(item), f"item {index}: {problem}", pepper)
            counts["rejected"] += 1
            continue
        result = await _process(session, item, pepper)
        counts["processed" if result else "duplicates"] += 1
        stored.append(result)
    await session.commit()
    await deliver(request, stored)
    return counts
