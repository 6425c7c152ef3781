"""When a touch may go out, in the prospect's own time zone.

The rules, in the order they are tried (the first that ever opens wins):

1. The cadence's window: its days and local hours, minus its holidays (dates of the prospect's
   local calendar). SMS and calls are further held to 08:00-21:00 local time, whatever the
   cadence says.
2. If rule 1 never holds in all the zones in play at once (they are hours apart, as Russia's), or
   the cadence's hours never meet 08:00-21:00: the cadence's days and holidays with 08:00-21:00
   hours for every channel. A touch is deferred, never dropped.
3. The conservative window, when no zone is known, or when no moment is within 08:00-21:00 in
   all of the number's zones at once: the cadence's days and holidays on the UTC calendar,
   between 13:00 and 17:00 UTC (the part of the cadence's hours inside that span when they
   overlap it): never before 08:00 on the Americas' east coast nor after 21:00 from Western
   Europe to the Gulf, where most senders' prospects are. No zone known means no valid zone
   name and no phone number whose zone phonenumbers knows (e.g. +800 numbers), so mostly an
   email-only prospect.

Which zones are in play: the ones `shared.timezones.prospect_zone` names, the function every
part of closeflow resolves a prospect's zone with: the prospect's time zone when it is a valid
IANA name, otherwise (empty, unknown or invalid) the zones of the phone number's country and area;
when a number maps to several zones (e.g. a Russian mobile or a US toll-free number), a moment
must be allowed in every one of them: the most conservative window, their intersection. A number
without a known zone, or no phone at all, falls to rule 3. "UTC" is taken at its word: it is a
valid zone.

`now` is always a parameter: every rule here is a pure function of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from shared.contracts.journey import SendWindow
from shared.timezones import known_zone, phone_zones, prospect_zone

__all__ = ["known_zone", "next_allowed", "phone_zones", "zones_for"]

# Texts and calls never reach a person outside these local hours, whatever a cadence says.
QUIET_SAFE_HOURS = (8, 21)
INTRUSIVE_CHANNELS = frozenset({"sms", "call_task"})
# A rep task reaches nobody by itself: a social one is due at once, the rep chooses the moment.
# A call task is due when a call may reach the prospect (intrusive, above).
UNTIMED_CHANNELS = frozenset({"social_task"})
# Rule 3: daytime in UTC, used when the prospect's zone cannot be known.
CONSERVATIVE_UTC_HOURS = (13, 17)
# A booked meeting's reminders are not sales messages (the prospect asked for the meeting): they
# keep to the quiet hours on every day, whatever the cadence's days, hours and holidays.
BOOKED_MEETING_KINDS = frozenset({"meeting_reminder"})
MEETING_REMINDER_WINDOW = SendWindow(start_hour=QUIET_SAFE_HOURS[0], end_hour=QUIET_SAFE_HOURS[1])
SEARCH_DAYS = 15  # plus a week per holiday: a window with days open always opens within it

Interval = tuple[datetime, datetime]


@dataclass(frozen=True)
class Rule:
    days: frozenset[int]
    start_hour: int
    end_hour: int
    holidays: frozenset[date]


def zones_for(timezone: str | None, phone: str | None = None) -> list[ZoneInfo]:
    """The zones a touch must respect (shared.timezones.prospect_zone); [] means none is known
    (rule 3 applies)."""
    return [ZoneInfo(n) for n in prospect_zone(timezone or "", phone).zones]


def window_for(kind: str, cadence_window: SendWindow) -> SendWindow:
    """The window a touch of `kind` keeps to: the cadence's, but a meeting reminder's own."""
    return MEETING_REMINDER_WINDOW if kind in BOOKED_MEETING_KINDS else cadence_window


def next_allowed(
    now: datetime,
    timezone: str | None,
    channel: str,
    window: SendWindow,
    phone: str | None = None,
) -> datetime:
    """The earliest moment at or after `now` (aware) when `channel` may reach the prospect: a
    message's send, a rep task's due time."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    if channel in UNTIMED_CHANNELS:
        return now
    holidays = frozenset(_dates(window.holidays))
    days = frozenset(window.days)
    horizon = SEARCH_DAYS + 7 * len(holidays)
    zones = zones_for(timezone, phone)
    if zones:
        start, end = window.start_hour, window.end_hour
        if channel in INTRUSIVE_CHANNELS:
            start, end = max(start, QUIET_SAFE_HOURS[0]), min(end, QUIET_SAFE_HOURS[1])
        for rule in (
            Rule(days, start, end, holidays),
            Rule(days, *QUIET_SAFE_HOURS, holidays),
        ):
            found = _earliest(now, zones, rule, horizon)
            if found is not None:
                return found
    lo, hi = CONSERVATIVE_UTC_HOURS
    start, end = max(window.start_hour, lo), min(window.end_hour, hi)
    if start >= end:
        start, end = lo, hi
    found = _earliest(now, [ZoneInfo("UTC")], Rule(days, start, end, holidays), horizon)
    if found is None:
        raise ValueError("the send window never opens: check its days and holidays")
    return found


def _dates(values: Iterable[str]) -> Iterable[date]:
    for value in values:
        try:
            yield date.fromisoformat(value)
        except ValueError:
            continue  # the API validates holidays; an odd one in an old snapshot blocks nothing


def _earliest(
    now: datetime, zones: Sequence[ZoneInfo], rule: Rule, horizon: int
) -> datetime | None:
    """The first instant >= now allowed by `rule` in every zone, within `horizon` days."""
    if rule.start_hour >= rule.end_hour or not rule.days:
        return None
    common = _intervals(now, zones[0], rule, horizon)
    for tz in zones[1:]:
        common = _intersect(common, _intervals(now, tz, rule, horizon))
    for opens, closes in common:
        if closes > now:
            return max(now, opens).astimezone(now.tzinfo)
    return None


def _intervals(now: datetime, tz: ZoneInfo, rule: Rule, horizon: int) -> list[Interval]:
    """The rule's open spans in `tz`, as UTC intervals, from the local day of `now` on."""
    first = now.astimezone(tz).date()
    out: list[Interval] = []
    for offset in range(horizon + 1):
        day = first + timedelta(days=offset)
        if day.weekday() not in rule.days or day in rule.holidays:
            continue
        out.extend(_wall_clock_span(day, tz, rule.start_hour, rule.end_hour))
    return out


def _wall_clock_span(day: date, tz: ZoneInfo, start_hour: int, end_hour: int) -> list[Interval]:
    """The instants whose wall-clock time in `tz` is within [start_hour, end_hour) on `day`, as
    UTC intervals. A clock change splits the day where it falls: after a fall back the clock
    reads the repeated hour again (a window opening at 03:00 is shut again from 02:45 to 03:00
    on Chatham's clock change), and a spring forward skips the missing hour."""
    opens = datetime.combine(day, time(start_hour))  # naive: a wall-clock reading
    closes = datetime.combine(day, time(0)) + timedelta(hours=end_hour)
    # the usual day: each reading exists once (both folds agree) and both have one offset, so
    # no change falls between them (no zone changes its clock twice in a day)
    shift = tz.utcoffset(opens) or timedelta(0)
    if (
        shift
        == tz.utcoffset(closes)
        == tz.utcoffset(opens.replace(fold=1))
        == tz.utcoffset(closes.replace(fold=1))
    ):
        return [((opens - shift).replace(tzinfo=UTC), (closes - shift).replace(tzinfo=UTC))]
    # every instant whose reading can lie between the two, whichever side of a change it is on
    lo = min(opens.replace(tzinfo=tz, fold=f).astimezone(UTC) for f in (0, 1))
    hi = max(closes.replace(tzinfo=tz, fold=f).astimezone(UTC) for f in (0, 1))
    out: list[Interval] = []
    for piece_lo, piece_hi in _steady_offsets(lo, hi, tz):
        # one UTC offset over the piece: its readings are the instants shifted by it
        shift = piece_lo.astimezone(tz).utcoffset() or timedelta(0)
        begins = max(piece_lo, (opens - shift).replace(tzinfo=UTC))
        ends = min(piece_hi, (closes - shift).replace(tzinfo=UTC))
        if begins < ends:
            out.append((begins, ends))
    return out


def _steady_offsets(lo: datetime, hi: datetime, tz: ZoneInfo) -> list[Interval]:
    """[lo, hi) cut where `tz` changes its UTC offset (found to the second)."""
    pieces: list[Interval] = []
    while lo < hi:
        last = hi - timedelta(seconds=1)
        if lo.astimezone(tz).utcoffset() == last.astimezone(tz).utcoffset():
            pieces.append((lo, hi))
            break
        # the first second with another offset than lo's: zone changes fall on whole seconds
        before, after = lo, last
        while after - before > timedelta(seconds=1):
            middle = before + (after - before) // 2
            middle = middle.replace(microsecond=0)
            if middle.astimezone(tz).utcoffset() == lo.astimezone(tz).utcoffset():
                before = middle
            else:
                after = middle
        pieces.append((lo, after))
        lo = after
    return pieces


def _intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out
