"""Sending caps as pure functions of what was sent recently and of `now` (always a parameter).

Caps are rolling: "hourly" means the last 60 minutes, "daily" the last 24 hours, as mailbox
providers count. A cap of 0 means no cap. When a cap is reached, the next slot opens when the
oldest send still counted ages out of its period: that is the `defer_until` a deferred send gets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
_NEVER_USED = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class CapState:
    """One cap over one rolling period: how many sends it counts now, and the cap-th latest."""

    cap: int
    period: timedelta
    count: int = 0
    cap_th_latest: datetime | None = None  # the cap-th most recent send in the period

    def free_at(self, now: datetime) -> datetime:
        """When one more send fits: `now` if it already does."""
        if self.cap <= 0 or self.count < self.cap:
            return now
        if self.cap_th_latest is None:
            raise ValueError("a full cap needs the time of its cap-th latest send")
        # once that send leaves the period, cap - 1 remain counted and one more fits
        return max(now, self.cap_th_latest + self.period)


@dataclass(frozen=True)
class SenderState:
    sender_id: str
    hourly: CapState
    daily: CapState
    last_used_at: datetime | None
    created_at: datetime

    def free_at(self, now: datetime) -> datetime:
        return max(self.hourly.free_at(now), self.daily.free_at(now))


@dataclass(frozen=True)
class Decision:
    sender_id: str | None = None  # None: the configured default From, uncapped
    defer_until: datetime | None = None  # set: nothing may go out before then


def choose_sender(senders: Sequence[SenderState], now: datetime) -> SenderState | None:
    """Round robin: of the senders with room now, the one used longest ago (never used first)."""
    free = [s for s in senders if s.free_at(now) <= now]
    if not free:
        return None
    return min(free, key=lambda s: (s.last_used_at or _NEVER_USED, s.created_at, s.sender_id))


def decide(senders: Sequence[SenderState], domain: CapState, now: datetime) -> Decision:
    """Which sender an email goes out from now, or until when it must wait.

    `senders` are the active ones; none means the default From without sender caps. The
    recipient-domain cap applies either way.
    """
    domain_free = domain.free_at(now)
    if not senders:
        return Decision(None, domain_free if domain_free > now else None)
    if domain_free > now:
        senders_free = min(s.free_at(now) for s in senders)
        return Decision(None, max(domain_free, senders_free))
    chosen = choose_sender(senders, now)
    if chosen is None:
        return Decision(None, min(s.free_at(now) for s in senders))
    return Decision(chosen.sender_id, None)
