"""Prometheus metrics of an API process: its HTTP traffic, its webhooks, its relays' backlogs and
the business gauges its service declares, served at GET /metrics.

Each app has its own registry (a test process serves four apps; a production process one), so
/metrics shows that service alone. Labels never hold personal data: routes are labelled by their
template (`/prospects/{prospect_id}`, never the id), webhooks by provider and result.

Two kinds of numbers:
- counted in the process (`*_total`): HTTP requests and webhooks, since the process started;
  Prometheus sums them over replicas (`sum(rate(...))`).
- read from the service's database at scrape (gauges): the ledger by channel and status, replies,
  opt-outs, tasks, journeys by stage, relay backlogs. They are the database's truth, the same on
  every replica: aggregate them with `max`, never `sum`. A scrape reads them at most once per
  `GAUGE_TTL` seconds (several Prometheus servers or a short interval cost no more queries).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.access import AccessTable

log = logging.getLogger(__name__)

PREFIX = "closeflow_"
RELAY_GAUGES = (f"{PREFIX}relay_backlog", f"{PREFIX}relay_oldest_age_seconds")
GAUGE_TTL = 5.0
GAUGE_TIMEOUT = 5.0  # a scrape never waits longer on the database (Prometheus gives 10 s)
# request latency buckets (seconds): most routes answer in milliseconds; webhooks and starts
# that wait on Temporal in tens to hundreds
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WEBHOOK_PREFIX = "/webhooks/"
UNMATCHED = "unmatched"  # the route label of a request no route matched (404s of any path)

Labels = tuple[str, ...]
Rows = Sequence[tuple[Labels, float]]


@dataclass(frozen=True)
class DbGauge:
    """A gauge read from the service's own database at scrape: `read(session)` gives one value
    per label set (`labels` names them; none for a single value)."""

    name: str  # without the closeflow_ prefix
    help: str
    read: Callable[[AsyncSession], Awaitable[Rows]]
    labels: Labels = ()


@dataclass
class RelayBacklog:
    """A relay's table, read at scrape: rows due and not finished yet, and how long the oldest
    of them has been due. A row scheduled for later (a follow-up) is no backlog before it is due."""

    name: str
    model: Any
    pending: Callable[[], Any]  # the relay's "not finished" condition
    due_since: Any = None  # when a row became due (None: its created_at)


@dataclass
class ServiceMetrics:
    """One app's registry and what its scrape reads (kept on app.state.metrics)."""

    service: str
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )
    gauges: list[DbGauge] = field(default_factory=list)
    relays: list[RelayBacklog] = field(default_factory=list)
    sessions: Callable[[], async_sessionmaker[AsyncSession] | None] = lambda: None
    _cache: list[Metric] = field(default_factory=list)
    _read_at: float = float("-inf")
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.requests = Counter(
            f"{PREFIX}http_requests_total",
            "HTTP requests answered, by route template, method and status code",
            ("service", "route", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{PREFIX}http_request_duration_seconds",
            "time to answer an HTTP request, by route template and method",
            ("service", "route", "method"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.webhooks = Counter(
            f"{PREFIX}webhooks_total",
            "provider webhook requests by provider and result (accepted, invalid_signature, "
            "rejected, error)",
            ("provider", "result"),
            registry=self.registry,
        )
        self.registry.register(_Snapshot(self))
        # bounded: route templates x methods x status codes the app answers
        self._series: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """One answered request: counted and timed under its route template, and counted as a
        webhook of its provider when the route is one (HttpMetrics, and the routes answered
        before routing: the Twilio status callbacks' fast path)."""
        key = (route, method, status)
        series = self._series.get(key)
        if series is None:  # .labels() takes a lock and builds a tuple: once per label set
            series = self._series[key] = self._children(*key)
        requests, latency, webhook = series
        requests.inc()
        latency.observe(seconds)
        if webhook is not None:
            webhook.inc()

    def _children(self, route: str, method: str, status: int) -> tuple[Any, Any, Any]:
        webhook = None
        if route.startswith(WEBHOOK_PREFIX):
            provider = route[len(WEBHOOK_PREFIX) :].split("/", 1)[0]
            webhook = self.webhooks.labels(provider, webhook_result(status))
        return (
            self.requests.labels(self.service, route, method, str(status)),
            self.latency.labels(self.service, route, method),
            webhook,
        )

    async def refresh(self) -> None:
        """Read the database gauges unless read less than GAUGE_TTL seconds ago."""
        async with self._lock:
            if time.monotonic() - self._read_at < GAUGE_TTL:
                return
            sessions = self.sessions()
            if sessions is None:
                return
            try:
                metrics = await asyncio.wait_for(self._read(sessions), GAUGE_TIMEOUT)
            except Exception as exc:
                # the database is down: the counters are still worth a scrape, the gauges go
                # missing (absent series, not stale values); /readyz says what is down
                log.warning("metrics: database gauges not read: %s", type(exc).__name__)
                metrics = []
            self._cache = metrics
            self._read_at = time.monotonic()

    async def _read(self, sessions: async_sessionmaker[AsyncSession]) -> list[Metric]:
        async with sessions() as session:
            metrics = [await _read_gauge(session, self.service, g) for g in self.gauges]
            metrics.extend(await _read_relays(session, self.service, self.relays))
        return metrics


class _Snapshot(Collector):
    """Hands the registry the gauges last read by `refresh` (collect() itself cannot await)."""

    def __init__(self, owner: ServiceMetrics) -> None:
        self.owner = owner

    def collect(self) -> Iterable[Metric]:
        return list(self.owner._cache)

    def describe(self) -> Iterable[Metric]:
        return []  # names vary with what the service declares: never checked for clashes


async def _read_gauge(session: AsyncSession, service: str, gauge: DbGauge) -> Metric:
    family = GaugeMetricFamily(
        f"{PREFIX}{gauge.name}", gauge.help, labels=("service", *gauge.labels)
    )
    for labels, value in await gauge.read(session):
        family.add_metric([service, *labels], value)
    return family


async def _read_relays(
    session: AsyncSession, service: str, relays: Sequence[RelayBacklog]
) -> list[Metric]:
    backlog = GaugeMetricFamily(
        f"{PREFIX}relay_backlog",
        "relay rows due and not finished yet (waiting for the relay or backing off)",
        labels=("service", "relay"),
    )
    oldest = GaugeMetricFamily(
        f"{PREFIX}relay_oldest_age_seconds",
        "how long the oldest of them has been due (0: none)",
        labels=("service", "relay"),
    )
    now = datetime.now(UTC)
    for relay in relays:
        since = relay.model.created_at if relay.due_since is None else relay.due_since
        query = select(func.count(), func.min(since)).where(relay.pending(), since <= now)
        count, first = (await session.execute(query)).one()
        backlog.add_metric([service, relay.name], float(count))
        age = max(0.0, now.timestamp() - first.timestamp()) if first else 0.0
        oldest.add_metric([service, relay.name], age)
    return [backlog, oldest] if relays else []


def route_template(scope: Scope) -> str:
    """The matched route's full template (`/deals/{deal_id}`), never the concrete path."""
    app = scope.get("app")
    table: AccessTable | None = getattr(getattr(app, "state", None), "access", None)
    if table is None or scope.get("route") is None:
        return UNMATCHED
    return table.template_of(app, Request(scope)) or UNMATCHED  # type: ignore[arg-type]


# The request line's method is whatever a client writes: any other is counted as "other", or
# each made-up one would be a new series in every process (and Prometheus) for good.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"


def method_label(scope: Scope) -> str:
    method = str(scope.get("method", ""))
    return method if method in METHODS else OTHER_METHOD


def webhook_result(status: int) -> str:
    if status < 400:
        return "accepted"
    if status in (401, 403):
        # every webhook answers a bad or replayed signature 403; Postmark's, which carry a
        # password instead, a wrong one 401: the same failure for the alert that counts them
        return "invalid_signature"
    if status < 500:
        return "rejected"
    return "error"


class HttpMetrics:
    """ASGI middleware: counts and times every HTTP request by route template."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before the response started is answered 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe(
                route_template(scope),
                method_label(scope),
                status,
                time.perf_counter() - started,
            )


def exported_names(gauges: Iterable[DbGauge]) -> set[str]:
    """Every series name an API's /metrics may carry, with these business gauges (the names
    the dashboard, the alert rules and docs/operations.md may use)."""
    metrics = ServiceMetrics("any")
    series = {s.name for family in metrics.registry.collect() for s in family.samples}
    for family in metrics.registry.collect():  # a histogram's samples appear once observed
        if family.type == "histogram":
            series |= {f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count")}
        if family.type == "counter":
            series.add(f"{family.name}_total")
    return series | set(RELAY_GAUGES) | {f"{PREFIX}{g.name}" for g in gauges}
