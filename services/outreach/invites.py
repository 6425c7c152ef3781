"""Calendar invitations of meetings (issue 14): an iCalendar object (RFC 5545) with its iTIP
method (RFC 5546), sent as the text/calendar alternative of an email so that mail clients show
it as an invite (Accept / Decline) and put it in the calendar.

- UID: the one deals fixed for the meeting when its first invitation went (the meeting's id at
  the sending domain of then), the same for every message of the meeting whatever the From
  address has become since, so a reschedule updates the event and a cancellation removes it
  instead of adding another. (An invitation started before deals fixed it: computed as then.)
- SEQUENCE: 0 when booked, +1 per move or hand-over to another rep; the CANCEL carries one
  more than the last REQUEST, as RFC 5546 wants of a change by the organizer (a hand-over's
  cancellation for the rep it left: its update's, past what that rep's calendar holds).
- DTSTART/DTEND in the prospect's zone with its VTIMEZONE (generated from the tz database), so
  the invite reads in their local time and converts right in any calendar. The end is the start
  plus the duration in elapsed time, so a meeting across a clock change lasts what it lasts; a
  time the zone's clock shows twice (the hour repeated when it goes back) is written in UTC,
  since a calendar reads such a local time as its first occurrence (RFC 5545, 3.3.5).
- ORGANIZER: the prospect's rep (or, without one, the sending address); ATTENDEEs: the prospect
  (asked to answer) and the rep (accepted). The rep gets the same message as Cc.

Consent: an invitation is a transactional message about a meeting the prospect booked or agreed
to, but closeflow keeps one promise per address: whoever opted out of email, is on the
do-not-contact list, bounced hard or was erased gets none (the ledger row says `suppressed`), as
for meeting reminders. It carries no unsubscribe link: the rep's copy must not offer a link that
unsubscribes the prospect.

When the prospect is reassigned, deals hands the meeting to the new rep: the update (a higher
SEQUENCE) makes the new rep its organizer, in the prospect's calendar and, by the copy, the new
rep's; and the rep it left gets a cancellation of their own (`meeting_handed_over_rep`, under the
key `<meeting>-s<sequence>-handed-over`), naming no prospect attendee, so that their calendar
drops it without a word to the prospect.

The rep organises the meeting, so it belongs in their calendar whatever the prospect's consent:
when the prospect's invitation does not go (suppressed, refused, no address), the rep gets one of
their own (a ledger row of its own, `<touch key>-rep`, to the rep's address). Its event names no
prospect ATTENDEE, so no calendar ever mails a person who said no when the rep edits the event;
its DESCRIPTION says why the prospect got none.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

from icalendar import Calendar, Event, vCalAddress, vText

from shared.contracts.journey import TouchRequest, journey_id
from shared.contracts.meetings import CANCEL, InviteRequest, invite_touch_key, meeting_uid
from shared.contracts.plan import repeated
from shared.timezones import prospect_zone

if TYPE_CHECKING:
    from services.outreach.tasks.reps import RepInfo

INVITE_KINDS = frozenset({"meeting_invite", "meeting_cancel"})
# the rep's own invitation when the prospect's did not go: consent is the rep's, not the prospect's
REP_COPY_KINDS = frozenset({"meeting_invite_rep", "meeting_cancel_rep", "meeting_handed_over_rep"})
# what the prospect's send answered when their invitation did not (and will not) go
NOT_REACHED = frozenset({"suppressed", "failed", "skipped"})
PRODID = "-//closeflow//meetings//EN"


@dataclass(frozen=True)
class InvitePart:
    """What an invitation adds to its email: the calendar text, its method, the rep's copy."""

    calendar: str
    method: str
    cc: str = ""


def _address(email: str, name: str, **params: str) -> vCalAddress:
    address = vCalAddress(f"mailto:{email}")
    if name:
        address.params["CN"] = vText(name)
    for key, value in params.items():
        address.params[key.upper().replace("_", "-")] = vText(value)
    return address


def _calendar_time(instant: datetime, zone: tzinfo) -> datetime:
    """The instant as the prospect's clock shows it, unless their clock shows that reading twice
    (a fall back): then in UTC, which says which of the two it is."""
    local = instant.astimezone(zone)
    return instant.astimezone(UTC) if repeated(local) else local


def calendar_text(
    req: InviteRequest, domain: str, fallback_organizer: str, not_sent: str = ""
) -> str:
    """The iCalendar text; `not_sent`: a rep's own copy, saying why the prospect got none of it
    (and naming no prospect attendee)."""
    invite, contact = req.invite, req.contact
    zone = prospect_zone(contact.timezone, contact.phone).tz
    starts = datetime.fromisoformat(invite.starts_at).astimezone(UTC)
    # elapsed time: aware arithmetic in the zone would add wall-clock minutes
    ends = starts + timedelta(minutes=invite.duration_minutes)
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", invite.method)
    event = Event()
    event.add("uid", invite.uid or meeting_uid(invite.meeting_id, domain))
    event.add("sequence", invite.sequence)
    event.add("dtstamp", datetime.fromisoformat(invite.stamp))
    event.add("dtstart", _calendar_time(starts, zone))
    event.add("dtend", _calendar_time(ends, zone))
    event.add("summary", invite.title)
    event.add("status", "CANCELLED" if invite.method == CANCEL else "CONFIRMED")
    rep_email = contact.rep_email or fallback_organizer
    event.add("organizer", _address(rep_email, contact.rep_name))
    prospect_name = f"{contact.first_name} {contact.last_name}".strip()
    if not_sent:
        event.add("description", f"{prospect_name or 'The prospect'} got no {not_sent}")
    if contact.email and not not_sent:
        event.add(
            "attendee",
            _address(
                contact.email,
                prospect_name,
                role="REQ-PARTICIPANT",
                partstat="NEEDS-ACTION",
                rsvp="TRUE",
            ),
        )
    if contact.rep_email:
        event.add(
            "attendee",
            _address(contact.rep_email, contact.rep_name, role="CHAIR", partstat="ACCEPTED"),
        )
    cal.add_component(event)
    cal.add_missing_timezones()  # a VTIMEZONE for the zone of DTSTART/DTEND (none for UTC)
    text: str = cal.to_ical().decode()
    return text


def former_rep_request(req: InviteRequest, former: RepInfo) -> InviteRequest:
    """A hand-over's cancellation as the rep it left receives it: they are its organizer, as
    their calendar knows the meeting."""
    contact = replace(
        req.contact,
        rep_id=former.id,
        rep_name=former.name,
        rep_email=former.email,
        rep_phone=former.phone,
    )
    return replace(req, contact=contact)


def handed_over_note(new_rep_name: str) -> str:
    """The former rep's event description: why it leaves their calendar."""
    return f"cancellation from us: the meeting was handed over to {new_rep_name or 'another rep'}"


def touch_for(
    req: InviteRequest, *, rep_copy: bool = False, new_rep_name: str = ""
) -> TouchRequest:
    """The invitation as a one-channel touch of the prospect's ledger (a rep's own copy: to
    the rep's address, under a key of its own; a hand-over's to the rep it left names the new
    one)."""
    invite = req.invite
    kind = "meeting_cancel" if invite.method == CANCEL else "meeting_invite"
    if invite.former_rep_id:
        kind = "meeting_handed_over"
    contact = replace(req.contact, email=req.contact.rep_email) if rep_copy else req.contact
    variables = {"meeting_starts_at": invite.starts_at, "meeting_title": invite.title}
    if invite.reason:
        variables["cancel_reason"] = invite.reason
    if invite.former_rep_id:
        variables["new_rep_name"] = new_rep_name or "another rep"
    return TouchRequest(
        journey_id=journey_id(invite.prospect_id),
        touch_key=invite_touch_key(invite) + ("-rep" if rep_copy else ""),
        kind=f"{kind}_rep" if rep_copy else kind,
        contact=contact,
        channels=["email"],
        variables=variables,
    )


def part_for(
    req: InviteRequest, domain: str, fallback_organizer: str, not_sent: str = ""
) -> InvitePart:
    return InvitePart(
        calendar_text(req, domain, fallback_organizer, not_sent),
        req.invite.method,
        cc=req.contact.rep_email if req.contact.email and not not_sent else "",
    )
