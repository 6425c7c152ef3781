"""Rep tasks over HTTP: the ranked inbox, complete / snooze / reassign, ops' inbox policy and
each rep's notification preferences (tasks/service.py and notifications/notifier.py do the work)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from services.outreach import models
from services.outreach.inbox import InboxRelay
from services.outreach.notifications import notifier as notifications
from services.outreach.notifications.webhook_targets import check_webhook_url
from services.outreach.tasks import schemas
from services.outreach.tasks import service as tasks
from services.outreach.tasks.reps import RepDirectory, RepInfo
from shared.access import OwnRows
from shared.auth import require_api_key
from shared.db import Session
from shared.errors import AppError, invalid, not_found
from shared.ids import IdFilter
from shared.paging import DEFAULT_LIMIT, After, Limit, Linked

router = APIRouter(dependencies=[Depends(require_api_key)], tags=["rep tasks"])
# closed: a task the journey closed (its stage left) or a rep's move made moot
StatusFilter = Annotated[str | None, Query(pattern="^(open|done|closed)$", max_length=6)]


def _inbox_task(ranked: tasks.Ranked) -> schemas.InboxTask:
    base = schemas.RepTask.model_validate(ranked.task).model_dump()
    return schemas.InboxTask(**base, **tasks.task_view(ranked))


async def _known_rep(request: Request, rep_id: str) -> RepInfo:
    """404 for a rep prospecting does not know (503 when it does not answer)."""
    directory: RepDirectory = request.app.state.reps
    return await directory.rep(rep_id)


async def _active_rep(request: Request, rep_id: str) -> None:
    """A rep who may take a task by hand: 422 for an inactive one, whose inbox nobody opens.
    (The moves prospecting orders are not checked again: it chose the rep.)"""
    if not (await _known_rep(request, rep_id)).active:
        raise invalid("rep_id", f"rep {rep_id} is inactive: activate them first")


@router.get("/reps/{rep_id}/inbox", response_model=list[schemas.InboxTask])
async def rep_inbox(
    rep_id: str, session: Session, limit: Annotated[int, Query(ge=1, le=500)] = 200
) -> list[schemas.InboxTask]:
    """The rep's open, not snoozed tasks, most pressing first, each with its priority and the
    reasons for it (the rule: services/outreach/tasks/service.py, docs/guides/rep-inbox.md)."""
    ranked = await tasks.inbox(session, rep_id, datetime.now(UTC), limit)
    return [_inbox_task(r) for r in ranked]


@router.get("/reps/{rep_id}/tasks", response_model=list[schemas.RepTask])
async def rep_tasks(
    rep_id: str,
    session: Session,
    link: Linked,
    status: StatusFilter = "open",
    limit: Limit = DEFAULT_LIMIT,
    after: After = None,
) -> list[models.RepTask]:
    """Earliest due first, `limit` per page; the Link header's `after` for the next page."""
    return link(
        await tasks.list_tasks(session, rep_id=rep_id, status=status, after=after, limit=limit)
    )


@router.get("/tasks", response_model=list[schemas.RepTask])
async def list_tasks(
    session: Session,
    link: Linked,
    own: OwnRows,
    prospect_id: IdFilter = None,
    status: StatusFilter = None,
    limit: Limit = DEFAULT_LIMIT,
    after: After = None,
) -> list[models.RepTask]:
    """Earliest due first, `limit` per page; the Link header's `after` for the next page."""
    return link(
        await tasks.list_tasks(
            session, rep_id=own, prospect_id=prospect_id, status=status, after=after, limit=limit
        )
    )


@router.get("/tasks/{task_id}", response_model=schemas.InboxTask)
async def get_task(task_id: str, session: Session) -> schemas.InboxTask:
    task = await tasks.get_task(session, task_id)
    policy = await tasks.get_policy(session)
    ranked = await tasks.rank_tasks(session, [task], datetime.now(UTC), policy)
    return _inbox_task(ranked[0])


async def complete_and_tell(
    request: Request, session: Session, task_id: str, outcome: str, notes: str
) -> models.RepTask:
    """Complete, commit, then tell the journey at once; the relay retries if that fails."""
    task, stored = await tasks.complete(session, task_id, outcome, notes)
    await session.commit()
    if stored is not None and stored.outbound is not None:
        relay: InboxRelay = request.app.state.inbox
        await relay.deliver_now([stored.outbound])
    return task


@router.post("/tasks/{task_id}/complete", response_model=schemas.RepTask)
async def complete_task(
    task_id: str, body: schemas.TaskCompletion, request: Request, session: Session
) -> models.RepTask:
    """connected / meeting_booked end the cadence like a reply (the journey moves to
    qualifying); not_interested / wrong_person stop the cadence with that reason (nurture)."""
    return await complete_and_tell(request, session, task_id, body.outcome, body.notes)


@router.post("/tasks/{task_id}/snooze", response_model=schemas.RepTask)
async def snooze_task(task_id: str, body: schemas.TaskSnooze, session: Session) -> models.RepTask:
    """Hidden from the inbox until `until` (422 for a time not in the future)."""
    task = await tasks.snooze(session, task_id, body.until)
    await session.commit()
    return task


@router.post("/tasks/{task_id}/reassign", response_model=schemas.RepTask)
async def reassign_task(
    task_id: str, body: schemas.TaskReassign, request: Request, session: Session
) -> models.RepTask:
    """To another rep that prospecting knows (404 rep_not_found otherwise)."""
    await tasks.get_task(session, task_id)  # 404 for the task before asking about the rep
    await _active_rep(request, body.rep_id)
    task = await tasks.reassign(session, task_id, body.rep_id)
    await session.commit()
    request.app.state.notifier.wake()  # an urgent task is the new rep's to hear about
    return task


@router.post("/prospects/{prospect_id}/tasks/reassign", response_model=schemas.TasksReassigned)
async def reassign_prospect_tasks(
    prospect_id: str, body: schemas.TaskReassign, request: Request, session: Session
) -> schemas.TasksReassigned:
    """Every OPEN task of the prospect moves to the rep (called when the prospect is
    reassigned), except those bound to their person (`fixed_rep`: a manager's escalation);
    done tasks stay with whoever did them. Repeating it moves nothing."""
    await _known_rep(request, body.rep_id)
    moved = await tasks.reassign_prospect(session, prospect_id, body.rep_id)
    await session.commit()
    request.app.state.notifier.wake()
    return schemas.TasksReassigned(prospect_id=prospect_id, rep_id=body.rep_id, moved=moved)


@router.post(
    "/internal/reps/{rep_id}/tasks/reassign",
    response_model=schemas.RepTasksReassigned,
    tags=["tasks"],
)
async def reassign_rep_tasks(
    rep_id: str, body: schemas.RepTasksMove, request: Request, session: Session
) -> schemas.RepTasksReassigned:
    """Every OPEN task that sits with a deactivated rep (their escalations as a manager too)
    moves to `rep_id`, their manager (prospecting's outbox). Repeating it moves nothing."""
    await _known_rep(request, body.rep_id)
    moved = await tasks.reassign_rep(session, rep_id, body.rep_id)
    await session.commit()
    request.app.state.notifier.wake()
    return schemas.RepTasksReassigned(from_rep_id=rep_id, rep_id=body.rep_id, moved=moved)


@router.get("/tasks/{task_id}/notifications", response_model=list[schemas.TaskNotification])
async def task_notifications(task_id: str, session: Session) -> list[models.TaskNotification]:
    await tasks.get_task(session, task_id)
    return list(await notifications.list_for_task(session, task_id))


# --- ops: the inbox policy ----------------------------------------------------------------------


@router.get("/task-policy", response_model=schemas.TaskPolicy)
async def get_task_policy(session: Session) -> schemas.TaskPolicy:
    return schemas.TaskPolicy(**vars(await tasks.get_policy(session)))


@router.put("/task-policy", response_model=schemas.TaskPolicy)
async def put_task_policy(
    body: schemas.TaskPolicy, request: Request, session: Session
) -> schemas.TaskPolicy:
    """Escalation delay, what counts as a fresh reply, a meeting soon, a task due soon."""
    await tasks.put_policy(session, tasks.Policy(**body.model_dump()))
    await session.commit()
    request.app.state.notifier.wake()
    return body


# --- a rep's notification preferences ------------------------------------------------------------


def _prefs_out(row: models.RepNotificationPrefs) -> schemas.NotificationPrefs:
    return schemas.NotificationPrefs(
        rep_id=row.rep_id,
        channel=row.channel,
        email=row.email,
        phone=row.phone,
        webhook_url=row.webhook_url,
        has_webhook_secret=bool(row.webhook_secret),
        escalate_to=row.escalate_to,
        updated_at=row.updated_at,
    )


@router.get("/reps/{rep_id}/notifications", response_model=schemas.NotificationPrefs)
async def get_notification_prefs(rep_id: str, session: Session) -> schemas.NotificationPrefs:
    row = await notifications.get_prefs(session, rep_id)
    if row is None:
        raise not_found("notification_preferences", rep_id)
    return _prefs_out(row)


@router.put("/reps/{rep_id}/notifications", response_model=schemas.NotificationPrefs)
async def put_notification_prefs(
    rep_id: str, body: schemas.NotificationPrefsIn, request: Request, session: Session
) -> schemas.NotificationPrefs:
    """How the rep hears about urgent tasks: email or SMS (or none) and, with a URL and a
    secret, a signed Slack-compatible webhook. `escalate_to`: who hears about their overdue
    tasks instead of their manager in prospecting (a deputy, or someone when there is no
    manager; 404 for a rep prospecting does not know)."""
    if body.escalate_to == rep_id:
        raise invalid("escalate_to", "a rep cannot escalate to themselves")
    if body.webhook_url:
        check_webhook_url(body.webhook_url, request.app.state.settings)
    principal = getattr(request.state, "principal", None)
    if principal is not None and principal.role == "rep":
        # Who hears about a rep's overdue work is a manager's setting, not the rep's.
        current = await notifications.get_prefs(session, rep_id)
        kept = current.escalate_to if current is not None else None
        if body.escalate_to not in (None, kept):
            raise AppError(403, "forbidden_for_role", "only ops or admin keys set escalate_to")
        body = body.model_copy(update={"escalate_to": kept})
    await _known_rep(request, rep_id)
    if body.escalate_to:
        await _known_rep(request, body.escalate_to)
    row = await notifications.put_prefs(session, rep_id, body.model_dump())
    await session.commit()
    return _prefs_out(row)
