"""The rep inbox page: /ui/reps/{rep_id}/inbox. Server-rendered, no JavaScript, no build step:
each task shows its context, and an outcome button completes it and comes back here.

Access needs an API key, checked by shared.auth (the one place keys are checked) through the
usual `ApiKey` dependency. A browser cannot send headers, so the key may also come as a `key`
query parameter (once: the page moves it into an HttpOnly, SameSite=Strict cookie and drops it
from the address) or that cookie; PageKeyMiddleware hands either on as the X-API-Key header.
SameSite=Strict keeps other sites' forms from posting with the cookie.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.outreach.models import RepTask
from services.outreach.tasks import service as tasks
from services.outreach.tasks.api import complete_and_tell
from services.outreach.tasks.reps import RepDirectory
from shared.auth import API_KEY_HEADER, ApiKey
from shared.db import Session
from shared.errors import AppError
from shared.pages import Pages

router = APIRouter(tags=["pages"], include_in_schema=False)

UI_PREFIX = "/ui/"
KEY_COOKIE = "closeflow_key"
KEY_QUERY = "key"
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


class PageKeyMiddleware:
    """For /ui/ pages: a key in the `key` query parameter or the cookie travels on as the
    X-API-Key header (so shared.auth, the one place keys are checked, sees it like any other),
    and a 401 answer becomes the page that asks for a key."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(UI_PREFIX):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        header = API_KEY_HEADER.lower().encode()
        if not any(name == header for name, _ in scope["headers"]):
            key = request.query_params.get(KEY_QUERY) or request.cookies.get(KEY_COOKIE)
            if key and key.isascii():
                scope = dict(scope, headers=[*scope["headers"], (header, key.encode())])
        asked = False

        async def send_or_ask(message: Message) -> None:
            nonlocal asked
            if message["type"] == "http.response.start" and message["status"] == 401:
                asked = True
                rep_id = scope["path"].removeprefix("/ui/reps/").split("/", 1)[0]
                page = _page("key.html", 401, action=_inbox_path(rep_id))
                await page(scope, receive, send)
                return
            if not asked:
                await send(message)

        await self.app(scope, receive, send_or_ask)


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
        "urgent": any(
            r.code in ("escalated", "fresh_reply", "meeting_soon") for r in ranked.reasons
        ),
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
    if KEY_QUERY in request.query_params:
        # keep the key out of the address bar, history and logs from here on
        params = {k: v for k, v in request.query_params.items() if k != KEY_QUERY}
        response = _redirect(_inbox_path(rep_id, **params))
        response.set_cookie(
            KEY_COOKIE,
            request.query_params[KEY_QUERY],
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/ui",
        )
        return response
    ranked = await tasks.inbox(session, rep_id, datetime.now(UTC))
    return _page(
        "inbox.html",
        rep_id=rep_id,
        rep_name=await _rep_name(request, rep_id),
        tasks=[_card(r) for r in ranked],
        outcomes=OUTCOME_LABELS,
        snooze_hours=SNOOZE_HOURS,
        notice=request.query_params.get("notice", ""),
        error=request.query_params.get("error", ""),
    )


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
        task = await _own_task(session, rep_id, task_id)
        await complete_and_tell(request, session, task_id, outcome, notes)
    except AppError as err:
        return _redirect(_inbox_path(rep_id, error=err.message))
    label = OUTCOME_LABELS.get(outcome, outcome)
    return _redirect(_inbox_path(rep_id, notice=f"{task.title}: {label}"))


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
        task = await _own_task(session, rep_id, task_id)
        await tasks.snooze(session, task_id, datetime.now(UTC) + timedelta(hours=hours))
        await session.commit()
    except AppError as err:
        return _redirect(_inbox_path(rep_id, error=err.message))
    return _redirect(_inbox_path(rep_id, notice=f"{task.title}: snoozed for {hours} h"))
