"""What the in-flight and soak benchmarks share: the dev stack's load (prospects, a cadence,
enrolments through the API, timed), the processes' memory, latency percentiles."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.journeys import API_KEY, bounded, daytime_zone
from devstack.supervisor import Stack
from shared.auth import API_KEY_HEADER

DAY = 86_400


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def process_rss(stack: Stack, name: str) -> float:
    process = stack.child(name).process
    return rss_mb(process.pid) if process is not None else 0.0


def pct(values: list[float], q: float) -> float:
    """The q-quantile in milliseconds (nearest rank); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


@dataclass
class Load:
    """An API client on the stack with a rep and one cadence, enrolling prospects it creates."""

    stack: Stack
    http: httpx.AsyncClient
    cadence_id: str = ""
    zone: str = field(default_factory=daytime_zone)
    created: int = 0

    @classmethod
    def client(cls, concurrency: int) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            headers={API_KEY_HEADER: API_KEY},
            timeout=120,
            limits=httpx.Limits(max_connections=concurrency),
        )

    async def prepare(self, first_step_after: int, html_bytes: int = 0) -> None:
        """A rep and a two-step cadence: email and text `first_step_after` seconds after
        enrolment (a day or more: the journeys wait on that timer); with `html_bytes`, the email
        has an HTML part about that long (every journey carries its cadence's templates)."""
        pros, out = self.stack.base_url("prospecting"), self.stack.base_url("outreach")
        await self.http.post(f"{pros}/reps", json={"name": "Bench Rep", "email": "rep@example.com"})
        email = {
            "channel": "email",
            "offset_seconds": first_step_after,
            "subject": "Hi",
            "body": "Hi",
        }
        if html_bytes:
            paragraph = "<p>Hello {{ first_name }}, a paragraph of the newsletter.</p>\n"
            email["html"] = paragraph * max(1, html_bytes // len(paragraph))
        steps = [
            email,
            {"channel": "sms", "offset_seconds": first_step_after, "body": "Hi {{ first_name }}"},
        ]
        r = await self.http.post(f"{out}/cadences", json={"name": "Bench", "steps": steps})
        r.raise_for_status()
        self.cadence_id = r.json()["id"]

    async def prospects(self, n: int, concurrency: int) -> list[str]:
        ids = [""] * n
        pros = self.stack.base_url("prospecting")
        # numbered before any request goes: concurrent calls never share a phone number
        first, self.created = self.created, self.created + n

        async def create(i: int) -> None:
            k = first + i
            r = await self.http.post(
                f"{pros}/prospects",
                json={
                    "first_name": f"P{k}",
                    "email": f"p{k}-{uuid.uuid4().hex[:6]}@example.com",
                    "phone": f"+1212{2_000_000 + k:07d}",
                    "timezone": self.zone,
                },
            )
            r.raise_for_status()
            ids[i] = r.json()["id"]

        await bounded(n, concurrency, create)
        return ids

    async def enroll_new(self) -> float:
        """A new prospect, enrolled: the seconds the enrolment request took."""
        (pid,) = await self.prospects(1, 1)
        return await self.enroll(pid)

    async def enroll(self, prospect_id: str) -> float:
        """Seconds the enrolment request took (the journey is started when it answers)."""
        started = time.perf_counter()
        r = await self.http.post(
            f"{self.stack.base_url('outreach')}/enrollments",
            json={"prospect_id": prospect_id, "cadence_id": self.cadence_id},
        )
        if r.is_error:  # what the stack said, for the report (raise_for_status drops the body)
            raise RuntimeError(f"enrolment of {prospect_id}: {r.status_code} {r.text[:500]}")
        return time.perf_counter() - started
