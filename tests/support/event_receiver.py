"""A subscriber's endpoint for event subscriptions (issue 14): it verifies every delivery with the
`standardwebhooks` library, as a receiver would, and keeps what it accepted. Used in process
(tests/outreach/test_event_subscriptions.py) and against the running dev stack
(tests/stack/test_e2e_stack.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support.ports import free_port
from tests.support.serve import serve


@dataclass
class Receiver:
    """Verifies each delivery with standardwebhooks (401 when no secret does), answers 503 to
    the first `fail` attempts (or 500 to all with `broken`)."""

    secrets: list[str] = field(default_factory=list)
    fail: int = 0
    broken: bool = False
    attempts: list[dict[str, str]] = field(default_factory=list)
    accepted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (webhook-id, body)
    verified_with: list[list[int]] = field(default_factory=list)
    app: FastAPI = field(default_factory=FastAPI)

    def __post_init__(self) -> None:
        @self.app.post("/hook")
        async def hook(request: Request) -> Response:
            body = await request.body()
            headers = dict(request.headers)
            self.attempts.append(headers)
            passed = []
            for i, secret in enumerate(self.secrets):
                try:
                    Webhook(secret).verify(body, headers)
                    passed.append(i)
                except WebhookVerificationError:
                    pass
            if not passed:
                return Response(status_code=401)
            if self.broken:
                return Response(status_code=500)
            if self.fail > 0:
                self.fail -= 1
                return Response(status_code=503)
            self.verified_with.append(passed)
            self.accepted.append((headers["webhook-id"], json.loads(body)))
            return Response(status_code=204)

    def ids(self) -> list[str]:
        return [i for i, _ in self.accepted]

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        """The `data` of the accepted events of `event_type`, in arrival order."""
        return [b["data"] for _, b in self.accepted if b["type"] == event_type]


@contextlib.asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[str]:
    """The receiver served on a free local port: yields its URL."""
    async with serve(receiver.app, free_port()) as base:
        yield f"{base}/hook"


# a 2xx whose body never ends, and an answer whose headers never end
ENDLESS_BODY = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n"
ENDLESS_HEADERS = b"HTTP/1.1 200 OK\r\nX-Slow: "


@contextlib.asynccontextmanager
async def trickling(head: bytes) -> AsyncIterator[str]:
    """A receiver that reads each request's headers, answers `head`, then one more byte every
    50 ms for as long as the client listens: each read gets something well within any read
    timeout, so only a bound on the whole exchange ends it. Yields its URL."""
    writers: list[asyncio.StreamWriter] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(head)
            while True:
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0.05)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up: what a bounded client does
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()
