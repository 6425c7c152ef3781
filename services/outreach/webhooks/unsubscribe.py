"""One-click unsubscribe (RFC 8058): public links in every email, no API key."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach import models
from services.outreach.consent import service as consent
from services.outreach.inbox import store_event
from services.outreach.webhooks.common import deliver, stop_cadence
from shared.db import Session
from shared.pages import FORM_PAGE_HEADERS

public_router = APIRouter(tags=["public"])


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title></head>"
        f"<body style='font-family:sans-serif;max-width:32em;margin:3em auto'>"
        f"<h1>{escape(title)}</h1>{body}</body></html>",
        status_code=status,
        # the page shows the recipient's address and its URL carries the token
        headers=FORM_PAGE_HEADERS,
    )


async def _message_for_token(session: AsyncSession, token: str) -> models.Message | None:
    return await session.scalar(
        select(models.Message).where(models.Message.unsubscribe_token == token)
    )


@public_router.get("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe_page(token: str, session: Session) -> HTMLResponse:
    row = await _message_for_token(session, token)
    if row is None:
        return _page("Link not valid", "<p>This unsubscribe link is not valid.</p>", 404)
    return _page(
        "Unsubscribe",
        f"<p>Stop all emails to <b>{escape(row.to_address)}</b>?</p>"
        f"<form method='post'><button type='submit'>Unsubscribe</button></form>",
    )


@public_router.post("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe(token: str, request: Request, session: Session) -> HTMLResponse:
    """Mail clients POST `List-Unsubscribe=One-Click` here; the page's button does the same."""
    row = await _message_for_token(session, token)
    if row is None:
        return _page("Link not valid", "<p>This unsubscribe link is not valid.</p>", 404)
    await consent.opt_out(
        session, "email", row.to_address, "unsubscribe link", prospect_id=row.prospect_id
    )
    stored = await store_event(
        session,
        "closeflow",
        f"unsubscribe:{token}",
        "email_unsubscribe_link",
        {"message_id": row.id, "address": row.to_address},
        prospect_id=row.prospect_id,
        signal=stop_cadence(row.prospect_id, "unsubscribe link"),
    )
    await session.commit()
    await deliver(request, [stored])
    return _page("Unsubscribed", f"<p>{escape(row.to_address)} will receive no more emails.</p>")
