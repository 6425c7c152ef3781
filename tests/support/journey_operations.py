"""What the bulk journey operation tests share: a small cadence, and how they see an operation
through (its answer bounded by the request, its status polled until the relay told them all)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.eventually import eventually
from tests.support.settings import AUTH

INLINE = 2  # told by the request itself; the relay tells the rest
CADENCE: dict[str, Any] = {
    "name": "Two steps",
    "steps": [
        {"channel": "email", "offset_seconds": 0, "subject": "Hi", "body": "Hi"},
        {"channel": "sms", "offset_seconds": 0, "body": "Hi"},
    ],
}


async def new_cadence(http: httpx.AsyncClient) -> str:
    made = await http.post("/cadences", json=CADENCE, headers=AUTH)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def operation_done(http: httpx.AsyncClient, r: httpx.Response, journeys: int) -> Any:
    """The operation `r` answered (202, a bounded few told by the request itself), once its
    status says every one of its `journeys` was told: (the answer, the final status)."""
    assert r.status_code == 202, r.text
    answer = r.json()
    assert answer["journeys"] == journeys
    told = [*answer["signalled"], *answer["skipped"]]
    assert len(told) <= INLINE  # the request itself signals a bounded few
    assert len(told) + answer["pending"] == journeys
    status = f"/journey-operations/{answer['operation_id']}"

    async def finished() -> dict[str, Any] | None:
        body = (await http.get(status, headers=AUTH)).json()
        return body if body["done"] else None

    return answer, await eventually(finished, "every journey of the operation told")
