"""What crosses a boundary for a meeting's calendar invitation (issue 14): deals starts the
MeetingInvite workflow after committing a meeting change; it reads the prospect's contact from
prospecting and has outreach send the invitation through its send ledger."""

from dataclasses import dataclass, field

from shared.contracts.journey import Contact
from shared.contracts.queues import TaskQueues

REQUEST = "REQUEST"  # RFC 5546: a new meeting, or an update of one (a higher SEQUENCE)
CANCEL = "CANCEL"
INVITE_PREFIX = "meeting-invite-"


@dataclass
class MeetingInvite:
    """One invitation of one meeting: `sequence` is the meeting's revision plus its hand-overs
    for a REQUEST (0 when booked, +1 per reschedule or hand-over) and one more than the last
    REQUEST's for the CANCEL; a hand-over's cancellation for the rep it left has its update's."""

    prospect_id: str
    meeting_id: str
    deal_id: str
    title: str
    starts_at: str  # ISO-8601, aware
    duration_minutes: int
    sequence: int
    method: str  # REQUEST | CANCEL
    stamp: str  # when the change was committed: the DTSTAMP, the same on every attempt
    queues: TaskQueues = field(default_factory=TaskQueues)
    reason: str = ""  # a cancellation's reason, shown in the message
    # the event's UID, fixed by deals for the meeting's life; "" in an invitation started before
    # deals fixed it: the meeting's id at the sending domain, as it was then computed
    uid: str = ""
    # a hand-over's (the prospect reassigned): the CANCEL that takes the meeting out of this
    # rep's calendar only (the HandedOverMeetingCancel workflow); the prospect and the new rep
    # get the REQUEST of the same sequence
    former_rep_id: str = ""


@dataclass
class InviteRequest:
    """The send_meeting_invite activity's input: the invitation and who it goes to."""

    invite: MeetingInvite
    contact: Contact


def meeting_uid(meeting_id: str, domain: str) -> str:
    """A meeting's calendar UID: its id at the sending domain (deals fixes it on the meeting when
    the first invitation goes; an invitation from before that carries none and is computed)."""
    return f"{meeting_id}@{domain}"


def invite_touch_key(invite: MeetingInvite) -> str:
    """The ledger key of one invitation: a retry (or a repeated start) finds its row."""
    if invite.former_rep_id:
        return _handed_over_key(invite.meeting_id, invite.sequence)
    return _touch_key(invite.meeting_id, invite.method, invite.sequence)


def _handed_over_key(meeting_id: str, sequence: int) -> str:
    return f"invite-{meeting_id}-s{sequence}-handed-over"


def _touch_key(meeting_id: str, method: str, sequence: int) -> str:
    if method == CANCEL:
        return f"invite-{meeting_id}-cancel"
    return f"invite-{meeting_id}-s{sequence}"


def meeting_invite_id(invite: MeetingInvite) -> str:
    """The workflow id: one workflow per invitation, and the prospect's id before the first
    ':' so that its payloads (the contact) are encrypted with the prospect's own key
    (shared.codec.scope_of) and shredded with it."""
    return f"{INVITE_PREFIX}{invite.prospect_id}:{invite_touch_key(invite)}"


def meeting_invite_ids(prospect_id: str, meeting_id: str, sequence: int) -> list[str]:
    """The workflow id of every invitation the meeting may have had by its latest REQUEST's
    `sequence` (its revision plus its hand-overs): a REQUEST per sequence, the former rep's
    cancellation of each hand-over, and the CANCEL."""
    keys = [_touch_key(meeting_id, REQUEST, s) for s in range(sequence + 1)]
    keys += [_handed_over_key(meeting_id, s) for s in range(1, sequence + 1)]
    keys.append(_touch_key(meeting_id, CANCEL, sequence + 1))
    return [f"{INVITE_PREFIX}{prospect_id}:{key}" for key in keys]


@dataclass
class InviteOutcome:
    """The record_invite activity's input: what became of one invitation, for the meeting to
    show (the prospect's may not go: opted out, listed, bounced, no address; the rep then got
    their own)."""

    meeting_id: str
    deal_id: str
    sequence: int
    method: str
    prospect_status: str  # the prospect's send: sent | already_sent | suppressed | failed | ...
    detail: str = ""  # why it did not go
    rep_status: str = ""  # the rep's own invitation ("" when the prospect's went, with the Cc)
