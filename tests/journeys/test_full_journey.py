"""Two prospects through the whole journey, in one process but on real parts: the four services
served over HTTP, the real workers and workflows on the Temporal dev server, SMTP (aiosmtpd),
the Twilio sandbox; on SQLite and on PostgreSQL."""

from __future__ import annotations

from tests.support.scenarios import drive_to_qualification_timeout, drive_to_referral
from tests.support.stack import ON_BOTH_DATABASES, StackDriver


@ON_BOTH_DATABASES
async def test_two_prospects_through_the_whole_journey(stack: StackDriver) -> None:
    await drive_to_referral(stack.u)
    await drive_to_qualification_timeout(stack.u)
