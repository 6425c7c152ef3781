"""When each cadence touch falls due and which A/B variant a prospect gets.

Pure and deterministic (stdlib only): the journey runs it inside the workflow sandbox and the
simulation endpoint runs the very same code, so a simulated timeline is what a journey does.
"""

import hashlib
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.contracts.journey import CadenceStep, StepVariant

WEEKEND = (5, 6)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def repeated(local: datetime) -> bool:
    """Whether the clock shows this reading twice (inside the hour repeated when it falls back)."""
    return local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset()


def clock_text(local: datetime, fmt: str) -> str:
    """`local` formatted, and, when the clock shows that reading twice, which of the two: the
    zone's abbreviation ("02:00 CEST", then "02:00 CET") or, for a zone that has none, its
    offset ("02:00 UTC-03")."""
    text = local.strftime(fmt)
    if not repeated(local):
        return text
    name = local.tzname() or ""
    return f"{text} {name if name.isalpha() else 'UTC' + name}"


def local_text(when: datetime, tz: str) -> str:
    """`when` as the prospect reads it, with their zone's name: "Monday 07 December at 09:00
    (Europe/Berlin)" (the format of meeting times in messages); a reading the clock shows twice
    says which: "Sunday 26 October at 02:00 CET (Europe/Berlin)"."""
    local = when.astimezone(zone(tz))
    return f"{clock_text(local, '%A %d %B at %H:%M')} ({local.tzinfo})"


def add_business_days(
    start: datetime, days: int, tz: str, holidays: Iterable[str] = ()
) -> datetime:
    """`days` business days after `start`, at the same local wall-clock time in `tz`."""
    if days <= 0:
        return start
    skip = set(holidays)
    local = start.astimezone(zone(tz))
    counted = 0
    while counted < days:
        # aware arithmetic on one tzinfo keeps the wall-clock time across DST changes
        local += timedelta(days=1)
        if local.weekday() not in WEEKEND and local.date().isoformat() not in skip:
            counted += 1
    return local.astimezone(UTC)


def step_due(
    start: datetime,
    step: CadenceStep,
    tz: str,
    holidays: Iterable[str] = (),
    delay: timedelta = timedelta(0),
) -> datetime:
    """When `step` of a journey enrolled at `start` is due: business days on the prospect's
    calendar, then seconds; later by `delay`, what the journey's late touches added."""
    base = add_business_days(start, step.business_days, tz, holidays)
    return base + timedelta(seconds=step.offset_seconds) + delay


def touch_groups(steps: list[CadenceStep]) -> list[list[CadenceStep]]:
    """Steps due at the same offset go out together as one touch (the first is dual-channel)."""
    groups: dict[tuple[int, int], list[CadenceStep]] = {}
    for step in steps:
        groups.setdefault((step.business_days, step.offset_seconds), []).append(step)
    return [groups[key] for key in sorted(groups)]


def choose_variant(prospect_id: str, step_key: str, variants: list[StepVariant]) -> StepVariant:
    """A stable, weighted split: the same prospect always gets the same variant of a step."""
    total = sum(max(v.weight, 0) for v in variants)
    if total <= 0:
        return variants[0]
    digest = hashlib.sha256(f"{prospect_id}:{step_key}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") % total
    for variant in variants:
        point -= max(variant.weight, 0)
        if point < 0:
            return variant
    return variants[-1]


def personalise(prospect_id: str, index: int, steps: list[CadenceStep]) -> list[CadenceStep]:
    """The steps of touch `index` as this prospect receives them (variants resolved)."""
    out = []
    for position, step in enumerate(steps):
        if not step.variants:
            out.append(step)
            continue
        chosen = choose_variant(prospect_id, f"{index}.{position}", step.variants)
        out.append(
            replace(
                step,
                subject=chosen.subject,
                body=chosen.body,
                html=chosen.html,
                variant=chosen.name,
                variants=[],
            )
        )
    return out
