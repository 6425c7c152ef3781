"""A meeting change's calendar invitation: after the commit, the route starts the MeetingInvite
workflow (workflows/meeting_invite.py), which has outreach send it through its ledger.

The workflow id names the invitation (shared.contracts.meetings.meeting_invite_id) and a second
start of the same id is refused, so a client repeating the request (after a failed start, or a
retried reschedule) never sends an invitation twice. Like the journey's signal, the start comes
after the commit: if it fails, the answer is a 503 and the client's retry starts it. Each
invitation then ends the meeting's older ones still running (_stop_older).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from fastapi import Request
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from services.deals.core import history
from services.deals.models import Deal, Meeting
from shared.contracts.meetings import (
    CANCEL,
    REQUEST,
    InviteOutcome,
    MeetingInvite,
    meeting_invite_id,
    meeting_uid,
)
from shared.contracts.queues import TaskQueues
from shared.db import utcnow
from shared.errors import AppError
from shared.providers.email import address_domain

log = logging.getLogger(__name__)
WORKFLOW = "MeetingInvite"
# a workflow (and an activity) of its own: a worker of an earlier release, which would drop
# `former_rep_id` and send the prospect a cancellation, does not know it and leaves it to this
# release's
HANDED_OVER_WORKFLOW = "HandedOverMeetingCancel"


def pin_uid(request: Request, meeting: Meeting) -> None:
    """Fix the meeting's invitation UID before the change that sends one commits: computed once
    (its id at the sending domain), so changing CLOSEFLOW_EMAIL_FROM later never turns an update
    into a second event in the prospect's calendar, or a cancellation into an unknown one."""
    if meeting.invite_uid is None:
        domain = address_domain(request.app.state.settings.email_from)
        meeting.invite_uid = meeting_uid(meeting.id, domain)


def invitation(
    deal: Deal, meeting: Meeting, method: str, prefix: str, former_rep_id: str = ""
) -> MeetingInvite:
    """SEQUENCE: the meeting's revision (+1 per move) and hand-overs; a CANCEL's is one more.
    `former_rep_id`: a hand-over's cancellation for the rep the meeting left, at the sequence
    of the hand-over's update, past what that rep's calendar holds."""
    sequence = meeting.revision + meeting.handovers
    sequence += 1 if method == CANCEL and not former_rep_id else 0
    return MeetingInvite(
        prospect_id=deal.prospect_id,
        meeting_id=meeting.id,
        deal_id=deal.id,
        title=meeting.title,
        starts_at=meeting.starts_at.isoformat(),
        duration_minutes=meeting.duration_minutes,
        # RFC 5546: a change by the organizer raises SEQUENCE; a cancel is one past the last move
        sequence=sequence,
        method=method,
        stamp=utcnow().isoformat(),
        queues=TaskQueues.with_prefix(prefix),
        reason=meeting.cancel_reason or "",
        uid=meeting.invite_uid or "",
        former_rep_id=former_rep_id,
    )


async def send_invite(
    request: Request, deal: Deal, meeting: Meeting, method: str, former_rep_id: str = ""
) -> None:
    """Start the invitation's workflow (a repeat of a started one does nothing)."""
    prefix = request.app.state.settings.task_queue_prefix
    invite = invitation(deal, meeting, method, prefix, former_rep_id)
    try:
        await request.app.state.temporal.start_workflow(
            HANDED_OVER_WORKFLOW if former_rep_id else WORKFLOW,
            invite,
            id=meeting_invite_id(invite),
            task_queue=invite.queues.journeys,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        pass  # sent (or being sent) already; the older ones may not be stopped yet (a retry)
    except RPCError as err:
        log.error("invitation %s not started: %s", meeting_invite_id(invite), err.message)
        raise AppError(
            503, "invite_not_sent", "stored, but the invitation could not be started; retry"
        ) from err
    if not former_rep_id:  # the hand-over's update stops the older ones
        await _stop_older(request.app.state.temporal, invite)


async def invite_hand_over(
    request: Request,
    session: AsyncSession,
    handed: list[tuple[Deal, Meeting]],
    *,
    with_update: bool = True,
) -> None:
    """After a hand-over's commit (core.api.move_rep): each meeting handed over sends its update
    (the new rep as organizer, to the prospect with the new rep in copy) and takes the meeting
    out of the former rep's calendar; then its mark is cleared, unless another hand-over has
    come since (its own invitations are owed). A start that fails is a 503, and the
    hand-over's retry starts what is missing. Not `with_update`: the meeting was cancelled since,
    and only the former rep's cancellation is owed."""
    for deal, meeting in handed:
        former, handovers = meeting.handed_over_from or "", meeting.handovers
        if with_update:
            await send_invite(request, deal, meeting, REQUEST)
        await send_invite(request, deal, meeting, CANCEL, former_rep_id=former)
        await session.execute(
            update(Meeting)
            .where(
                Meeting.id == meeting.id,
                Meeting.handovers == handovers,
                Meeting.handed_over_from == former,
            )
            .values(handed_over_from=None)
            .execution_options(synchronize_session=False)
        )
    if handed:
        await session.commit()


async def _stop_older(client: Client, invite: MeetingInvite) -> None:
    """End the meeting's older invitations that still run: one waiting for its send window (a
    sender's cap) would otherwise go out after this one, the old time beside the update or an
    invitation after the cancellation, putting the meeting back in a calendar that reads it
    last. The older ones are the REQUESTs of sequence 0 .. this one's - 1 (a CANCEL's sequence
    is one past the last REQUEST's). What one has sent stays sent: the ledger keeps it."""
    for sequence in range(invite.sequence):
        older = meeting_invite_id(replace(invite, method=REQUEST, sequence=sequence))
        try:
            await client.get_workflow_handle(older).terminate(
                reason=f"superseded by {meeting_invite_id(invite)}"
            )
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:  # NOT_FOUND: ended, or never started
                log.warning("invitation %s not stopped: %s", older, err.message)


SENT = frozenset({"sent", "already_sent"})


async def record_outcome(session: AsyncSession, outcome: InviteOutcome) -> None:
    """The meeting shows whether the prospect's latest invitation went, and why not (a line in
    the deal's history too, once per invitation). An older invitation's outcome, arriving late,
    never overwrites a newer one's."""
    meeting = await session.get(Meeting, outcome.meeting_id)
    if meeting is None:
        return  # the deal (and its meetings) were erased meanwhile: nothing to show it on
    if meeting.invite_sequence is not None and meeting.invite_sequence > outcome.sequence:
        return
    sent = outcome.prospect_status in SENT
    meeting.invite_sequence = outcome.sequence
    meeting.invite_status = "sent" if sent else "not_sent"
    meeting.invite_detail = None if sent else (outcome.detail or outcome.prospect_status)
    if sent:
        return
    what = "cancellation" if outcome.method == CANCEL else "invitation"
    rep = f"; the rep's own {what}: {outcome.rep_status}" if outcome.rep_status else ""
    deal = await session.get(Deal, outcome.deal_id)
    if deal is not None:
        await history.note(
            session,
            deal,
            f"meeting {meeting.id}: {what} not sent to the prospect ({meeting.invite_detail}){rep}",
            key=f"meeting:{meeting.id}:invite:{outcome.method}:{outcome.sequence}",
        )
