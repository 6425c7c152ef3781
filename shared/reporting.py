"""Reporting windows: the [from, to) an analytics route counts over, as its query string gives it
(prospecting's funnel, its dashboard and CSV export; deals' counts by source; referrals'
analytics).

Each bound a caller gives must lie between EARLIEST and LATEST: a report steps back from its
window (the default `from`, the bottleneck's benchmark periods) and forward by months, and at
the ends of the calendar that arithmetic overflows (`date(1, 1, 1) - timedelta(days=30)`,
December 9999's next month), which was a 500. A time must carry its UTC offset, as everywhere
in the API (`OffsetDatetime`): without one it would mean a different moment on every server.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

from fastapi import Query

from shared.errors import invalid
from shared.requests import OffsetDatetime, with_offset

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
DEFAULT_LENGTH = timedelta(days=30)

# the query parameters of a period given as times (deals' and referrals' analytics)
PeriodFrom = Annotated[
    OffsetDatetime | None,
    Query(
        alias="from",
        description="ISO time with a UTC offset, inclusive; default: 30 days before to",
    ),
]
PeriodTo = Annotated[
    OffsetDatetime | None,
    Query(alias="to", description="ISO time with a UTC offset, exclusive; default: now"),
]


def _checked(name: str, value: datetime) -> datetime:
    """`value` in UTC, or a 422 naming the query parameter."""
    try:
        with_offset(value)
    except ValueError as err:
        raise invalid(name, str(err)) from None
    if not EARLIEST <= value <= LATEST:  # compared before any arithmetic: that overflows
        first, last = EARLIEST.date().isoformat(), LATEST.date().isoformat()
        raise invalid(name, f"must be between {first} and {last}")
    return value.astimezone(UTC)


def reporting_window(
    start: datetime | None,
    end: datetime | None,
    *,
    default_end: datetime | None = None,
    default_length: timedelta = DEFAULT_LENGTH,
    longest: timedelta | None = None,
) -> tuple[datetime, datetime]:
    """[from, to) in UTC: `to` defaults to `default_end` (now), `from` to `default_length`
    before `to`; 422s name the parameter at fault."""
    given_start = _checked("from", start) if start else None
    end = _checked("to", end) if end else (default_end or datetime.now(UTC))
    start = given_start or end - default_length
    if start >= end:
        raise invalid("from", "must be before to")
    if longest is not None and end - start > longest:
        raise invalid("from", f"the window is longer than {longest.days} days")
    return start, end


def midnight(day: date) -> datetime:
    """The start of `day` in UTC: the funnel's windows are whole UTC days."""
    return datetime.combine(day, time(), tzinfo=UTC)
