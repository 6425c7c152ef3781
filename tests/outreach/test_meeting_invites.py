"""Meeting invitations as mail clients receive them (issue 14): the real invite activity through
Temporal, the real SMTP server (aiosmtpd sandbox), each received message parsed back with the
`icalendar` library: method, UID, SEQUENCE, times and their zone, organizer and attendees, for a
booked, a moved and a cancelled meeting; a retried send goes out once; an address on the
do-not-contact list gets none, and its rep gets their own invitation instead of a copy."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from devstack.sandbox.mailbox import StoredMessage
from shared.contracts.meetings import CANCEL, REQUEST, InviteRequest, MeetingInvite
from tests.support.sending import Rig, SendingRig, contact, outcome

NEW_YORK = ZoneInfo("America/New_York")
REP = "rita@sales.example.com"


def calendar_part(r: Rig, message: StoredMessage) -> tuple[EmailMessage, Any]:
    """(the text/calendar MIME part, its parsed VEVENT's calendar)."""
    raw = r.sb.mailbox.raw(message.id)
    assert raw is not None
    mime = BytesParser(policy=policy.default).parsebytes(raw)
    assert mime.get_content_type() == "multipart/alternative"
    parts = {p.get_content_type(): p for p in mime.iter_parts()}
    assert list(parts) == ["text/plain", "text/html", "text/calendar"]
    part = parts["text/calendar"]
    assert isinstance(part, EmailMessage)
    return part, Calendar.from_ical(part.get_content())


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_booked_moved_and_cancelled_meetings_arrive_as_calendar_invitations(
    sending_rig: SendingRig,
) -> None:
    async with sending_rig() as r:
        c = contact(timezone="America/New_York", rep_id="rep-1", rep_email=REP)
        starts = datetime(2031, 3, 4, 15, 0, tzinfo=UTC)  # 10:00 in New York (EST)
        booked = MeetingInvite(
            c.prospect_id,
            "m" * 32,
            "d" * 32,
            "Demo",
            starts.isoformat(),
            45,
            0,
            REQUEST,
            stamp=datetime(2031, 3, 1, 12, tzinfo=UTC).isoformat(),
        )
        assert outcome(await r.invite(InviteRequest(booked, c))) == "sent"
        later = starts + timedelta(days=30)  # 11:00 in New York (EDT, after the DST change)
        moved = replace(booked, starts_at=later.isoformat(), sequence=1)
        cancelled = replace(moved, method=CANCEL, sequence=2, reason="no budget")
        # an address on the do-not-contact list gets no invitation (and neither copy goes)
        listed = contact(timezone="Europe/Berlin", rep_id="rep-1", rep_email=REP)
        added = await r.api.post("/do-not-contact", json={"value": listed.email, "reason": "x"})
        assert added.status_code == 201, added.text
        other = replace(booked, prospect_id=listed.prospect_id, meeting_id="n" * 32)
        # independent sends at once; a retried activity (or a repeated start) of the first
        # finds its ledger row: nothing sent again
        results = await asyncio.gather(
            *(
                r.invite(InviteRequest(invite, who))
                for invite, who in ((booked, c), (moved, c), (cancelled, c), (other, listed))
            )
        )
        assert [outcome(result) for result in results] == [
            "already_sent",
            "sent",
            "sent",
            "suppressed",
        ]
        assert r.sb.mailbox.list(to=listed.email) == []
        # ... but the rep, who organises the meeting, gets their own invitation (once, even
        # when the activity runs again), naming no prospect attendee and saying why
        assert [o.status for o in results[3].outcomes] == ["suppressed", "sent"]
        again = await r.invite(InviteRequest(other, listed))
        assert [o.status for o in again.outcomes] == ["suppressed", "already_sent"]
        mine = [
            m
            for m in r.sb.mailbox.list(to=REP)
            if str(calendar_part(r, m)[1].walk("VEVENT")[0]["UID"]).startswith("n" * 32)
        ]
        assert len(mine) == 1 and mine[0].recipients() == {REP}
        assert "not sent to" in mine[0].subject
        part, cal = calendar_part(r, mine[0])
        assert part.get_param("method") == REQUEST
        (event,) = cal.walk("VEVENT")
        assert str(event["ORGANIZER"]) == f"mailto:{REP}"
        assert [str(a) for a in [event["ATTENDEE"]]] == [f"mailto:{REP}"]
        assert "do not contact" in str(event["DESCRIPTION"])
        assert event.decoded("DTSTART") == starts

        by_sequence = {}
        for message in r.sb.mailbox.list(to=c.email):
            _, cal = calendar_part(r, message)
            by_sequence[int(cal.walk("VEVENT")[0]["SEQUENCE"])] = message
        assert sorted(by_sequence) == [0, 1, 2]
        received = [by_sequence[n] for n in (0, 1, 2)]
        expected = [(REQUEST, 0, starts, 10), (REQUEST, 1, later, 11), (CANCEL, 2, later, 11)]
        uids = set()
        for message, (method, sequence, at, local_hour) in zip(received, expected, strict=True):
            # the prospect and their rep (Cc) both get it, with no unsubscribe link
            assert {c.email, REP} <= message.recipients()
            assert "List-Unsubscribe" not in message.headers
            part, cal = calendar_part(r, message)
            assert part.get_param("method") == method
            assert cal["METHOD"] == method
            (event,) = cal.walk("VEVENT")
            uids.add(str(event["UID"]))
            assert int(event["SEQUENCE"]) == sequence
            assert event["STATUS"] == ("CANCELLED" if method == CANCEL else "CONFIRMED")
            dtstart, dtend = event.decoded("DTSTART"), event.decoded("DTEND")
            assert dtstart == at and dtend - dtstart == timedelta(minutes=45)
            assert str(dtstart.tzinfo) == "America/New_York" and dtstart.hour == local_hour
            assert event["DTSTART"].params["TZID"] == "America/New_York"
            (zone,) = cal.walk("VTIMEZONE")  # the zone travels with the event
            assert zone["TZID"] == "America/New_York"
            assert str(event["ORGANIZER"]) == f"mailto:{REP}"
            attendees = {str(a).removeprefix("mailto:"): a.params for a in event["ATTENDEE"]}
            assert set(attendees) == {c.email, REP}
            assert attendees[c.email]["PARTSTAT"] == "NEEDS-ACTION"
            assert attendees[c.email]["RSVP"] == "TRUE"
            assert event["SUMMARY"] == "Demo"
        assert len(uids) == 1, "one event: the update and the cancellation replace it"
        assert "cancelled" in received[2].subject.lower()


@pytest.mark.parametrize(
    ("starts", "minutes", "local_end"),
    [
        # spring forward at 02:00: 01:00 EST for two hours ends at 04:00 EDT, not 03:00
        (datetime(2031, 3, 9, 6, 0, tzinfo=UTC), 120, datetime(2031, 3, 9, 4, 0)),
        # fall back at 02:00: 00:00 EDT for three hours ends at 02:00 EST, not 03:00
        (datetime(2031, 11, 2, 4, 0, tzinfo=UTC), 180, datetime(2031, 11, 2, 2, 0)),
        # ending in the repeated hour (01:30 EST, the second 01:30): written in UTC
        (datetime(2031, 11, 2, 4, 0, tzinfo=UTC), 150, None),
    ],
)
def test_a_meeting_across_a_clock_change_ends_after_its_duration(
    starts: datetime, minutes: int, local_end: datetime | None
) -> None:
    """DTEND is the start plus the meeting's minutes of elapsed time, whatever the prospect's
    clock does meanwhile; a reading their clock shows twice is given in UTC (RFC 5545 would
    read a local one as the first of the two)."""
    from services.outreach.invites import calendar_text

    c = contact(timezone="America/New_York", rep_email=REP, rep_name="Rita Rep")
    invite = MeetingInvite(
        c.prospect_id, "m" * 32, "d" * 32, "Workshop", starts.isoformat(), minutes, 0, REQUEST,
        stamp=datetime(2031, 3, 1, 12, tzinfo=UTC).isoformat(),
    )  # fmt: skip
    (event,) = Calendar.from_ical(calendar_text(InviteRequest(invite, c), "x.test", REP)).walk(
        "VEVENT"
    )
    dtstart, dtend = event.decoded("DTSTART"), event.decoded("DTEND")
    assert dtstart.astimezone(UTC) == starts
    assert dtend.astimezone(UTC) - starts == timedelta(minutes=minutes)
    if local_end is None:
        assert dtend.utcoffset() == timedelta(0) and "TZID" not in event["DTEND"].params
    else:
        assert event["DTEND"].params["TZID"] == "America/New_York"
        assert dtend.replace(tzinfo=None) == local_end
