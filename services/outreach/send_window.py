"""When a touch may go out, in the prospect's own time zone."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.contracts.journey import SendWindow

# Texts and calls never reach a person outside these local hours, whatever a cadence says.
QUIET_SAFE_HOURS = (8, 21)
INTRUSIVE_CHANNELS = frozenset({"sms", "call_task"})
SEARCH_DAYS = 15


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def next_allowed(now: datetime, timezone: str, channel: str, window: SendWindow) -> datetime:
    """The earliest moment at or after `now` (aware) when `channel` may reach the prospect."""
    tz = zone(timezone)
    start_hour, end_hour = window.start_hour, window.end_hour
    if channel in INTRUSIVE_CHANNELS:
        start_hour = max(start_hour, QUIET_SAFE_HOURS[0])
        end_hour = min(end_hour, QUIET_SAFE_HOURS[1])
    local_now = now.astimezone(tz)
    for day in range(SEARCH_DAYS):
        date = local_now.date() + timedelta(days=day)
        if date.weekday() not in window.days or start_hour >= end_hour:
            continue
        opens = datetime.combine(date, time(start_hour), tz)
        closes = (
            datetime.combine(date + timedelta(days=1), time(0), tz)
            if end_hour >= 24
            else datetime.combine(date, time(end_hour), tz)
        )
        if local_now < closes:
            return max(now, opens.astimezone(now.tzinfo))
    raise ValueError("the send window never opens: check its days and hours")
