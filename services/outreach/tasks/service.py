"""The rep inbox: which task matters now, and what a rep does with one (complete, snooze,
reassign). Use cases take a session and never commit: the caller owns the transaction.

Ordering rule (highest priority first; ties: earlier due time, then older task). A task's
priority is the sum of these points, each one listed as a reason on the task:

  due time    escalated (still open `escalate_after_seconds` after due)   +500
              overdue                                                      +300
              due within `due_soon_seconds`                                +150
  hot signal  the prospect replied within `hot_reply_seconds`              +250
              a meeting starts within `meeting_soon_seconds`               +250
  stage       later stages first: closing 120, objections 100, presenting 80,
              qualifying 60, won/referrals 40, contacting 20, other 0
  fit         tier A +60, B +40, C +20, D 0 (from the prospect card)

So what is late or hot comes first, whatever its stage, and among tasks equally urgent the
later stage and then the better fit win. Snoozed tasks are hidden until their time.
The meeting of a `prepare_meeting` task starts at context.meeting_starts_at or, without it,
two hours after the task is due (the journey makes it due MEETING_PREP_LEAD before the start).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach import models
from services.outreach.inbox import JourneySignal, Stored, store_event
from services.outreach.person_events import TASK_PROVIDER
from services.outreach.tasks import schemas
from services.outreach.tasks.reps import RepDirectory
from shared.audit import actor_of
from shared.contracts.journey import (
    DECIDED_MEETING_KIND,
    THANK_CLIENT_KIND,
    ReplyReceived,
    RepTaskRequest,
    Stage,
    StageEntered,
    StopCadence,
    task_group,
    task_stage_group,
)
from shared.contracts.names import Sig
from shared.errors import AppError, invalid, not_found
from shared.paging import DEFAULT_LIMIT, Page, page, where_given

log = logging.getLogger(__name__)
# the tasks outreach makes itself for a reply no journey takes (its run ended, or the client's
# was won): the rep's to answer, whatever a run does next
LATE_REPLY_KINDS = ("late_reply", "client_reply")
OPEN, DONE, CLOSED = "open", "done", "closed"  # closed: no longer needed (a moved meeting)
OUTCOMES = get_args(schemas.TaskOutcome)
# the prospect engaged: ends the cadence like a reply and moves the journey to qualifying
ENGAGED_OUTCOMES = frozenset({"connected", "meeting_booked"})
# nobody to sell to on this cadence: stop it (the journey goes to nurture, with the reason)
STOPPING_OUTCOMES = {
    "not_interested": "not interested (rep call)",
    "wrong_person": "wrong person (rep call)",
}
STAGE_POINTS = {
    "closing": 120,
    "objections": 100,
    "presenting": 80,
    "qualifying": 60,
    "won": 40,
    "referrals": 40,
    "contacting": 20,
}
TIER_POINTS = {"A": 60, "B": 40, "C": 20, "D": 0}
ESCALATED_POINTS, OVERDUE_POINTS, DUE_SOON_POINTS, HOT_POINTS = 500, 300, 150, 250
MEETING_PREP_LEAD = timedelta(hours=2)


@dataclass(frozen=True)
class Policy:
    escalate_after_seconds: int = 3600
    hot_reply_seconds: int = 24 * 3600
    meeting_soon_seconds: int = 2 * 3600
    due_soon_seconds: int = 3600


@dataclass(frozen=True)
class Reason:
    code: str
    points: int
    text: str


@dataclass
class Ranked:
    task: models.RepTask
    priority: int
    reasons: list[Reason] = field(default_factory=list)


def utcnow() -> datetime:
    return datetime.now(UTC)


async def task_card(reps: RepDirectory, req: RepTaskRequest) -> dict[str, Any]:
    """The prospect card a new task carries (with `rep_id`: the prospect's rep now). Best
    effort: a journey's task must not wait on prospecting, so without an answer the task is
    made with what the journey knows and says so on the card."""
    try:
        return await reps.prospect_card(req.prospect_id)
    except AppError as err:
        log.warning("task %s made without a prospect card: %s", req.key, err.message)
        return {"unavailable": err.message}


def made_in_stage(task: models.RepTask) -> str:
    """The stage the task was made for (cadence tasks: contacting, where the cadence runs)."""
    stage = (task.context or {}).get("stage")
    if stage:
        return str(stage)
    return "contacting" if task.kind in ("call_task", "social_task") else ""


def current_stage(task: models.RepTask) -> str:
    """The prospect's stage now, as the journey last told outreach (follow_stage), else the
    stage the task was made for."""
    return str((task.prospect_card or {}).get("stage") or made_in_stage(task))


async def follow_stage(session: AsyncSession, entered: StageEntered) -> int:
    """The journey entered a stage: close its open tasks made for a stage group it left (the
    reason in the notes), except the kinds that outlive their stage, and show the stage on the
    prospect's task cards. Idempotent: a retry finds them closed and the cards up to date.
    Returns how many tasks it closed."""
    rows = await session.scalars(
        select(models.RepTask).where(models.RepTask.prospect_id == entered.prospect_id)
    )
    group, now, closed = task_stage_group(entered.stage), utcnow(), 0
    for task in rows.all():
        if (task.prospect_card or {}).get("stage") != entered.stage:
            # a new dict: the JSON column sees the change
            task.prospect_card = {**(task.prospect_card or {}), "stage": entered.stage}
        if task.status != OPEN or task.journey_id != entered.journey_id:
            continue
        made_in = made_in_stage(task)
        if (
            not made_in
            or (task.kind in entered.keep_kinds and not _unwon(task, group))
            # a reply of a prospect never enrolled has their first run's key
            or task.kind in LATE_REPLY_KINDS
            or task_group(task.kind, made_in) == group
        ):
            continue
        _close(task, entered.reason, now)
        closed += 1
    await session.flush()
    return closed


async def close_rebooking_calls(session: AsyncSession, made: models.RepTask) -> int:
    """A new meeting's preparation (`made`): the calls to re-book a missed meeting of the same
    deal are moot, the prospect booked again. How many it closed."""
    meeting, deal = (made.context or {}).get("meeting_id"), (made.context or {}).get("deal_id")
    if made.kind != "prepare_meeting" or not deal:
        return 0
    rows = await session.scalars(
        select(models.RepTask).where(
            models.RepTask.journey_id == made.journey_id,
            models.RepTask.kind == "no_show",
            models.RepTask.status == OPEN,
        )
    )
    now, closed = utcnow(), 0
    for task in rows.all():
        context = task.context or {}
        if context.get("deal_id") == deal and context.get("meeting_id") != meeting:
            _close(task, f"re-booked: meeting {meeting}", now)
            closed += 1
    return closed


def meeting_reminder_prefix(prepare_prefix: str) -> str | None:
    """The key prefix of the rep's in-person reminders of the meeting whose preparation tasks
    `prepare_prefix` names (`<journey>:prepare_meeting:<meeting>`); None for any other prefix."""
    journey, sep, meeting = prepare_prefix.partition(":prepare_meeting:")
    return f"{journey}:remind_meeting:{meeting}" if sep and meeting else None


def _unwon(task: models.RepTask, group: str) -> bool:
    """A new client's thanks, once their deal is reopened (the journey back at the deal): they
    are not a client any more, and a win again does not ask for it again."""
    return task.kind == THANK_CLIENT_KIND and group == task_stage_group(Stage.CLOSING)


async def close_decided_deal_tasks(
    session: AsyncSession, prospect_id: str, deal_id: str, reason: str
) -> int:
    """A deal reopened as a new run: the earlier run's questions about its meetings still
    ahead (keep or cancel, `meeting_after_decision`) are moot, the deal's again, and so is a
    win's thanks of the client. That run has ended, so nobody else closes them. Returns how
    many it closed."""
    rows = await session.scalars(
        select(models.RepTask).where(
            models.RepTask.prospect_id == prospect_id,
            models.RepTask.kind.in_((DECIDED_MEETING_KIND, THANK_CLIENT_KIND)),
            models.RepTask.status == OPEN,
        )
    )
    now, closed = utcnow(), 0
    for task in rows.all():
        about = (task.context or {}).get("deal_id")
        if task.kind == DECIDED_MEETING_KIND and about != deal_id:
            continue
        _close(task, reason, now)
        closed += 1
    await session.flush()
    return closed


def _close(task: models.RepTask, reason: str, now: datetime) -> None:
    """Closed by what the journey did, not by the rep: the reason in its notes."""
    task.status, task.notes, task.completed_at, task.updated_at = CLOSED, reason, now, now


# --- policy -----------------------------------------------------------------------------------


async def get_policy(session: AsyncSession) -> Policy:
    row = await session.get(models.TaskPolicy, 1)
    if row is None:
        return Policy()
    return Policy(
        row.escalate_after_seconds,
        row.hot_reply_seconds,
        row.meeting_soon_seconds,
        row.due_soon_seconds,
    )


async def put_policy(session: AsyncSession, policy: Policy) -> Policy:
    row = await session.get(models.TaskPolicy, 1, with_for_update=True)
    if row is None:
        row = models.TaskPolicy(id=1)
        session.add(row)
    row.escalate_after_seconds = policy.escalate_after_seconds
    row.hot_reply_seconds = policy.hot_reply_seconds
    row.meeting_soon_seconds = policy.meeting_soon_seconds
    row.due_soon_seconds = policy.due_soon_seconds
    row.updated_at = utcnow()
    await session.flush()
    return policy


# --- ranking ----------------------------------------------------------------------------------


def _ago(delta: timedelta) -> str:
    seconds = int(abs(delta.total_seconds()))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 90 * 60:
        return f"{seconds // 60} min"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def meeting_starts_at(task: models.RepTask) -> datetime | None:
    raw = (task.context or {}).get("meeting_starts_at")
    if raw:
        try:
            return datetime.fromisoformat(str(raw))
        except ValueError:
            pass
    if task.kind == "prepare_meeting":
        return task.due_at + MEETING_PREP_LEAD
    return None


def meeting_soon(now: datetime, policy: Policy) -> ColumnElement[bool]:
    """The preparation tasks whose meeting starts within `meeting_soon_seconds` (SQL for
    `meeting_starts_at`'s rule): not one whose meeting has started, which stays open until the
    rep marks the meeting held and is never urgent again."""
    t = models.RepTask
    return (
        (t.kind == "prepare_meeting")
        & (t.due_at >= now - MEETING_PREP_LEAD)
        & (t.due_at <= now + timedelta(seconds=policy.meeting_soon_seconds) - MEETING_PREP_LEAD)
    )


def escalation_deadline(task: models.RepTask, policy: Policy) -> datetime:
    """Open this long after due (or after the snooze the rep chose, if later): escalate."""
    start = max(task.due_at, task.snoozed_until or task.due_at)
    return start + timedelta(seconds=policy.escalate_after_seconds)


def escalation_due(now: datetime, policy: Policy) -> ColumnElement[bool]:
    """The tasks past their `escalation_deadline` at `now` (its SQL): a task snoozed past its
    due time is not one, so a backlog of them never fills the escalation sweep's batch."""
    t = models.RepTask
    cutoff = now - timedelta(seconds=policy.escalate_after_seconds)
    return (t.due_at <= cutoff) & (t.snoozed_until.is_(None) | (t.snoozed_until <= cutoff))


# the reasons that make a task urgent: the hot signals below, and an escalation; the inbox page
# marks such a task, the notifier tells the rep of it
URGENT_CODES = frozenset(
    {"escalated", "fresh_reply", "late_reply", "escalated_to_you", "meeting_soon"}
)


def urgent_signals(
    task: models.RepTask, last_reply_at: datetime | None, now: datetime, policy: Policy
) -> list[Reason]:
    """The hot signals: what makes a task worth interrupting the rep for."""
    reasons = []
    if last_reply_at is not None and now - last_reply_at <= timedelta(
        seconds=policy.hot_reply_seconds
    ):
        reasons.append(
            Reason("fresh_reply", HOT_POINTS, f"replied {_ago(now - last_reply_at)} ago")
        )
    if task.kind in LATE_REPLY_KINDS:
        # a reply no journey takes (it ended, or it was won): only the rep can answer it
        reasons.append(Reason("late_reply", HOT_POINTS, "replied after their journey ended"))
    if task.kind == "escalation":
        # the journey's notice to a manager (a qualification waiting past its reminder)
        reasons.append(Reason("escalated_to_you", HOT_POINTS, "a deal of your team is stuck"))
    starts = meeting_starts_at(task)
    if starts is not None and now <= starts <= now + timedelta(seconds=policy.meeting_soon_seconds):
        reasons.append(
            Reason("meeting_soon", HOT_POINTS, f"meeting starts in {_ago(starts - now)}")
        )
    return reasons


def rank(
    task: models.RepTask, last_reply_at: datetime | None, now: datetime, policy: Policy
) -> Ranked:
    reasons: list[Reason] = []
    if task.escalated_at is not None or now >= escalation_deadline(task, policy):
        reasons.append(
            Reason(
                "escalated", ESCALATED_POINTS, f"overdue by {_ago(now - task.due_at)}, escalated"
            )
        )
    elif now >= task.due_at:
        reasons.append(Reason("overdue", OVERDUE_POINTS, f"overdue by {_ago(now - task.due_at)}"))
    elif task.due_at - now <= timedelta(seconds=policy.due_soon_seconds):
        reasons.append(Reason("due_soon", DUE_SOON_POINTS, f"due in {_ago(task.due_at - now)}"))
    reasons += urgent_signals(task, last_reply_at, now, policy)
    card = task.prospect_card or {}
    # ranked by the stage the task was made for: its urgency is its stage's, not the prospect's
    # (a task of a stage left is closed anyway)
    stage = made_in_stage(task) or card.get("stage") or ""
    if STAGE_POINTS.get(stage):
        reasons.append(Reason("stage", STAGE_POINTS[stage], f"stage {stage}"))
    tier = card.get("tier") or ""
    if TIER_POINTS.get(tier):
        score = card.get("fit_score")
        text = f"fit tier {tier}" + (f" (score {score})" if score is not None else "")
        reasons.append(Reason("fit", TIER_POINTS[tier], text))
    return Ranked(task, sum(r.points for r in reasons), reasons)


async def last_replies(
    session: AsyncSession, prospect_ids: Sequence[str], since: datetime
) -> dict[str, datetime]:
    """The latest reply of each prospect since `since` (replies mark their ledger message)."""
    if not prospect_ids:
        return {}
    m = models.Message
    rows = await session.execute(
        select(m.prospect_id, func.max(m.replied_at))
        .where(m.prospect_id.in_(set(prospect_ids)), m.replied_at >= since)
        .group_by(m.prospect_id)
    )
    return {pid: at for pid, at in rows.all() if at is not None}


async def rank_tasks(
    session: AsyncSession, tasks: Sequence[models.RepTask], now: datetime, policy: Policy
) -> list[Ranked]:
    since = now - timedelta(seconds=policy.hot_reply_seconds)
    replies = await last_replies(session, [t.prospect_id for t in tasks], since)
    ranked = [rank(t, replies.get(t.prospect_id), now, policy) for t in tasks]
    ranked.sort(key=lambda r: (-r.priority, r.task.due_at, r.task.created_at, r.task.id))
    return ranked


# The inbox ranks this many of a rep's open tasks (the earliest due, beyond it): every task of
# any real backlog, so a reply's task due next week takes its rank among a hundred calls due
# before it instead of being left out
MAX_RANKED = 5000


async def inbox(
    session: AsyncSession, rep_id: str, now: datetime, limit: int = 200
) -> list[Ranked]:
    """The rep's open tasks that are not snoozed, most pressing first: the first `limit` of
    them all ranked (not of the earliest due)."""
    t = models.RepTask
    query = (
        select(t)
        .where(
            t.rep_id == rep_id,
            t.status == OPEN,
            (t.snoozed_until.is_(None)) | (t.snoozed_until <= now),
        )
        .order_by(t.due_at, t.created_at)
        .limit(MAX_RANKED)
    )
    tasks = (await session.scalars(query)).all()
    ranked = await rank_tasks(session, tasks, now, await get_policy(session))
    return ranked[:limit]


# --- what a rep does with a task ---------------------------------------------------------------


async def get_task(session: AsyncSession, task_id: str, *, lock: bool = False) -> models.RepTask:
    task = await session.get(models.RepTask, task_id, with_for_update=lock)
    if task is None:
        raise not_found("task", task_id)
    return task


def _require_open(task: models.RepTask) -> None:
    if task.status != OPEN:
        raise AppError(409, "task_already_completed", f"task {task.id} was completed already")


async def complete(
    session: AsyncSession, task_id: str, outcome: str, notes: str
) -> tuple[models.RepTask, Stored | None]:
    """Close the task with its outcome. An outcome that moves the journey stores the journey
    signal in the same transaction (the inbox outbox): deliver `Stored.outbound` after the
    commit; the relay retries it if that fails, so the outcome always reaches the journey."""
    if outcome not in OUTCOMES:
        raise invalid("outcome", f"must be one of {', '.join(OUTCOMES)}")
    task = await get_task(session, task_id, lock=True)
    _require_open(task)
    now = utcnow()
    task.status, task.outcome, task.notes = DONE, outcome, notes
    task.completed_at = task.updated_at = now
    signal: JourneySignal | None = None
    if outcome in ENGAGED_OUTCOMES:
        reply = ReplyReceived(
            channel=task.kind,
            event_id=f"task:{task.id}",
            excerpt=f"{outcome}: {notes}"[:500],
            actor=actor_of(session, ""),  # the rep whose key recorded the outcome
        )
        signal = JourneySignal(task.prospect_id, Sig.REPLY_RECEIVED, reply)
    elif outcome in STOPPING_OUTCOMES:
        stop = StopCadence(STOPPING_OUTCOMES[outcome], actor_of(session, ""))
        signal = JourneySignal(task.prospect_id, Sig.STOP_CADENCE, stop)
    stored = None
    if signal is not None:
        stored = await store_event(
            session,
            TASK_PROVIDER,
            task.id,
            f"task_{outcome}",
            {"task_id": task.id, "outcome": outcome, "notes": notes[:1000]},
            prospect_id=task.prospect_id,
            signal=signal,
        )
    await session.flush()
    return task, stored


async def snooze(session: AsyncSession, task_id: str, until: datetime) -> models.RepTask:
    now = utcnow()
    if until.tzinfo is None:
        raise invalid("until", "give a time zone offset (e.g. 2026-01-05T09:00:00Z)")
    if until <= now:
        raise invalid("until", f"must be in the future (now is {now.isoformat()})")
    task = await get_task(session, task_id, lock=True)
    _require_open(task)
    task.snoozed_until = until.astimezone(UTC)
    task.updated_at = now
    await session.flush()
    return task


async def reassign(session: AsyncSession, task_id: str, rep_id: str) -> models.RepTask:
    """The caller has checked that the rep exists (prospecting knows the reps)."""
    task = await get_task(session, task_id, lock=True)
    _require_open(task)
    if task.rep_id != rep_id:
        task.reassigned_from, task.rep_id = task.rep_id, rep_id
        task.updated_at = utcnow()
    await session.flush()
    return task


async def reassign_prospect(session: AsyncSession, prospect_id: str, rep_id: str) -> list[str]:
    """Move the prospect's open tasks to the rep; the ids moved (none: nothing to do). A task
    bound to its person (a manager's escalation about the prospect) is not the prospect's rep's
    to do: it stays with them."""
    t = models.RepTask
    return await _move_open(
        session, (t.prospect_id == prospect_id) & t.fixed_rep.is_(False), rep_id
    )


async def reassign_rep(session: AsyncSession, from_rep: str, rep_id: str) -> list[str]:
    """Move every open task that sits with `from_rep` (a deactivated rep: their escalations as
    a manager too) to `rep_id`; the ids moved."""
    return await _move_open(session, models.RepTask.rep_id == from_rep, rep_id)


async def _move_open(session: AsyncSession, which: ColumnElement[bool], rep_id: str) -> list[str]:
    t = models.RepTask
    moving = list(
        (
            await session.scalars(
                select(t.id)
                .where(which, t.status == OPEN, t.rep_id.is_distinct_from(rep_id))
                .with_for_update()
            )
        ).all()
    )
    if moving:
        await session.execute(
            update(t)
            .where(t.id.in_(moving), t.status == OPEN)
            .values(reassigned_from=t.rep_id, rep_id=rep_id, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    return moving


def task_view(ranked: Ranked) -> dict[str, Any]:
    """What the API and the page show of a ranked task."""
    task = ranked.task
    return {
        "priority": ranked.priority,
        "reasons": [{"code": r.code, "points": r.points, "text": r.text} for r in ranked.reasons],
        "why_now": "; ".join(r.text for r in ranked.reasons if r.code not in ("stage", "fit"))
        or f"due {task.due_at.isoformat()}",
    }


async def list_tasks(
    session: AsyncSession,
    *,
    rep_id: str | None = None,
    prospect_id: str | None = None,
    status: str | None = None,
    after: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Page[models.RepTask]:
    """Earliest due first, one page (shared.paging)."""
    t = models.RepTask
    filters = (t.rep_id, rep_id), (t.prospect_id, prospect_id), (t.status, status)
    query = where_given(select(t), *filters)
    order = [t.due_at, t.created_at, t.id]
    return await page(session, query, order, after=after, limit=limit, what="task")
