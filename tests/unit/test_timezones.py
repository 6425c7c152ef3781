"""One function resolves a prospect's zone (issue 10, point 7), and everything reads it: the
contact snapshots the journey starts with, the send windows, the meeting times in messages."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import available_timezones

import pytest

from services.outreach.cadences.send_window import next_allowed, window_for, zones_for
from services.outreach.cadences.templates import variables_for
from services.outreach.prospects import contact_from_json
from shared.contracts.journey import CadenceStep, Contact, SendWindow
from shared.contracts.plan import step_due
from shared.people import check_timezone
from shared.timezones import DEFAULT_ZONE, known_zone, prospect_zone

SYDNEY_PHONE = "+61291234567"  # a Sydney landline (mobiles span every Australian zone)
BERLIN_LANDLINE = "+4930123456"
US_TOLL_FREE = "+18005550100"  # one number, every US zone
WORKDAYS_9_17 = SendWindow(days=[0, 1, 2, 3, 4], start_hour=9, end_hour=17)


def test_an_explicit_zone_wins_over_the_phone() -> None:
    zone = prospect_zone("Europe/Paris", "+14155550100")
    assert (zone.name, zone.source, zone.zones) == ("Europe/Paris", "explicit", ("Europe/Paris",))
    assert prospect_zone("UTC", SYDNEY_PHONE).name == "UTC"  # taken at its word


def test_the_phone_names_the_zone_when_it_has_one() -> None:
    assert prospect_zone("", BERLIN_LANDLINE).name == "Europe/Berlin"
    assert prospect_zone("Mars/Olympus", SYDNEY_PHONE).name == "Australia/Sydney"
    assert prospect_zone(None, SYDNEY_PHONE).source == "phone"


def test_else_the_conservative_default() -> None:
    assert prospect_zone("", None) == prospect_zone("nonsense", "not a number")
    assert prospect_zone("", None).name == DEFAULT_ZONE and prospect_zone("", None).zones == ()
    toll_free = prospect_zone("", US_TOLL_FREE)
    # several zones: no single calendar, and the send window must hold in all of them
    assert toll_free.name == DEFAULT_ZONE and toll_free.source == "default"
    assert len(toll_free.zones) > 1 and len(zones_for("", US_TOLL_FREE)) == len(toll_free.zones)
    assert prospect_zone("", None, default="America/New_York").name == "America/New_York"
    assert prospect_zone("", None, default="nowhere").name == DEFAULT_ZONE


# names a host's zone directory answers to that name no place: the server's own zone, the
# database's POSIX-rules and leap-second copies, its "no zone set" placeholder
NOT_PLACES = ["localtime", "posixrules", "posix/Europe/Berlin", "right/Europe/Berlin", "Factory"]


@pytest.mark.parametrize("name", NOT_PLACES)
def test_a_name_the_resolver_would_not_use_is_refused(name: str) -> None:
    """Accepted, such a name was ignored when the prospect's zone was resolved (the phone's
    zone or UTC instead), and `localtime` meant the server's zone."""
    assert known_zone(name) is None
    assert prospect_zone(name, BERLIN_LANDLINE).source == "phone"
    with pytest.raises(ValueError, match="unknown time zone"):
        check_timezone(name)


def test_the_api_accepts_a_zone_exactly_when_the_resolver_uses_it() -> None:
    """One rule for every name the host or the tz database knows, and some it does not."""
    for name in sorted({*available_timezones(), *NOT_PLACES, "europe/berlin", "Mars/Olympus"}):
        try:
            accepted = check_timezone(name) == name
        except ValueError:
            accepted = False
        assert accepted == (prospect_zone(name).source == "explicit"), name
    assert check_timezone(" Europe/Berlin ") == "Europe/Berlin"
    assert check_timezone("") == ""
    for canonical in ("Europe/Berlin", "America/Argentina/Buenos_Aires", "UTC", "Etc/GMT-14"):
        assert check_timezone(canonical) == canonical


def test_the_journeys_contact_carries_the_resolved_zone() -> None:
    contact = contact_from_json({"id": "p1", "first_name": "Ada", "phone": SYDNEY_PHONE})
    assert contact.timezone == "" and contact.zone == "Australia/Sydney"
    assert contact.calendar_zone() == "Australia/Sydney"
    # a snapshot from before the zone was resolved keeps counting on its own field
    assert Contact("p2", "Old", timezone="").calendar_zone() == ""


def test_business_days_on_the_prospects_calendar_not_utc() -> None:
    """Friday 23:30 UTC is Saturday 10:30 in Sydney: one business day later is Monday there,
    where the UTC calendar said Monday 23:30 UTC (Tuesday in Sydney)."""
    start = datetime(2026, 12, 4, 23, 30, tzinfo=UTC)  # a Friday in UTC
    step = CadenceStep("email", 0, "Hi", business_days=1)
    zone = prospect_zone("", SYDNEY_PHONE).name
    due = step_due(start, step, zone).astimezone(prospect_zone(zone).tz)
    assert (due.strftime("%A"), due.hour, due.minute) == ("Monday", 10, 30)
    on_utc = step_due(start, step, "UTC").astimezone(prospect_zone(zone).tz)
    assert on_utc.strftime("%A") == "Tuesday"


def test_meeting_times_in_messages_are_local_with_the_zone() -> None:
    contact = Contact("p1", "Ada", phone=SYDNEY_PHONE)
    values = variables_for(contact, {"meeting_starts_at": "2026-12-06T22:00:00+00:00"})
    assert values["meeting_time"] == "Monday 07 December at 09:00 (Australia/Sydney)"
    unknown = variables_for(Contact("p2", "Bo"), {"meeting_starts_at": "2026-12-06T22:00:00Z"})
    assert unknown["meeting_time"] == "Sunday 06 December at 22:00 (UTC)"


def test_a_meeting_time_the_clock_shows_twice_says_which_in_messages() -> None:
    """On the night the clocks go back, 02:00 CEST and 02:00 CET read alike: the invitation's
    and the reminders' text names the zone's abbreviation (or, lacking one, the offset) for
    those readings only."""
    contact = Contact("p1", "Ada", timezone="Europe/Berlin")
    texts = [
        variables_for(contact, {"meeting_starts_at": at})["meeting_time"]
        for at in ("2031-10-26T00:00:00+00:00", "2031-10-26T01:00:00+00:00")
    ]
    assert texts == [
        "Sunday 26 October at 02:00 CEST (Europe/Berlin)",
        "Sunday 26 October at 02:00 CET (Europe/Berlin)",
    ]
    later = variables_for(contact, {"meeting_starts_at": "2031-10-26T02:00:00+00:00"})
    assert later["meeting_time"] == "Sunday 26 October at 03:00 (Europe/Berlin)"
    # Santiago's zone has numeric abbreviations ("-03"): the offset, named as one
    santiago = Contact("p2", "Bo", timezone="America/Santiago")
    repeated = variables_for(santiago, {"meeting_starts_at": "2031-04-06T02:30:00+00:00"})
    assert repeated["meeting_time"] == "Saturday 05 April at 23:30 UTC-03 (America/Santiago)"


def test_a_meeting_reminder_keeps_quiet_hours_not_the_cadences_window() -> None:
    """The reminder of a Monday 09:00 meeting is due on Sunday 09:00: outside a Mon-Fri 9-17
    window (which would hold it until the meeting starts) but inside the quiet hours."""
    sunday_9 = datetime(2026, 12, 6, 9, 0, tzinfo=prospect_zone("Europe/Berlin").tz)
    cadence_rule = window_for("cadence", WORKDAYS_9_17)
    assert next_allowed(sunday_9, "Europe/Berlin", "email", cadence_rule) > sunday_9
    reminder_rule = window_for("meeting_reminder", WORKDAYS_9_17)
    for channel in ("email", "sms"):
        assert next_allowed(sunday_9, "Europe/Berlin", channel, reminder_rule) == sunday_9
    at_7 = sunday_9.replace(hour=7)
    assert next_allowed(at_7, "Europe/Berlin", "email", reminder_rule) == at_7.replace(hour=8)
