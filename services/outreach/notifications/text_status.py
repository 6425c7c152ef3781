"""Twilio's status callbacks for the texts that tell reps of their tasks.

Each notification text asks Twilio to call back at a URL that names its row
(`.../webhooks/twilio/status?notification=<row id>`); Twilio signs the URL with its query, so
the name is authenticated like the rest of the callback. The notifier records a text sent once
Twilio's answer comes back. When that answer is lost (the process died, or the answer never
came in time), the row stays pending and the next attempt looks for the text in Twilio's
message list, which may not show it yet: a second text. Twilio's callback, which comes seconds
after it took the text, records the row sent with the text's sid instead, and the notifier's
record of an attempt only ever changes a row still pending (shared.relay), so no attempt
follows.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.outreach import models
from services.outreach.webhooks import sms_status

NOTIFICATION_PARAM = "notification"
PENDING, SENT = "pending", "sent"


def callback_url(public_url: str, notification_id: str) -> str:
    """The status callback URL of the text of notification row `notification_id`."""
    return sms_status.callback_url(public_url, notification_id, NOTIFICATION_PARAM)


def named_notification(query: Iterable[tuple[str, str]]) -> str:
    """The notification row a callback URL's (signed) query names, or ''."""
    return sms_status.named_row(query, NOTIFICATION_PARAM)


async def record_text(
    sessions: async_sessionmaker[AsyncSession], notification_id: str, sid: str
) -> None:
    """Twilio has the notification's text: a row still pending is sent, with its sid. Whatever
    the status (a text Twilio then failed to deliver was sent all the same, as the notifier
    counts it). A row already sent keeps its sid: a second sid would be a second text, which
    nothing here can take back."""
    n = models.TaskNotification
    async with sessions() as session:
        await session.execute(
            update(n)
            .where(n.id == notification_id, n.channel == "sms", n.status == PENDING)
            .values(status=SENT, provider_id=sid, sent_at=datetime.now(UTC), next_attempt_at=None)
            .execution_options(synchronize_session=False)
        )
        await session.commit()
