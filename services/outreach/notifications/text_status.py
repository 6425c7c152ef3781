"""Twilio's status callbacks for the texts that tell reps of their tasks.

Each notification text asks Twilio to call back at a URL that names its row
(`.../webhooks/twilio/status?notification=<row id>`); Twilio signs the URL with its query, so
the name is authenticated like the rest of the callback. The callback, which comes seconds
after Twilio took the text, records the row sent with the text's sid (provider_told.py), so a
text whose answer from Twilio was lost is not sent again while Twilio's message list does not
show it yet.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.outreach.notifications.provider_told import record_sent
from services.outreach.webhooks import sms_status

NOTIFICATION_PARAM = "notification"


def callback_url(public_url: str, notification_id: str) -> str:
    """The status callback URL of the text of notification row `notification_id`."""
    return sms_status.callback_url(public_url, notification_id, NOTIFICATION_PARAM)


def named_notification(query: Iterable[tuple[str, str]]) -> str:
    """The notification row a callback URL's (signed) query names, or ''."""
    return sms_status.named_row(query, NOTIFICATION_PARAM)


async def record_text(
    sessions: async_sessionmaker[AsyncSession], notification_id: str, sid: str
) -> None:
    """Twilio has the notification's text: recorded sent with its sid, if still pending."""
    async with sessions() as session:
        await record_sent(session, notification_id, "sms", sid)
        await session.commit()
