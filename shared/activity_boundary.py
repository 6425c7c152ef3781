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
"""

from __future__ import annotations

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


def activity_boundary(name: str) -> Callable[[F], F]:
    """`@activity.defn(name=name)` on the method, wrapped in the session and error boundary."""

    def decorate(method: F) -> F:
        signature = inspect.signature(method)
        params = list(signature.parameters.values())
        with_session = len(params) > 1 and params[1].name == "session"

        @functools.wraps(method)
        async def wrapper(self: Activities, *args: Any) -> Any:
            try:
                if not with_session:
                    return await method(self, *args)
                async with self.sessions() as session:
                    result = await method(self, session, *args)
                    await session.commit()
                    return result
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
