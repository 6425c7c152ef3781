"""A rep's notification is recorded sent as soon as its provider tells of it.

The notifier records a notification sent once the provider's answer comes back. When that
answer is lost (the process died, or it did not come in time), the row stays pending and its
retry would send again. The provider tells of the message on another path meanwhile: Twilio's
status callback for a text (its URL names the row: text_status.py), and any event of the
email provider's webhooks that names the email's Message-ID, `<notification-<row id>@domain>`
(Mailgun, SendGrid, and Postmark through the metadata header it returns). Either records a row
still pending sent, and the notifier's record of an attempt only ever changes a pending row
(shared.relay), so no attempt follows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach import models
from shared.providers.mailgun import strip_angle_brackets

PENDING, SENT = "pending", "sent"
_LOCAL_PART = re.compile(r"notification-([0-9a-f]{32})")  # shared.db.new_id's ids


def message_id(notification_id: str, domain: str) -> str:
    """The Message-ID of the notification's email: the same on every attempt, so a re-send
    after a crash is one message, and an event about it names the row."""
    return f"<notification-{notification_id}@{domain}>"


def named_by(message_ids: Iterable[str]) -> tuple[str, str]:
    """The notification row an email event's Message-IDs name and that Message-ID (with its
    angle brackets, as the row keeps it), or two empty strings."""
    for ref in message_ids:
        bare = strip_angle_brackets(ref)
        local, at, _ = bare.partition("@")
        found = _LOCAL_PART.fullmatch(local)
        if found and at:
            return found.group(1), f"<{bare}>"
    return "", ""


async def record_sent(
    session: AsyncSession, notification_id: str, channel: str, provider_id: str
) -> None:
    """The provider has the notification: a row still pending is sent, with the provider's id
    for it. Whatever the provider said next (a text it failed to deliver, an email that
    bounced, was sent all the same, as the notifier counts it). A row already sent keeps its
    id: a second one would be a second message, which nothing here can take back."""
    n = models.TaskNotification
    await session.execute(
        update(n)
        .where(n.id == notification_id, n.channel == channel, n.status == PENDING)
        .values(
            status=SENT, provider_id=provider_id, sent_at=datetime.now(UTC), next_attempt_at=None
        )
        .execution_options(synchronize_session=False)
    )
