"""What a chaos run will do, drawn from one seed: the journeys' kinds and the faults (what, on
which process, when, for how long), and the timeline of the faults as they really happened."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

# What the prospect does once the first touch (email and text) reached them, and the stage the
# journey must end at:
#  silent: nothing; every step of the cadence goes out, then nurture
#  reply_email, reply_sms: they answer (Mailgun's inbound webhook, Twilio's inbound SMS);
#    qualifying, where nobody qualifies them: the timeout disqualifies
#  stop: STOP by SMS (Twilio's inbound webhook): no more texts, the cadence stops, nurture
#  unsubscribe: the one-click link of the first email: no more emails, the cadence stops, nurture
KINDS: dict[str, str] = {
    "silent": "nurture",
    "reply_email": "disqualified",
    "reply_sms": "disqualified",
    "stop": "nurture",
    "unsubscribe": "nurture",
}
KIND_WEIGHTS = {"silent": 4, "reply_email": 1.5, "reply_sms": 1.5, "stop": 1.5, "unsubscribe": 1.5}

# kill -9 of a process (the supervisor starts it again), a PostgreSQL restart, a provider sandbox
# that answers errors or holds every call for a while
PROCESS_FAULTS = ("kill-worker", "kill-api", "kill-history")
SANDBOX_FAULTS = ("smtp-error", "smtp-hang", "twilio-error", "twilio-hang")
FAULT_KINDS = (*PROCESS_FAULTS, "restart-postgres", *SANDBOX_FAULTS)
SANDBOX_SECONDS = (3.0, 10.0)  # how long a sandbox outage lasts, drawn in this range


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the traffic starts
    kind: str
    target: str  # the process killed, the sandbox hit, or "postgres"
    seconds: float = 0.0  # a sandbox outage's length

    def describe(self) -> str:
        lasting = f" for {self.seconds:.0f}s" if self.seconds else ""
        return f"{self.kind} {self.target}{lasting}"


@dataclass(frozen=True)
class Plan:
    seed: int
    kinds: list[str]  # one per journey, in enrolment order
    faults: list[Fault]
    enrol_seconds: float  # the journeys are enrolled evenly over this long
    fault_seconds: float  # the faults fall in [0, fault_seconds)

    @classmethod
    def make(
        cls,
        seed: int,
        journeys: int,
        faults: int,
        *,
        enrol_seconds: float,
        fault_seconds: float,
        workers: list[str],
        apis: list[str],
        history: bool = True,
    ) -> Plan:
        """Every kind of journey and every kind of fault at least once when there are enough of
        them (the rest drawn at random); the faults at random moments of the window, sorted."""
        rng = random.Random(seed)
        names = list(KIND_WEIGHTS)
        kinds = names[:journeys] + rng.choices(
            names, weights=list(KIND_WEIGHTS.values()), k=max(0, journeys - len(names))
        )
        rng.shuffle(kinds)
        fault_kinds = [k for k in FAULT_KINDS if history or k != "kill-history"]
        drawn = fault_kinds[:faults] + rng.choices(fault_kinds, k=max(0, faults - len(fault_kinds)))
        rng.shuffle(drawn)
        moments = sorted(rng.uniform(0, fault_seconds) for _ in drawn)
        planned = [
            _fault(rng, kind, at, workers, apis) for kind, at in zip(drawn, moments, strict=True)
        ]
        return cls(seed, kinds, planned, enrol_seconds, fault_seconds)


def _fault(rng: random.Random, kind: str, at: float, workers: list[str], apis: list[str]) -> Fault:
    if kind == "kill-worker":
        return Fault(at, kind, rng.choice(workers))
    if kind == "kill-api":
        return Fault(at, kind, rng.choice(apis))
    if kind == "kill-history":
        return Fault(at, kind, "temporal-history")
    if kind == "restart-postgres":
        return Fault(at, kind, "postgres")
    sandbox = "mailbox" if kind.startswith("smtp") else "twilio-sandbox"
    return Fault(at, kind, sandbox, round(rng.uniform(*SANDBOX_SECONDS), 1))


# A fault's effects outlast it: an activity whose worker was killed is handed out again only when
# its start-to-close timeout (60 s) expires, a lost connection is noticed at the next call.
AFTERMATH = timedelta(seconds=75)


@dataclass
class Happened:
    fault: Fault
    began: datetime
    ended: datetime | None = None  # the process ready again, the server up, the outage over
    note: str = ""

    def window(self) -> tuple[datetime, datetime]:
        return self.began, self.ended or self.began


@dataclass
class Timeline:
    """The faults as they happened, in wall-clock time (the sandboxes and the ledger's clock)."""

    events: list[Happened] = field(default_factory=list)
    started: datetime | None = None  # the first enrolment: the faults' moments count from it

    def add(self, fault: Fault, began: datetime) -> Happened:
        happened = Happened(fault, began)
        self.events.append(happened)
        return happened

    def active_at(self, moment: datetime) -> list[Happened]:
        """The faults under way at `moment`."""
        return [h for h in self.events if h.window()[0] <= moment <= h.window()[1]]

    def recent_at(self, moment: datetime) -> list[Happened]:
        """The faults over by `moment`, but not by more than their aftermath."""
        return [h for h in self.events if h.window()[1] < moment <= h.window()[1] + AFTERMATH]

    def explain(self, moment: datetime | None) -> str:
        """Which fault was active then (or had just ended), for a line of the report."""
        if moment is None:
            return "time unknown"
        active = self.active_at(moment)
        if active:
            return "during " + ", ".join(f"#{self.number(h)} {h.fault.describe()}" for h in active)
        recent = self.recent_at(moment)
        if recent:
            return "after " + ", ".join(
                f"#{self.number(h)} {h.fault.describe()} "
                f"(ended {(moment - h.window()[1]).total_seconds():.0f}s before)"
                for h in recent
            )
        return "no fault active or recent"

    def number(self, happened: Happened) -> int:
        return self.events.index(happened) + 1
