"""The one answer to "which time zone is this prospect in?" (issue 10, point 7).

Everything that reads a prospect's local time uses `prospect_zone`: the journey (through the
`Contact.zone` its input carries, resolved here when the contact snapshot is made, so workflow
code reads no settings and runs no phone lookup), the send windows and quiet hours, the cadence
simulator, the meeting times in messages, and the reading of out-of-office return dates.

The order: the prospect's explicit zone when it is a valid IANA name ("UTC" is taken at its
word); else the zone of their phone number's country and area when the number has exactly one;
else the conservative default (UTC's calendar). A number spanning several zones (a Russian
mobile, a US toll-free number) names no single zone: its calendar is the default, and its send
window must hold in every one of its zones at once (`zones`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import phonenumbers
from phonenumbers import timezone as phone_timezones

# The calendar of a prospect whose zone cannot be known; the send windows pair it with their
# conservative hours (services/outreach/cadences/send_window.py, rule 3).
DEFAULT_ZONE = "UTC"

ZoneSource = Literal["explicit", "phone", "default"]


@dataclass(frozen=True)
class ProspectZone:
    name: str  # the prospect's calendar: business days, local times in messages
    source: ZoneSource
    # the zones a send must respect: the one named, or every zone of an ambiguous phone
    # number; () when none is known (the send windows' conservative rule applies)
    zones: tuple[str, ...]

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.name)


# Names a host's zone directory answers to that are no place's zone: the server's own zone
# ("localtime", whatever the machine is set to), the POSIX rules file, the database's "no zone
# set" placeholder, and the posix/ and right/ copies of the database (right/ counts leap
# seconds). available_timezones() lists "localtime" where the host has one.
NOT_PLACES = frozenset({"localtime", "posixrules", "Factory"})
NOT_PLACE_DIRS = ("posix/", "right/")


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(
        name
        for name in available_timezones()
        if name not in NOT_PLACES and not name.startswith(NOT_PLACE_DIRS)
    )


def known_zone(name: str | None) -> ZoneInfo | None:
    """The zone named, or None when the name is empty, unknown or not a place's IANA zone. The
    one rule: the API accepts a zone name (shared.people.check_timezone) exactly when this
    resolves it."""
    if not name or name not in _known_zones():
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@lru_cache(maxsize=4096)
def phone_zones(phone: str | None) -> tuple[str, ...]:
    """The IANA zones of a phone number's country and area; () when unknown."""
    if not phone:
        return ()
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return ()
    names = phone_timezones.time_zones_for_number(number)
    return tuple(n for n in names if n in _known_zones())


@lru_cache(maxsize=4096)
def prospect_zone(
    explicit: str | None, phone: str | None = None, default: str = DEFAULT_ZONE
) -> ProspectZone:
    """The prospect's zone: `explicit`, else their phone number's, else `default`."""
    if known_zone(explicit) is not None:
        assert explicit is not None
        return ProspectZone(explicit, "explicit", (explicit,))
    zones = phone_zones(phone)
    if len(zones) == 1:
        return ProspectZone(zones[0], "phone", zones)
    fallback = default if known_zone(default) is not None else DEFAULT_ZONE
    return ProspectZone(fallback, "default", zones)
