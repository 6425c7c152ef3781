"""The rep inbox page: /ui/reps/{rep_id}/inbox. Server-rendered, no JavaScript, no build step:
each task shows its context, and an outcome button completes it and comes back here.

Access needs an API key, checked by shared.auth (the one place keys are checked) through the
usual `ApiKey` dependency. A browser cannot send headers, so a signed-out visit gets the key
form, which posts the key to /ui/sign-in (shared/pages.py): it is kept in an HttpOnly,
SameSite=Strict cookie that shared.pages.PageKeyMiddleware hands on as the X-API-Key header.
SameSite=Strict keeps other sites' forms from posting with the cookie. No key in a URL, ever.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.outreach.models import RepTask
from services.outreach.tasks import service as tasks
from services.outreach.tasks.api import complete_and_tell
from services.outreach.tasks.reps import RepDirectory
from shared.auth import ApiKey
from shared.db import Session
from shared.errors import AppError
from shared.pages import Pages

router = APIRouter(tags=["pages"], include_in_schema=False)

SNOOZE_HOURS = (1, 4, 24)
OUTCOME_LABELS = {
    "connected": "Connected",
    "meeting_booked": "Meeting booked",
    "voicemail": "Voicemail",
    "no_answer": "No answer",
    "not_interested": "Not interested",
    "wrong_person": "Wrong person",
    "bad_number": "Bad number",
    "done": "Done",
    "skipped": "Skip",
}
assert set(OUTCOME_LABELS) == set(tasks.OUTCOMES)
_pages = Pages(__file__)
_page = _pages.render


def landing(path: str) -> str:
    """The page a sign-in returns to: the inbox of the rep named in the refused path."""
    return _inbox_path(path.removeprefix("/ui/reps/").split("/", 1)[0])


def _inbox_path(rep_id: str, **params: str) -> str:
    query = f"?{urlencode(params)}" if params else ""
    return f"/ui/reps/{rep_id}/inbox{query}"


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def _card(ranked: tasks.Ranked) -> dict[str, Any]:
    task = ranked.task
    card = task.prospect_card or {}
    return {
        "id": task.id,
        "title": task.title,
        "kind": task.kind.replace("_", " "),
        "body": task.body,
        "due": f"{task.due_at:%Y-%m-%d %H:%M} UTC",
        "priority": ranked.priority,
        "reasons": ranked.reasons,
        "urgent": any(r.code in tasks.URGENT_CODES for r in ranked.reasons),
        "name": card.get("name") or "",
        "job": " at ".join(x for x in (card.get("title") or "", card.get("company") or "") if x),
        "phone": card.get("phone") or "",
        "email": card.get("email") or "",
        "tier": card.get("tier") or "",
        "fit_score": card.get("fit_score"),
        "stage": tasks.current_stage(task),
        "extra": {
            k: v
            for k, v in (task.context or {}).items()
            if k not in ("stage", "phone", "company") and v
        },
    }


@router.get("/ui/reps/{rep_id}/inbox", response_class=HTMLResponse)
async def inbox_page(request: Request, rep_id: str, session: Session, _: ApiKey) -> Response:
    ranked = await tasks.inbox(session, rep_id, datetime.now(UTC))
    return _page(
        "inbox.html",
        rep_id=rep_id,
        rep_name=await _rep_name(request, rep_id),
        tasks=[_card(r) for r in ranked],
        outcomes=OUTCOME_LABELS,
        snooze_hours=SNOOZE_HOURS,
        notice=await _notice(session, rep_id, request.query_params),
        error=request.query_params.get("error", ""),
    )


def _what_was_done(query: Mapping[str, str]) -> str:
    if (outcome := query.get("done", "")) in OUTCOME_LABELS:
        return OUTCOME_LABELS[outcome]
    if (hours := query.get("snoozed", "")) in {str(h) for h in SNOOZE_HOURS}:
        return f"snoozed for {hours} h"
    return ""


async def _notice(session: Session, rep_id: str, query: Mapping[str, str]) -> str:
    """What the rep just did, as "<task title>: <outcome>". The redirect after a click names the
    task by its id and says what was done; the title (a prospect's name: "Call Jane Doe (Acme)")
    is read here, never put in a URL, which browser history and access logs keep."""
    what, task_id = _what_was_done(query), query.get("task", "")
    if not what or not task_id:
        return ""
    task = await session.get(RepTask, task_id)
    return f"{task.title}: {what}" if task is not None and task.rep_id == rep_id else ""


async def _rep_name(request: Request, rep_id: str) -> str:
    """For the heading only: the page still works when prospecting does not answer."""
    directory: RepDirectory = request.app.state.reps
    try:
        return (await directory.rep(rep_id)).name
    except AppError:
        return ""


async def _own_task(session: Session, rep_id: str, task_id: str) -> RepTask:
    task = await tasks.get_task(session, task_id)
    if task.rep_id != rep_id:
        raise AppError(404, "task_not_found", f"task {task_id} is not in rep {rep_id}'s inbox")
    return task


@router.post("/ui/reps/{rep_id}/tasks/{task_id}/complete")
async def complete_from_page(
    request: Request, rep_id: str, task_id: str, session: Session, _: ApiKey
) -> Response:
    form = await request.form()
    outcome, notes = str(form.get("outcome", "")), str(form.get("notes", ""))[:5000]
    try:
        await _own_task(session, rep_id, task_id)
        await complete_and_tell(request, session, task_id, outcome, notes)
    except AppError as err:
        return _redirect(_inbox_path(rep_id, error=err.message))
    return _redirect(_inbox_path(rep_id, task=task_id, done=outcome))


@router.post("/ui/reps/{rep_id}/tasks/{task_id}/snooze")
async def snooze_from_page(
    request: Request, rep_id: str, task_id: str, session: Session, _: ApiKey
) -> Response:
    form = await request.form()
    try:
        hours = int(str(form.get("hours", "")))
        if hours not in SNOOZE_HOURS:
            raise ValueError
    except ValueError:
        return _redirect(_inbox_path(rep_id, error="choose how long to snooze for"))
    try:
        await _own_task(session, rep_id, task_id)
        await tasks.snooze(session, task_id, datetime.now(UTC) + timedelta(hours=hours))
        await session.commit()
    except AppError as err:
        return _redirect(_inbox_path(rep_id, error=err.message))
    return _redirect(_inbox_path(rep_id, task=task_id, snoozed=str(hours)))
