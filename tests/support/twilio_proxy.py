"""Twilio's API behind a proxy that shows what a client cannot rule out: a message list that
lags behind the messages Twilio accepted, and a slow or missing answer to a send."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from tests.support.serve import HTTP_TIMEOUT


def lagging_twilio(
    upstream: str, lag: timedelta, first_send_after: float = 0.0, first_answer_after: float = 0.0
) -> FastAPI:
    """Twilio's API as a client sees it when the message list lags behind accepted messages:
    everything passes through, except that list pages leave out messages created in the last
    `lag`. Nothing in Twilio's documentation promises that a message is listed as soon as the
    create call returns; this is the case the reconciliation cannot cover. The first message
    created is held `first_send_after` seconds before it goes on (a slow answer), and its answer
    `first_answer_after` seconds once Twilio took it (an answer that never comes in time)."""
    app = FastAPI()
    held: list[str] = []

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def forward(path: str, request: Request) -> Response:
        first = request.method == "POST" and path.endswith("/Messages.json") and not held
        if first:
            held.append(path)
            await asyncio.sleep(first_send_after)
        headers = {
            k: v for k, v in request.headers.items() if k in ("authorization", "content-type")
        }
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, base_url=upstream) as http:
            up = await http.request(
                request.method,
                f"/{path}",
                params=request.query_params,
                content=await request.body(),
                headers=headers,
            )
        if first:
            await asyncio.sleep(first_answer_after)
        if request.method == "GET" and path.endswith("/Messages.json") and up.is_success:
            page = up.json()
            cutoff = datetime.now(UTC) - lag
            page["messages"] = [
                m for m in page["messages"] if parsedate_to_datetime(m["date_created"]) < cutoff
            ]
            return JSONResponse(page)
        return Response(
            up.content, status_code=up.status_code, media_type=up.headers.get("content-type")
        )

    return app
