"""Checks shared by the Idempotency-Key tests of each service (shared/idempotency.py)."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

HEADER = "Idempotency-Key"


def key(value: str) -> dict[str, str]:
    return {HEADER: value}


def replayed(first: httpx.Response, again: httpx.Response) -> bool:
    """`again` is `first`'s answer given back (same status and body), marked as such."""
    return again.headers.get("Idempotent-Replayed") == "true" and (
        again.status_code,
        again.json(),
    ) == (first.status_code, first.json())


async def sent_twice(
    http: httpx.AsyncClient, method: str, url: str, value: str, **request: Any
) -> tuple[httpx.Response, httpx.Response]:
    """The same request sent twice with the Idempotency-Key `value`, as a client retries it."""
    headers = {**request.pop("headers", {}), HEADER: value}
    first = await http.request(method, url, headers=headers, **request)
    again = await http.request(method, url, headers=headers, **request)
    return first, again


async def kept_answers(app: FastAPI) -> list[str]:
    """The answers `app` keeps for retries, as stored."""
    model = app.state.idempotency_model
    async with app.state.sessions() as session:
        return [body for body in await session.scalars(select(model.body)) if body is not None]
