"""Issue 11: one request-body cap on every service, enforced while the body is read, before
parsing, before the API key is checked and before a webhook's signature is computed. The probes
go over real HTTP (uvicorn) anonymously, and count the bytes the app was handed: a refused body
must not have been buffered."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from shared.providers.postmark import basic_auth_header
from tests.support.apps import ServiceApp
from tests.support.ports import free_port
from tests.support.serve import HTTP_TIMEOUT, serve
from tests.support.settings import POSTMARK_PASSWORD, POSTMARK_USER

LIMIT = 64 * 1024
HUGE = 50 * 1024 * 1024
CHUNK = 64 * 1024
SERVICES = ("prospecting", "outreach", "deals", "referrals")


class CountingApp:
    """Outside the whole app: counts the body bytes the server handed it."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.received = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


def served(app: CountingApp) -> contextlib.AbstractAsyncContextManager[str]:
    # the app's lifespan already runs (service_app started it): the server must not run it again
    return serve(app, free_port(), lifespan=False)


async def _huge() -> AsyncIterator[bytes]:
    block = b"x" * CHUNK
    for _ in range(HUGE // CHUNK):
        yield block


async def _post_chunked(
    url: str, content_type: str = "application/json", headers: dict[str, str] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        sent = {"content-type": content_type, **(headers or {})}
        return await client.post(url, content=_huge(), headers=sent)


async def _declare_huge(base: str, path: str) -> tuple[int, dict[str, object]]:
    """Send only the head of a request declaring 50 MB and read the answer: a server that
    waited for the body would never answer (the test would time out)."""
    port = int(base.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {HUGE}\r\n\r\n"
    )
    writer.write(head.encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), timeout=30)  # the server closes after answering
    writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(body)


def _is_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize("service", SERVICES)
async def test_a_declared_body_over_the_limit_is_refused_unread(
    service_app: ServiceApp, service: str
) -> None:
    app = CountingApp(await service_app(service, max_body_bytes=LIMIT))
    async with served(app) as base:
        status, body = await _declare_huge(base, "/prospects")
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"  # type: ignore[index]
    assert app.received == 0


async def test_a_chunked_50_mb_body_is_cut_at_the_limit_before_the_key_is_checked(
    service_app: ServiceApp,
) -> None:
    app = CountingApp(await service_app("prospecting", max_body_bytes=LIMIT))
    async with served(app) as base:
        _is_too_large(await _post_chunked(f"{base}/prospects"))
        # a small anonymous body still meets the key check: the cap is about size only
        small = await httpx.AsyncClient(timeout=HTTP_TIMEOUT).post(
            f"{base}/prospects", json={"first_name": "Ada"}
        )
        assert small.status_code == 401
    # what the app was handed: the limit and at most what the server read ahead, not 50 MB
    assert LIMIT < app.received <= LIMIT + 4 * CHUNK


async def test_a_webhook_body_is_capped_before_its_signature_is_computed(
    service_app: ServiceApp,
) -> None:
    app = CountingApp(await service_app("outreach", max_body_bytes=LIMIT))
    async with served(app) as base:
        url = f"{base}/webhooks/mailgun/events"
        _is_too_large(await _post_chunked(url, "application/json"))
    assert app.received <= LIMIT + 4 * CHUNK


@pytest.mark.parametrize("path", ["/webhooks/mailgun/inbound", "/webhooks/postmark/inbound"])
async def test_the_inbound_email_routes_have_a_larger_cap_of_their_own(
    service_app: ServiceApp, path: str
) -> None:
    """An email with its attachments is larger than what the other routes take: the inbound
    routes read up to CLOSEFLOW_INBOUND_EMAIL_MAX_BODY_BYTES, and no more. (Mailgun's signature
    is inside the body: read before it is checked. Postmark's credentials are checked first.)"""
    inbound = 4 * LIMIT
    credentials = {"postmark_webhook_user": POSTMARK_USER}
    credentials["postmark_webhook_password"] = POSTMARK_PASSWORD
    app = CountingApp(
        await service_app(
            "outreach", max_body_bytes=LIMIT, inbound_email_max_body_bytes=inbound, **credentials
        )
    )
    auth = basic_auth_header(POSTMARK_USER, POSTMARK_PASSWORD)
    async with served(app) as base:
        status, _ = await _declare_huge(base, path)
        assert status == 413
        assert app.received == 0
        url = f"{base}{path}"
        _is_too_large(await _post_chunked(url, "application/x-www-form-urlencoded", auth))
    assert inbound < app.received <= inbound + 4 * CHUNK
