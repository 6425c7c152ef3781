"""Late replies are never lost (issue 10): what an inbox event becomes when no journey runs.

The inbox relay (services.outreach.inbox) finds no running journey for an event's signal
(the journey ended, or never started). It hands the event here, and the event's `outcome`
says what became of it, visible through GET /inbox-events:
- a reply from a person whose journey ended (nurture, lost, disqualified): an urgent rep task
  with the reply's text (`late_reply_task`), which the notifier tells the rep about at once;
  with the cadence's `late_reply: restart_at_qualifying` a new journey run starts at
  qualifying too (`restarted`), unless the person is on the do-not-contact list or opted out of
  every channel we reach them on (a reply is no opt-in: the task only, its detail says why);
- a reply from a won client: the same urgent task, no new journey (`won_client_task`);
- any other signal (a stop, an opt-out for an ended journey): `journey_ended`, nothing to do;
- an event no prospect matches: `unknown_sender`, set when it is stored.
Idempotent: the task's key is the event's, and a restart is planned only while the run the
reply came after is still the prospect's current one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach import models
from services.outreach.cadences import runs, service
from services.outreach.cadences.enrollment import start_journey
from services.outreach.events import service as events
from services.outreach.inbox import NONE, RECORDED, Outbound
from services.outreach.prospects import ProspectDirectory
from shared.auth import require_api_key
from shared.contracts.journey import Contact, Stage, journey_id
from shared.contracts.names import Sig
from shared.db import Session, new_id
from shared.errors import AppError
from shared.ids import IdFilter, fitted_key
from shared.paging import AfterNumber, Linked, Page, page, where_given

log = logging.getLogger(__name__)

LATE_REPLY_TASK, RESTARTED, WON_CLIENT_TASK = "late_reply_task", "restarted", "won_client_task"
JOURNEY_ENDED, UNKNOWN_SENDER, NOT_ENROLLED = "journey_ended", "unknown_sender", "not_enrolled"


@dataclass(frozen=True)
class LateReply:
    """Word from a person whose journey is not running: a reply, or a booking through a link of
    a journey that ended (services.outreach.late_bookings)."""

    prospect_id: str
    channel: str  # e.g. "email", "sms", "booking link"
    text: str
    key: str  # what makes its task once: the provider's event, the booking's slot


class LateEvents:
    """The inbox relay's handler of events whose journey is not running (app.state.late)."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app

    async def __call__(self, item: Outbound) -> dict[str, Any]:
        try:
            return await self._handle(item)
        except AppError as err:
            if err.status >= 500:
                raise  # prospecting or Temporal away: the relay tries the event again
            return {"outcome": JOURNEY_ENDED, "outcome_detail": f"{err.code}: {err}"[:2000]}

    async def _handle(self, item: Outbound) -> dict[str, Any]:
        if item.signal_name != Sig.REPLY_RECEIVED:
            return {"outcome": JOURNEY_ENDED, "outcome_detail": "no running journey to tell"}
        payload = item.signal_payload or {}
        channel, text = str(payload.get("channel", "")), str(payload.get("excerpt", ""))
        late = LateReply(
            item.workflow_id.removeprefix("journey-"),
            channel,
            text,
            f"{item.provider}:{item.event_id}",
        )
        outcome, _ = await self.reply(late)
        return outcome

    async def foresee(self, prospect_id: str) -> str:
        """What a late reply of the prospect would become now, by the same rules as `reply`,
        without making any of it (no task, no run, prospecting only read): its `outcome`."""
        row, ended = await self._ended_run(prospect_id)
        outcome = await self._policy(row, ended)
        if outcome != RESTARTED:
            return outcome
        contact, _ = await self._contact(prospect_id, row, comeback=False)
        return LATE_REPLY_TASK if await self._refusal(prospect_id, contact) else RESTARTED

    async def reply(self, late: LateReply) -> tuple[dict[str, Any], int | None]:
        """The rep's task, and a new run at qualifying when the cadence says so: the event's
        `outcome` and `outcome_detail`, and the run restarted (or found running: a repeat)."""
        prospect_id, channel, text = late.prospect_id, late.channel, late.text
        row, ended = await self._ended_run(prospect_id)
        contact, known = await self._contact(prospect_id, row)
        won = ended == Stage.WON
        kind = "client_reply" if won else "late_reply"
        who = f"{contact.first_name} {contact.last_name}".strip() or f"Prospect {prospect_id}"
        title = (
            f"{who} (a client) replied by {channel}"
            if won
            else f"{who} replied by {channel} after their journey ended"
        )
        body = f'They wrote: "{text}"\n' + (
            "Their journey ended as a win: answer them yourself."
            if won
            else f"Their journey ended ({ended or 'not enrolled'})."
        )
        await self._task(late, kind, title, body, contact, row)
        outcome = await self._policy(row, ended)
        if outcome == NOT_ENROLLED:
            return {
                "outcome": outcome,
                "outcome_detail": f"{title}: task made, never enrolled",
            }, None
        if outcome != RESTARTED or row is None:
            return {"outcome": outcome, "outcome_detail": title}, None
        if not known:
            # the task is made; the new run needs the prospect as prospecting knows them
            raise AppError(503, "prospecting_unreachable", "late reply: restart waits")
        why = await self._refusal(prospect_id, contact)
        if why is not None:
            # a reply is no opt-in: the rep has the task and decides; no run starts on its own
            detail = f"{title}; not restarted: {why.rule}"
            return {"outcome": LATE_REPLY_TASK, "outcome_detail": detail}, None
        run = await self._restart(prospect_id, row, contact, f"late reply by {channel}: {text}")
        detail = f"{title}; new run {run} at qualifying"
        return {"outcome": RESTARTED, "outcome_detail": detail}, run

    async def _ended_run(self, prospect_id: str) -> tuple[models.Enrollment | None, str | None]:
        """The prospect's current run and how it ended (None: never enrolled, or no outcome)."""
        state = self._app.state
        async with state.sessions() as session:
            row = await runs.current_run(session, prospect_id)
        if row is None:
            return None, None
        return row, (await runs.run_status(state.temporal, row)).outcome or row.outcome

    async def _policy(self, row: models.Enrollment | None, ended: str | None) -> str:
        """What a late reply after `row` (ended as `ended`) becomes by who they are and the
        cadence's `late_reply`, before asking whether they may be brought back: RESTARTED
        only when the cadence restarts them."""
        if ended == Stage.WON:
            return WON_CLIENT_TASK
        if row is None:
            return NOT_ENROLLED
        async with self._app.state.sessions() as session:
            definition = await service.get_cadence(session, row.cadence_id)
        if definition.late_reply != "restart_at_qualifying":
            return LATE_REPLY_TASK
        return RESTARTED

    async def _refusal(self, prospect_id: str, contact: Contact) -> runs.Refusal | None:
        async with self._app.state.sessions() as session:
            return await runs.refusal(session, prospect_id, contact.email, contact.phone)

    async def _contact(
        self, prospect_id: str, row: models.Enrollment | None, *, comeback: bool = True
    ) -> tuple[Contact, bool]:
        """The prospect from prospecting, who comes back: one whose rep was deactivated while
        their journey was over goes to an active rep first, so the task (and a restart) is not
        left with someone who left (`comeback` False: only read). While prospecting is away (or
        the prospect is gone), what the enrollment recorded, so the rep still gets the task now
        (False: only that)."""
        directory: ProspectDirectory = self._app.state.prospects
        read = directory.comeback if comeback else directory.contact
        try:
            return await read(prospect_id), True
        except AppError as err:
            log.warning("late reply of %s: prospect not read (%s)", prospect_id, err)
        return (
            Contact(
                prospect_id,
                first_name="",
                last_name="",
                email=row.email if row else None,
                phone=row.phone if row else None,
                rep_id=row.rep_id if row else None,
            ),
            False,
        )

    async def _task(
        self,
        late: LateReply,
        kind: str,
        title: str,
        body: str,
        contact: Contact,
        row: models.Enrollment | None,
    ) -> None:
        now = datetime.now(UTC)
        task = models.RepTask(
            id=new_id(),  # known before the flush: the event names it
            key=fitted_key(f"{kind}:{late.key}", 200),
            rep_id=contact.rep_id or (row.rep_id if row else None),
            prospect_id=contact.prospect_id,
            journey_id=journey_id(late.prospect_id),
            kind=kind,
            title=title[:300],
            body=body,
            context={"channel": late.channel, "reply": late.text, "stage": "ended"},
            prospect_card={
                "name": f"{contact.first_name} {contact.last_name}".strip(),
                "company": contact.company,
                "email": contact.email or "",
                "phone": contact.phone or "",
            },
            due_at=now,
        )
        async with self._app.state.sessions() as session:
            session.add(task)
            try:
                await events.task_created(session, task)  # flushes: a repeat fails here
                await session.commit()
            except IntegrityError:
                await session.rollback()  # a retried event: its task exists already

    async def _restart(
        self, prospect_id: str, ended: models.Enrollment, contact: Contact, cause: str
    ) -> int:
        state = self._app.state
        async with state.sessions() as session:
            current = await runs.current_run(session, prospect_id)
            if current is None or current.id != ended.id:
                # a retried event whose run started already (or another run since)
                return current.run if current is not None else 0
            planned = await runs.plan_run(
                session,
                state.temporal,
                state.settings,
                contact,
                runs.NewRun(
                    prospect_id,
                    ended.cadence_id,
                    origin="late_reply",
                    start_stage=Stage.QUALIFYING,
                    start_cause=cause[:200],
                    hold_to_gap=False,
                ),
            )
            await session.commit()
            run_id = await start_journey(
                state.temporal,
                state.settings,
                planned.row,
                contact,
                planned.snapshot,
                start_cause=cause[:200],
            )
            await runs.remember_start(session, planned.row.id, run_id)
            await session.commit()
            return planned.row.run


router = APIRouter(dependencies=[Depends(require_api_key)], tags=["replies"])


async def inbox_events(
    session: AsyncSession,
    *,
    prospect_id: str | None,
    outcome: str | None,
    limit: int,
    after: int | None = None,
) -> Page[models.InboxEvent]:
    """Newest first (ids count up), one page (shared.paging)."""
    e = models.InboxEvent
    query = where_given(select(e), (e.prospect_id, prospect_id))
    if outcome == RECORDED:  # with the status callbacks stored before they said so
        query = query.where((e.outcome == RECORDED) | ((e.outcome == "") & (e.delivery == NONE)))
    elif outcome is not None:
        query = query.where(e.outcome == outcome)
    return await page(
        session, query, [e.id], after=after, limit=limit, what="event", descending=True
    )


@router.get("/inbox-events")
async def list_inbox_events(
    session: Session,
    link: Linked,
    prospect_id: IdFilter = None,
    outcome: str | None = Query(None, max_length=30),
    limit: int = Query(100, ge=1, le=500),
    after: AfterNumber = None,
) -> list[dict[str, Any]]:
    """Stored provider events, newest first, each with what became of it (`outcome`); the
    Link header's `after` for the next (older) page."""
    rows = await inbox_events(
        session, prospect_id=prospect_id, outcome=outcome, limit=limit, after=after
    )
    return [
        {
            "id": r.id,
            "provider": r.provider,
            "event_id": r.event_id,
            "kind": r.kind,
            "prospect_id": r.prospect_id,
            "created_at": r.created_at,
            "signal": r.signal_name,
            "delivery": r.delivery,
            "outcome": r.outcome or (RECORDED if r.delivery == NONE else r.delivery),
            "outcome_detail": r.outcome_detail or r.last_error,
        }
        for r in link(rows)
    ]
