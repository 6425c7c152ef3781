"""How long a subscriber may be down before its subscription is disabled, at the defaults: the
guide (docs/guides/event-subscriptions.md) and the setting's description say 11.5 to 14.5 hours.
It was 4.3 to 5.4 hours (15 attempts) while both said about 14."""

from __future__ import annotations

from datetime import timedelta

from services.outreach.events.delivery import DeliveryTiming
from shared.settings import Settings


def test_a_delivery_is_given_up_half_a_day_after_its_first_failure() -> None:
    timing = DeliveryTiming.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    # the waits after failed attempts 1 .. max-1; the last failure gives up at once
    waits = [timing.backoff(n) for n in range(1, timing.max_attempts)]
    ceiling = [
        min(timing.max_delay, timing.base_delay * 2 ** (n - 1))
        for n in range(1, timing.max_attempts)
    ]
    assert all((1 - timing.jitter) * c <= w <= c for w, c in zip(waits, ceiling, strict=True))
    longest = timedelta(seconds=sum(ceiling))
    shortest = longest * (1 - timing.jitter)
    assert timedelta(hours=11.5) <= shortest, shortest
    assert longest <= timedelta(hours=14.5), longest
