"""Task queue names. A journey receives them in its input, so workflow code reads no settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskQueues:
    journeys: str = "journeys"
    prospecting: str = "prospecting"
    outreach: str = "outreach"
    deals: str = "deals"
    referrals: str = "referrals"

    @classmethod
    def with_prefix(cls, prefix: str) -> TaskQueues:
        return cls(*(f"{prefix}{name}" for name in cls().__dict__.values()))
