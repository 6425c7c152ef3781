"""GET /mailbox: the reply mailbox's state, for operators (never its password)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select

from services.outreach import models
from services.outreach.mailbox.watcher import MailboxWatcher
from shared.auth import require_api_key
from shared.db import Session

router = APIRouter(dependencies=[Depends(require_api_key)], tags=["replies"])


@router.get("/mailbox")
async def mailbox_state(request: Request, session: Session) -> dict[str, Any]:
    """Whether a reply mailbox is watched (CLOSEFLOW_IMAP_HOST), how far it was read, which
    replica watches it, and what this replica's watcher is doing."""
    watcher: MailboxWatcher | None = request.app.state.mailbox
    if watcher is None:
        return {"configured": False}
    row = await session.scalar(
        select(models.ImapMailbox).where(models.ImapMailbox.mailbox == watcher.key)
    )
    return {
        "configured": True,
        "mailbox": watcher.key,
        "uidvalidity": row.uidvalidity if row else None,
        "last_uid": row.last_uid if row else 0,
        "processed": row.processed if row else 0,
        "watched_by": row.lease_owner if row else "",
        "lease_until": row.lease_until if row else None,
        "this_replica": {
            "owner": watcher.owner,
            "mode": watcher.mode,
            "errors": watcher.errors,
            "last_error": watcher.last_error,
        },
    }
