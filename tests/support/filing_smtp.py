"""An SMTP server that files what it accepts, as Gmail files it in the account's Sent folder,
and answers the end of the first message late.

The window it opens: the server has the message (kept, filed), and the client has no answer
yet. A client that stops waiting, or a process stopped meanwhile, leaves its record of the
send unwritten, as a crash right after the server's acceptance does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from email import message_from_bytes, policy
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.ports import free_port


class FilingHandler:
    def __init__(self, file: Callable[[bytes], Awaitable[None]], first_answer_after: float) -> None:
        self.file = file
        self.first_answer_after = first_answer_after
        self.accepted: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        self.accepted.append(raw)
        await self.file(raw)
        if len(self.accepted) == 1:
            await asyncio.sleep(self.first_answer_after)
        return "250 Message accepted for delivery"

    def message_ids(self) -> list[str]:
        """The Message-ID of each message accepted, in order (unfolded)."""
        parsed = [message_from_bytes(raw, policy=policy.default) for raw in self.accepted]
        return [str(m["Message-ID"]).strip() for m in parsed]


@contextlib.asynccontextmanager
async def filing_smtp(
    file: Callable[[bytes], Awaitable[None]], first_answer_after: float
) -> AsyncIterator[tuple[int, FilingHandler]]:
    """The server's port and its handler (what it accepted). `file` runs in the server's own
    event loop (a thread of its own) for each message, before the answer."""
    handler = FilingHandler(file, first_answer_after)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    await asyncio.to_thread(controller.start)
    try:
        yield port, handler
    finally:
        await asyncio.to_thread(controller.stop)
