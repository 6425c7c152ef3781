"""What closeflow is made of: its services and task queues, and where each one's code lives.

Service code is named here as import paths, imported only by the process that runs it: a
`closeflow serve deals` process never loads outreach, and `closeflow --help` loads no service.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from shared.contracts.queues import TaskQueues
from shared.settings import SERVICES, Settings

if TYPE_CHECKING:  # types only: the CLI imports this module and must start fast
    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

JOURNEYS = "journeys"  # the workflows' queue; every other queue is a service's activities
QUEUES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TaskQueues))
ALL_QUEUES = "all"

Activities = list[Callable[..., Any]]


def expand_queues(queues: Sequence[str]) -> list[str]:
    """Queue names in order without repeats; "all" is every queue."""
    names = list(QUEUES) if ALL_QUEUES in queues else list(dict.fromkeys(queues))
    unknown = [q for q in names if q not in QUEUES]
    if unknown:
        raise ValueError(f"unknown queue(s) {', '.join(unknown)}; expected {', '.join(QUEUES)}")
    return names


@dataclass(frozen=True)
class Service:
    name: str
    app: str  # "module:factory": create_app(settings=None, *, temporal_client=None) -> FastAPI
    activities: str  # module with activities_for(settings, sessions) [and close_activities]


REGISTRY: dict[str, Service] = {
    service.name: service
    for service in (
        Service(
            "prospecting", "services.prospecting.app:create_app", "services.prospecting.activities"
        ),
        Service("outreach", "services.outreach.app:create_app", "services.outreach.activities"),
        Service("deals", "services.deals.app:create_app", "services.deals.activities"),
        Service("referrals", "services.referrals.app:create_app", "services.referrals.activities"),
    )
}
assert tuple(REGISTRY) == SERVICES, "every service in shared.settings.SERVICES, in its order"


class ActivitiesModule(Protocol):
    """services/<name>/activities.py as the worker uses it."""

    def activities_for(
        self, settings: Settings, sessions: async_sessionmaker[AsyncSession]
    ) -> Activities: ...


def app_factory(service: str) -> Callable[..., FastAPI]:
    module, _, factory = REGISTRY[service].app.partition(":")
    return cast("Callable[..., FastAPI]", getattr(importlib.import_module(module), factory))


def activities_module(service: str) -> ActivitiesModule:
    return cast("ActivitiesModule", importlib.import_module(REGISTRY[service].activities))


def activities_closer(module: ActivitiesModule) -> Callable[[Activities], Awaitable[None]] | None:
    """close_activities(activities), for modules whose activities hold clients to close."""
    closer: Callable[[Activities], Awaitable[None]] | None = getattr(
        module, "close_activities", None
    )
    return closer
