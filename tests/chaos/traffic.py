"""The chaos run's traffic: prospects enrolled in a cadence of several quick steps, and what each
prospect then does (reply by email or SMS, STOP, unsubscribe, nothing), through the APIs behind
nginx and the provider sandboxes, which post the signed webhooks as the providers would.

Every call is retried while the stack answers 5xx or not at all (an API replica killed, PostgreSQL
restarting), as a client or a provider would; what counts is the moment it was acknowledged."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.support.cluster import outbound
from tests.support.scenarios import Urls, daytime_zone, fast_cadence

# the cadence: a first touch on both channels, then three more steps, each a few seconds apart
STEP_SECONDS = 8
STEPS = [
    {"channel": "email", "offset_seconds": 0, "subject": "Quick question, {{ first_name }}",
     "body": "Hi {{ first_name }}, how does {{ company }} handle this today?"},
    {"channel": "sms", "offset_seconds": 0, "body": "Hi {{ first_name }}, I just emailed you."},
    {"channel": "email", "offset_seconds": STEP_SECONDS, "subject": "Following up",
     "body": "Any thoughts, {{ first_name }}?"},
    {"channel": "sms", "offset_seconds": 2 * STEP_SECONDS, "body": "Did you see my email?"},
    {"channel": "email", "offset_seconds": 3 * STEP_SECONDS, "subject": "Last note",
     "body": "I will leave it here, {{ first_name }}."},
]  # fmt: skip
# every (touch, channel) of a journey nobody answers; a prospect who acts after the first touch
# was sure to get that one
ALL_SENDS = [("step-0", "email"), ("step-0", "sms"), ("step-1", "email"), ("step-2", "sms"),
             ("step-3", "email")]  # fmt: skip
FIRST_TOUCH = ALL_SENDS[:2]
RETRY_FOR_SECONDS = 120.0  # how long a call is retried while the stack is down
POLL_SECONDS = 1.5


NURTURE_AFTER_SECONDS = 6


def chaos_cadence() -> dict[str, Any]:
    return fast_cadence(
        name="Chaos",
        steps=STEPS,
        nurture_after_seconds=NURTURE_AFTER_SECONDS,
        qualification_reminder_seconds=2,
        qualification_timeout_seconds=4,
    )


class Unavailable(RuntimeError):
    """The stack did not acknowledge a call within RETRY_FOR_SECONDS."""


def stack_trouble(response: httpx.Response) -> bool:
    """An answer worth trying again: the stack (or the replica nginx chose) was down or busy."""
    return response.status_code >= 500 or response.status_code == 429


async def retried(
    call: Callable[[], Awaitable[httpx.Response]],
    accepted: Callable[[httpx.Response], bool] = lambda r: r.status_code < 300,
    again: Callable[[httpx.Response], bool] = stack_trouble,
    what: str = "",
) -> httpx.Response:
    """The call again (0.5 s, then up to 2 s apart) until it is accepted: an answer `again`
    says is trouble, or none at all, is a stack under faults; anything else is final."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RETRY_FOR_SECONDS
    delay, last = 0.5, "no answer"
    while loop.time() < deadline:
        try:
            response = await call()
            if accepted(response):
                return response
            last = f"{response.status_code} {response.text[:200]}"
            if not again(response):
                break
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        await asyncio.sleep(delay)
        delay = min(2.0, delay * 1.5)
    raise Unavailable(f"{what}: {last}")


@dataclass
class Journey:
    index: int
    kind: str
    prospect: dict[str, Any]
    journey_id: str = ""
    enrolled_at: datetime | None = None
    first_touch_at: datetime | None = None  # when the driver saw both first messages
    acted_at: datetime | None = None  # when the prospect's action was acknowledged
    acted: list[str] = field(default_factory=list)  # provider event ids acknowledged
    error: str = ""  # what kept the driver from doing its part

    @property
    def pid(self) -> str:
        return str(self.prospect["id"])

    @property
    def email(self) -> str:
        return str(self.prospect["email"])

    @property
    def phone(self) -> str:
        return str(self.prospect["phone"])


class Sandboxes:
    """What the mailbox and the Twilio sandbox received, read in one request each and shared by
    every journey (a request per journey and second would load the machine more than the run)."""

    def __init__(self, http: httpx.AsyncClient, urls: Urls) -> None:
        self.http = http
        self.urls = urls
        self.emails: dict[str, list[dict[str, Any]]] = {}
        self.texts: dict[str, list[dict[str, Any]]] = {}
        self.fresh = asyncio.Event()

    async def refresh(self) -> None:
        mails = (await self.http.get(f"{self.urls.mailbox}/api/messages")).json()
        texts = (await self.http.get(f"{self.urls.twilio}/sandbox/messages")).json()
        emails: dict[str, list[dict[str, Any]]] = {}
        for m in mails:
            for to in {a.strip().lower() for a in m.get("envelope_to") or [m["to"]]}:
                emails.setdefault(to, []).append(m)
        by_number: dict[str, list[dict[str, Any]]] = {}
        for t in outbound(texts):
            by_number.setdefault(t["to"], []).append(t)
        self.emails, self.texts = emails, by_number
        self.fresh.set()
        self.fresh = asyncio.Event()

    async def watch(self) -> None:
        while True:
            try:
                await self.refresh()
            except httpx.HTTPError:
                pass  # the sandboxes are never killed; a slow answer is tried again
            await asyncio.sleep(POLL_SECONDS)

    async def first_touch(self, j: Journey, timeout: float) -> dict[str, Any]:
        """The journey's first email, once its first text is there too."""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            mails = self.emails.get(j.email.lower(), [])
            if mails and self.texts.get(j.phone):
                return min(mails, key=lambda m: str(m["received_at"]))
            await self.fresh.wait()
        raise Unavailable(f"no first touch for journey {j.index} within {timeout:.0f}s")


@dataclass
class Traffic:
    http: httpx.AsyncClient
    urls: Urls
    our_number: str  # the Twilio number texts come from and are answered to
    sandboxes: Sandboxes
    notify_address: str = ""  # where the rep is told of urgent tasks (setup makes it)

    async def setup(self, kinds: list[str], run: str) -> list[Journey]:
        """A rep, told of urgent tasks by email, the cadence and every prospect (before any
        fault)."""
        u = self.urls
        rep = await self._ok("POST", f"{u.prospecting}/reps",
                             json={"name": "Chaos Rep", "email": f"rep-{run}@example.org"})  # fmt: skip
        self.notify_address = f"notify-{run}@example.org"
        prefs = {"channel": "email", "email": self.notify_address}
        await self._ok("PUT", f"{u.outreach}/reps/{rep['id']}/notifications", json=prefs)
        self.cadence = await self._ok("POST", f"{u.outreach}/cadences", json=chaos_cadence())
        zone = daytime_zone()
        sem = asyncio.Semaphore(8)

        async def create(i: int, kind: str) -> Journey:
            body = {
                "first_name": f"P{i}",
                "last_name": "Chaos",
                # a domain each: nothing per-domain (caps, colleagues) ties two journeys together
                "email": f"p{i}-{run}@c{i}.example.com",
                "phone": f"+1415555{i:04d}",
                "company": f"Company {i}",
                "title": "CTO",
                "timezone": zone,
            }
            async with sem:
                prospect = await self._ok("POST", f"{u.prospecting}/prospects", json=body)
            return Journey(i, kind, prospect)

        return list(await asyncio.gather(*(create(i, k) for i, k in enumerate(kinds))))

    async def drive(self, j: Journey, first_touch_timeout: float) -> None:
        """Enrol the prospect, then, once the first touch reached them, do what their kind does."""
        try:
            enrollment = await self._ok(
                "POST",
                f"{self.urls.outreach}/enrollments",
                json={"prospect_id": j.pid, "cadence_id": self.cadence["id"]},
            )
            j.journey_id = enrollment["journey_id"]
            j.enrolled_at = datetime.now(UTC)
            if j.kind == "silent":
                return
            first = await self.sandboxes.first_touch(j, first_touch_timeout)
            j.first_touch_at = datetime.now(UTC)
            await ACTIONS[j.kind](self, j, first)
            j.acted_at = datetime.now(UTC)
        except Exception as exc:  # the driver failing is part of the report
            j.error = f"{type(exc).__name__}: {exc}"

    async def _ok(self, method: str, url: str, **kw: Any) -> Any:
        response = await retried(lambda: self.http.request(method, url, **kw), what=url)
        return response.json()

    async def reply_email(self, j: Journey, first: dict[str, Any]) -> None:
        url = f"{self.urls.mailbox}/api/messages/{first['id']}/reply"
        await self._webhook(url, {"text": "Sounds interesting, tell me more"})
        j.acted.append("mailgun-reply")

    async def reply_sms(self, j: Journey, first: dict[str, Any]) -> None:
        await self._text(j, "Yes, call me next week")

    async def stop(self, j: Journey, first: dict[str, Any]) -> None:
        await self._text(j, "STOP")

    async def unsubscribe(self, j: Journey, first: dict[str, Any]) -> None:
        header = next(
            (v for k, v in first["headers"].items() if k.lower() == "list-unsubscribe"), ""
        )
        url = next(iter(re.findall(r"<(https?://[^>]+)>", header)), None)
        if url is None:
            raise Unavailable(f"no unsubscribe link in {header!r}")
        await retried(lambda: self.http.post(url, data={"List-Unsubscribe": "One-Click"}), what=url)
        j.acted.append(f"unsubscribe:{url.rsplit('/', 1)[-1]}")

    async def _text(self, j: Journey, body: str) -> None:
        sms = {"from": j.phone, "to": self.our_number, "body": body}
        answer = await self._webhook(f"{self.urls.twilio}/sandbox/inbound-sms", sms)
        j.acted.append(str(answer["sid"]))  # Twilio's MessageSid: outreach's event id

    async def _webhook(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        """A sandbox posts the provider's signed webhook (its own answer is a 200 carrying
        outreach's status); the provider tries again until outreach acknowledges it."""

        def status(r: httpx.Response) -> int:
            return int(r.json().get("webhook_status") or 0) if r.status_code < 300 else 0

        response = await retried(
            lambda: self.http.post(url, json=body),
            accepted=lambda r: 200 <= status(r) < 300,
            again=lambda r: stack_trouble(r) or status(r) == 0 or status(r) >= 500,
            what=url,
        )
        return dict(response.json())


Action = Callable[[Traffic, Journey, dict[str, Any]], Awaitable[None]]
ACTIONS: dict[str, Action] = {
    "reply_email": Traffic.reply_email,
    "reply_sms": Traffic.reply_sms,
    "stop": Traffic.stop,
    "unsubscribe": Traffic.unsubscribe,
}
