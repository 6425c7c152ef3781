"""Two prospects through the whole journey, in one process but on real parts: the four services
served over HTTP, the real workers and workflows on the Temporal dev server, SMTP (aiosmtpd),
the Twilio sandbox; on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from tests.support.scenarios import drive_to_qualification_timeout, drive_to_referral
from tests.support.stack import whole_stack


async def test_two_prospects_through_the_whole_journey(
    tmp_path: Path,
    database_urls: dict[str, str],
    temporal_local: WorkflowEnvironment,
    queue_prefix: str,
) -> None:
    async with whole_stack(tmp_path, database_urls, temporal_local, queue_prefix) as urls:
        await drive_to_referral(urls)
        await drive_to_qualification_timeout(urls)
