"""MeetingInvite: one calendar invitation of one meeting (issue 14), started by deals after it
committed the change (booked, moved, cancelled). The prospect and their rep as prospecting knows
them now, then outreach sends the invitation through its ledger (a retry never sends twice);
a send that must wait (a sender's cap) is sent again when it may go. Last, deals records what
became of it on the meeting (the prospect's may not go: opted out, listed; the rep then got
their own). That step comes after every command an earlier version issued, so a workflow started
by that version (waiting for a cap) replays unchanged and then records: no patch needed."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from shared.contracts.journey import Contact, ProspectRef, TouchResult
    from shared.contracts.meetings import InviteOutcome, InviteRequest, MeetingInvite
    from shared.contracts.names import Act

from workflows.journey.steps import call, send_in_window, wait_for_window


@workflow.defn(name="MeetingInvite")
class MeetingInviteWorkflow:
    @workflow.run
    async def run(self, invite: MeetingInvite) -> str:
        q = invite.queues
        result = await _sent(invite, Act.SEND_MEETING_INVITE)
        prospect, *rep = result.outcomes
        outcome = InviteOutcome(
            invite.meeting_id,
            invite.deal_id,
            invite.sequence,
            invite.method,
            prospect.status,
            prospect.detail,
            rep[0].status if rep else "",
        )
        await call(Act.RECORD_INVITE, outcome, q.deals)
        return _summary(result)


@workflow.defn(name="HandedOverMeetingCancel")
class HandedOverMeetingCancelWorkflow:
    """A hand-over's cancellation for the rep the meeting left (`invite.former_rep_id`), started
    by deals beside the update the prospect and the new rep get: it takes the meeting out of
    that rep's calendar, names no prospect attendee and records nothing on the meeting (what it
    shows is the prospect's latest invitation). A workflow and an activity of their own: a
    worker of an earlier release does not know them and leaves them to this release's."""

    @workflow.run
    async def run(self, invite: MeetingInvite) -> str:
        return _summary(await _sent(invite, Act.SEND_HANDED_OVER_CANCEL))


async def _sent(invite: MeetingInvite, send_activity: str) -> TouchResult:
    """The prospect and their rep as prospecting knows them now, then outreach's
    `send_activity` when the send may go (again after a cap's wait): its last result."""
    q = invite.queues
    contact = await call(Act.GET_CONTACT, ProspectRef(invite.prospect_id), q.prospecting, Contact)
    results: list[TouchResult] = []

    async def send() -> TouchResult:
        request = InviteRequest(invite, contact)
        results.append(await call(send_activity, request, q.outreach, TouchResult))
        return results[-1]

    await send_in_window(send, wait_for_window)
    return results[-1]


def _summary(result: TouchResult) -> str:
    return "; ".join(f"{o.channel}: {o.status}" for o in result.outcomes)
