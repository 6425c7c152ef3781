"""Properties of the send windows (issue 13): random schedules across zones, clock changes and
holidays give 0 texts or calls outside 08:00-21:00 local time and 0 sends outside the cadence's
window, except where services/outreach/cadences/send_window.py documents otherwise (a number
whose zones share no such moment, or no zone known: the conservative UTC window).

Every send time is checked against an oracle written from the rules, not from the code: local
times through the real zoneinfo of every zone in play. `now` is drawn at random, or near one of
the zone's real clock changes (the hour before a spring-forward gap, the repeated hour of a fall
back); holidays fall on the days around it, the clock change's own day among them. A schedule is
the cadence simulator's timeline (the journey's own due-time code, then the send rule).

CLOSEFLOW_PROPERTY_EXAMPLES examples per property (tests/support/fuzz.py; `make fuzz`: 100,000)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from hypothesis import example, given
from hypothesis import strategies as st

from services.outreach.cadences.send_window import (
    CONSERVATIVE_UTC_HOURS,
    INTRUSIVE_CHANNELS,
    QUIET_SAFE_HOURS,
    next_allowed,
)
from services.outreach.cadences.simulation import TASK_CHANNELS, timeline
from shared.contracts.journey import CadenceSnapshot, CadenceStep, SendWindow
from shared.timezones import prospect_zone
from tests.support.fuzz import property_settings

# Zones chosen for their clocks: north and south DST, 30 and 45-minute offsets, a 30-minute DST
# (Lord Howe), clock changes at midnight (Havana, Santiago, Beirut, Asuncion), a negative DST
# (Dublin), none at all; then any zone the system knows.
CHOSEN_ZONES = (
    "America/New_York",
    "America/Los_Angeles",
    "Europe/Berlin",
    "Europe/London",
    "Europe/Dublin",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Pacific/Auckland",
    "America/St_Johns",
    "America/Havana",
    "America/Santiago",
    "America/Asuncion",
    "Asia/Beirut",
    "Asia/Kolkata",
    "Asia/Tehran",
    "UTC",
)
ALL_ZONES = tuple(sorted(available_timezones()))
# one zone (US, Germany, Australia), several (US toll-free, a Russian mobile), none (+800)
PHONES = (
    None,
    "+14155550100",
    "+4930123456",
    "+61291234567",
    "+18005550100",
    "+79161234567",
    "+80012345678",
    "not a number",
)
START, END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2032, 12, 31, tzinfo=UTC)
CHANNELS = ("email", "sms", "call_task")


@lru_cache(maxsize=1024)
def clock_changes(zone: str) -> tuple[datetime, ...]:
    """The instants between START and END at which `zone`'s UTC offset changes (to the minute)."""
    tz, found = ZoneInfo(zone), []
    day = START
    while day < END:
        # a week at a time: no zone changes its clock twice within one
        following = day + timedelta(days=7)
        if day.astimezone(tz).utcoffset() != following.astimezone(tz).utcoffset():
            lo, hi = day, following  # bisect to the minute
            while hi - lo > timedelta(minutes=1):
                mid = lo + (hi - lo) / 2
                if mid.astimezone(tz).utcoffset() == lo.astimezone(tz).utcoffset():
                    lo = mid
                else:
                    hi = mid
            found.append(hi.replace(second=0, microsecond=0))
        day = following
    return tuple(found)


@dataclass(frozen=True)
class Prospect:
    timezone: str | None
    phone: str | None


@st.composite
def prospects(draw: st.DrawFn) -> Prospect:
    zone = draw(
        st.one_of(
            st.sampled_from(CHOSEN_ZONES),
            st.sampled_from(ALL_ZONES),
            st.sampled_from(["", "Mars/Olympus", None]),  # unknown: the phone's zone, or none
        )
    )
    return Prospect(zone, draw(st.sampled_from(PHONES)))


@st.composite
def moments(draw: st.DrawFn, prospect: Prospect) -> datetime:
    """A minute at random, or within three days of one of the prospect's clock changes."""
    zones = prospect_zone(prospect.timezone, prospect.phone).zones
    changes = [c for z in zones for c in clock_changes(z)]
    if changes and draw(st.booleans()):
        near = draw(st.sampled_from(changes))
        return near + timedelta(minutes=draw(st.integers(-3 * 1440, 3 * 1440)))
    minutes = int((END - START).total_seconds() // 60)
    return START + timedelta(minutes=draw(st.integers(0, minutes)))


@st.composite
def windows(draw: st.DrawFn, around: datetime, prospect: Prospect) -> SendWindow:
    """Days, hours and holidays: the holidays are local dates around `around` (the clock
    change's own date often among them)."""
    start = draw(st.integers(0, 23))
    end = draw(st.integers(start + 1, 24))
    days = draw(st.lists(st.integers(0, 6), min_size=1, max_size=7, unique=True))
    zone = prospect_zone(prospect.timezone, prospect.phone).tz
    local_day = around.astimezone(zone).date()
    offsets = draw(st.lists(st.integers(-1, 21), max_size=6))
    holidays = sorted({(local_day + timedelta(days=d)).isoformat() for d in offsets})
    return SendWindow(days=days, start_hour=start, end_hour=end, holidays=holidays)


def _hours(window: SendWindow, channel: str) -> tuple[int, int]:
    """The hours rule 1 allows `channel`: the cadence's, within quiet hours for texts and calls."""
    start, end = window.start_hour, window.end_hour
    if channel in INTRUSIVE_CHANNELS:
        start, end = max(start, QUIET_SAFE_HOURS[0]), min(end, QUIET_SAFE_HOURS[1])
    return start, end


def _open(local: datetime, window: SendWindow, hours: tuple[int, int]) -> bool:
    """Whether the local moment is on an open day, not a holiday, within [start, end) hours."""
    return (
        local.weekday() in window.days
        and local.date().isoformat() not in window.holidays
        and hours[0] <= local.hour < hours[1]
    )


def allowed_by(rules: str, at: datetime, prospect: Prospect, channel: str, w: SendWindow) -> bool:
    """The oracle: `at` is allowed by the named rule of the module's docstring."""
    zones = [ZoneInfo(z) for z in prospect_zone(prospect.timezone, prospect.phone).zones]
    if rules == "cadence":
        return bool(zones) and all(_open(at.astimezone(tz), w, _hours(w, channel)) for tz in zones)
    if rules == "quiet":
        return bool(zones) and all(_open(at.astimezone(tz), w, QUIET_SAFE_HOURS) for tz in zones)
    lo, hi = CONSERVATIVE_UTC_HOURS
    start, end = max(w.start_hour, lo), min(w.end_hour, hi)
    return _open(at.astimezone(UTC), w, (start, end) if start < end else (lo, hi))


def problems(at: datetime, now: datetime, prospect: Prospect, channel: str, w: SendWindow) -> str:
    """What is wrong with sending `channel` at `at` (asked at `now`), or ""."""
    zones = prospect_zone(prospect.timezone, prospect.phone).zones
    if at < now:
        return "before it was asked for"
    locals_ = {z: at.astimezone(ZoneInfo(z)).isoformat() for z in zones}
    if len(zones) == 1:
        # one zone known: the rules hold in it, strictly; rule 2 only when rule 1 has no hours
        hours = _hours(w, channel)
        rule = "cadence" if hours[0] < hours[1] else "quiet"
        if not allowed_by(rule, at, prospect, channel, w):
            return f"outside the {rule} window: {locals_}"
        if channel in INTRUSIVE_CHANNELS and not allowed_by("quiet", at, prospect, channel, w):
            return f"a text or call outside 08:00-21:00: {locals_}"
        return ""
    # several zones, or none: the first rule that holds anywhere holds here
    if not any(allowed_by(r, at, prospect, channel, w) for r in ("cadence", "quiet", "utc")):
        return f"outside every window: {locals_} {at.astimezone(UTC).isoformat()}"
    return ""


def earliest(at: datetime, now: datetime, prospect: Prospect, channel: str, w: SendWindow) -> str:
    """A deferred send goes at the opening of its window: a second earlier is not allowed."""
    if at == now or len(prospect_zone(prospect.timezone, prospect.phone).zones) != 1:
        return ""
    hours = _hours(w, channel)
    rule = "cadence" if hours[0] < hours[1] else "quiet"
    if allowed_by(rule, at - timedelta(seconds=1), prospect, channel, w):
        return "a second earlier was allowed too: not the earliest moment"
    return ""


@st.composite
def asks(draw: st.DrawFn) -> tuple[Prospect, datetime, SendWindow, str]:
    prospect = draw(prospects())
    now = draw(moments(prospect))
    return prospect, now, draw(windows(now, prospect)), draw(st.sampled_from(CHANNELS))


@example(  # found by this property: after Chatham's fall back (03:45 -> 02:45) the clock read
    # 02:45 again inside a window opening at 03:00, and the email went at once
    (
        Prospect("Pacific/Chatham", None),
        datetime(2026, 4, 4, 14, 0, tzinfo=UTC),
        SendWindow(start_hour=3, end_hour=24),
        "email",
    )
)
@example(  # spring forward in New York, the window opening inside the missing hour
    (
        Prospect("America/New_York", None),
        datetime(2026, 3, 8, 6, 30, tzinfo=UTC),
        SendWindow(start_hour=2, end_hour=9),
        "sms",
    )
)
@example(  # fall back in Santiago at midnight, a text asked for in the repeated hour
    (
        Prospect("America/Santiago", None),
        datetime(2026, 4, 5, 3, 30, tzinfo=UTC),
        SendWindow(start_hour=0, end_hour=24, holidays=["2026-04-05"]),
        "sms",
    )
)
@given(asks())
@property_settings()
def test_no_send_outside_its_window_and_no_text_or_call_outside_quiet_hours(
    ask: tuple[Prospect, datetime, SendWindow, str],
) -> None:
    prospect, now, window, channel = ask
    at = next_allowed(now, prospect.timezone, channel, window, prospect.phone)
    assert problems(at, now, prospect, channel, window) == "", (ask, at)
    assert earliest(at, now, prospect, channel, window) == "", (ask, at)


@st.composite
def schedules(draw: st.DrawFn) -> tuple[Prospect, datetime, CadenceSnapshot]:
    prospect = draw(prospects())
    start = draw(moments(prospect))
    steps = [
        CadenceStep(
            draw(st.sampled_from(("email", "sms", "call_task", "social_task"))),
            draw(st.integers(0, 3 * 86400)),
            "Hi {{ first_name }}",
            business_days=draw(st.integers(0, 10)),
        )
        for _ in range(draw(st.integers(1, 5)))
    ]
    window = draw(windows(start, prospect))
    return prospect, start, CadenceSnapshot("c-prop", 1, "Property", steps, send_window=window)


@example(  # found by make fuzz (100,000 examples): a touch's channels go out together, each at
    # its own first allowed moment; the email (midnight allowed) went before the same touch's
    # text (quiet hours until 08:00), which the oracle had wrongly made it wait for
    (
        Prospect("America/New_York", None),
        datetime(2026, 1, 1, 0, 0, tzinfo=UTC),
        CadenceSnapshot(
            "c-prop",
            1,
            "Property",
            [CadenceStep("sms", 0, "Hi"), CadenceStep("email", 0, "Hi")],
            send_window=SendWindow(
                start_hour=0, end_hour=24, holidays=["2025-12-31", "2026-01-01", "2026-01-02"]
            ),
        ),
    )
)
@given(schedules())
@property_settings()
def test_a_random_cadence_schedule_keeps_every_send_in_its_window(
    schedule: tuple[Prospect, datetime, CadenceSnapshot],
) -> None:
    """The simulator's timeline is the journey's: its due times (shared.contracts.plan), then
    the send rule at each due time, one touch after the other (the channels of one touch
    together)."""
    prospect, start, cadence = schedule
    planned = timeline(cadence, start, prospect.timezone, prospect.phone)
    previous = start
    for touch in planned["touches"]:
        due = datetime.fromisoformat(touch["due_utc"])
        asked = max(due, previous)  # once the previous touch went
        for send in touch["sends"]:
            at = datetime.fromisoformat(send["send_at_utc"])
            previous = max(previous, at)
            if send["channel"] in TASK_CHANNELS:
                assert at == asked, (touch, send)  # a task for the rep, made at once
                task_due = datetime.fromisoformat(send["task_due_utc"])
                if send["channel"] == "social_task":
                    assert task_due == asked, (touch, send)
                    continue
                # a call is due when a call may reach the prospect, not before
                assert (
                    problems(task_due, asked, prospect, "call_task", cadence.send_window) == ""
                ), (
                    touch,
                    send,
                )
                continue
            assert problems(at, asked, prospect, send["channel"], cadence.send_window) == "", (
                touch,
                send,
            )


def test_the_examples_do_reach_clock_changes() -> None:
    """The oracle's clock changes are real: New York springs forward on 8 March 2026 at 07:00
    UTC, Santiago falls back on 5 April 2026 at 03:00 UTC."""
    assert datetime(2026, 3, 8, 7, 0, tzinfo=UTC) in clock_changes("America/New_York")
    assert datetime(2026, 4, 5, 3, 0, tzinfo=UTC) in clock_changes("America/Santiago")
    assert date(2026, 3, 8) in {c.date() for c in clock_changes("America/New_York")}
