"""Task queue names. A journey receives them in its input, so workflow code reads no settings."""

from dataclasses import dataclass
from typing import Self


@dataclass(frozen=True)
class TaskQueues:
    journeys: str = "journeys"
    prospecting: str = "prospecting"
    outreach: str = "outreach"
    deals: str = "deals"
    referrals: str = "referrals"

    @classmethod
    def with_prefix(cls, prefix: str) -> Self:
        return cls(*(f"{prefix}{name}" for name in cls().__dict__.values()))
