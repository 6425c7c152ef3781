"""The one boundary between a service's use cases and Temporal: every service activity is a
method decorated with `activity_boundary(name)`.

- Session: a method with a `session` parameter (right after `self`) gets one from the
  activities object's `sessions` factory; it is committed when the method returns and rolled
  back when it raises. The activity's Temporal signature is the method's without `session`: one
  dataclass in, one out. A method without that parameter opens its own sessions (a send that
  commits its ledger in steps, an insert whose IntegrityError is an idempotency race it handles
  itself).
- Errors: an `AppError` whose status no retry can change (404, 409, other 4xx) becomes a
  non-retryable `ApplicationError` whose type is one of `shared.contracts.errors.NON_RETRYABLE`,
  carrying the error's code and details; anything else (the database away, a peer's 503)
  propagates unchanged and Temporal retries the activity.
- Heartbeats (issue 13): an activity scheduled with a heartbeat timeout heartbeats while it runs,
  so that an attempt the server recorded as started but no worker received (the overloaded dev
  server loses some: "context canceled") is retried after that timeout instead of the whole
  start-to-close timeout. A heartbeat lets the server deliver cancellations; the activity ignores
  them, as it did without heartbeats (a send stopped halfway would leave its ledger row in doubt),
  except a stopping worker's, as before.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from shared.contracts.errors import error_type_for
from shared.errors import AppError

MARK = "__closeflow_activity_boundary__"  # set on every wrapped activity (tests check it)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
T = TypeVar("T")


class Activities(Protocol):
    """What the boundary needs of an activities object."""

    sessions: async_sessionmaker[AsyncSession]


def application_error(err: AppError) -> ApplicationError | None:
    """The ApplicationError for a service error that retrying cannot fix, else None."""
    kind = error_type_for(err.status, err.code)
    if kind is None:
        return None
    return ApplicationError(
        err.message, {"code": err.code, "details": err.details}, type=kind, non_retryable=True
    )


async def _beat(every: float) -> None:
    # the first after `every`: an activity that ends sooner costs the server no heartbeat
    while True:
        await asyncio.sleep(every)
        activity.heartbeat()


async def heartbeating(work: Awaitable[T]) -> T:
    """`work`, heartbeating three times per heartbeat timeout when the activity has one; a
    cancellation other than the worker's shutdown does not stop it (module docstring)."""
    timeout = activity.info().heartbeat_timeout if activity.in_activity() else None
    if not timeout:
        return await work
    running = asyncio.ensure_future(work)
    beat = asyncio.ensure_future(_beat(timeout.total_seconds() / 3))
    try:
        while True:
            try:
                return await asyncio.shield(running)
            except asyncio.CancelledError:
                details = activity.cancellation_details()
                if running.done() or details is None or details.worker_shutdown:
                    running.cancel()
                    raise
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
    finally:
        beat.cancel()


def activity_boundary(name: str) -> Callable[[F], F]:
    """`@activity.defn(name=name)` on the method, wrapped in the session and error boundary."""

    def decorate(method: F) -> F:
        signature = inspect.signature(method)
        params = list(signature.parameters.values())
        with_session = len(params) > 1 and params[1].name == "session"

        async def run(self: Activities, *args: Any) -> Any:
            if not with_session:
                return await method(self, *args)
            async with self.sessions() as session:
                result = await method(self, session, *args)
                await session.commit()
                return result

        @functools.wraps(method)
        async def wrapper(self: Activities, *args: Any) -> Any:
            try:
                return await heartbeating(run(self, *args))
            except AppError as err:
                mapped = application_error(err)
                if mapped is None:
                    raise
                raise mapped from err

        if with_session:
            # Temporal reads the activity's parameters from the signature and the annotations
            del params[1]
            setattr(wrapper, "__signature__", signature.replace(parameters=params))  # noqa: B010
            wrapper.__annotations__ = {
                k: v for k, v in method.__annotations__.items() if k != "session"
            }
        setattr(wrapper, MARK, True)
        return cast(F, activity.defn(name=name)(wrapper))

    return decorate
