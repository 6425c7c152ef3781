"""Issue 11: what the body cap answers about the Content-Length header. A declared length over
the cap is a 413 that says the limit and what to do; a Content-Length that is not a number is a
400 saying so (it was a 413 claiming the body was too large)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from shared.body_limit import BodyLimit

LIMIT = 1024


async def _reached(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def _answer(length: bytes) -> tuple[int, dict[str, Any]]:

    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": "/prospects",
        "headers": [(b"content-type", b"application/json"), (b"content-length", length)],
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await BodyLimit(_reached, max_bytes=LIMIT)(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body) if body else {}


async def test_a_declared_length_over_the_cap_is_a_413_naming_the_limit() -> None:
    status, body = await _answer(b"99999999999999999999999999")
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"
    assert f"at most {LIMIT} bytes" in body["error"]["message"]
    assert "99999999999999999999999999" in body["error"]["message"]


@pytest.mark.parametrize("length", [b"abc", b"-1", b"1_000", b"+5", b" 12", b"1e3", b""])
async def test_a_content_length_that_is_not_a_number_is_a_400(length: bytes) -> None:
    status, body = await _answer(length)
    assert status == 400
    assert body["error"]["code"] == "invalid_content_length"
    assert "Content-Length" in body["error"]["message"]


async def test_a_length_within_the_cap_reaches_the_app() -> None:
    assert (await _answer(b"2"))[0] == 204
