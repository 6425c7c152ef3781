"""Starting referral intakes, durably: the referrals app's user of the one relay.

A stored referral is due for its intake start (`intake_next_attempt_at`). The request that
stored it tries at once, after its commit, holding the row's lease; whatever could not be
started (Temporal unreachable, a crash right after the commit) stays due and the relay running
in the referrals app retries it with the relay's backoff until the workflow exists. The
workflow id is the referral's (`referral_intake_id`), so a retry after an ambiguous failure
finds the workflow already started and counts that as done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from services.referrals.models import Referral
from services.referrals.service import RECEIVED, intake_input
from shared.app import run_during_lifespan
from shared.contracts.journey import ReferralIntakeInput, referral_intake_id
from shared.contracts.queues import TaskQueues
from shared.db import utcnow
from shared.relay import LeasedTable, Outcome, Relay, RelayTiming, done, retry

log = logging.getLogger(__name__)

INTAKE_WORKFLOW = "ReferralIntake"  # by name: services never import workflows/
START_TIMEOUT = timedelta(seconds=10)


@dataclass(frozen=True)
class IntakeTiming(RelayTiming):
    lease: float = 30.0  # longer than a start's own timeout (START_TIMEOUT)


@dataclass(frozen=True)
class PendingIntake:
    id: str
    attempts: int
    input: ReferralIntakeInput


class IntakeRelay(Relay[PendingIntake]):
    timing: IntakeTiming

    def __init__(
        self,
        sessions: Callable[[], async_sessionmaker[AsyncSession]],
        client: Callable[[], Client],
        queues: TaskQueues,
        timing: IntakeTiming | None = None,
    ) -> None:
        table = LeasedTable(
            id=Referral.id,
            next_attempt_at=Referral.intake_next_attempt_at,
            attempts=Referral.intake_attempts,
            last_error=Referral.intake_last_error,
            pending=_not_started,
            load=lambda session, ids: _load(session, ids, queues),
            order_by=(Referral.intake_next_attempt_at, Referral.id),
        )
        super().__init__("intake relay", sessions, table, self._start, timing or IntakeTiming())
        self._client = client
        self._queues = queues

    async def start_now(self, referral_ids: Sequence[str]) -> None:
        """The storing request's own attempt, after its commit (the rows are leased to it)."""
        async with self._sessions()() as session:
            items = await _load(session, referral_ids, self._queues)
        await self.handle(items)

    async def _start(self, item: PendingIntake) -> Outcome:
        try:
            await self._client().start_workflow(
                INTAKE_WORKFLOW,
                item.input,
                id=referral_intake_id(item.id),
                task_queue=self._queues.journeys,
                # a finished intake is never run twice; a failed one may be retried
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                rpc_timeout=START_TIMEOUT,
            )
        except WorkflowAlreadyStartedError:
            pass  # started by an earlier attempt whose bookkeeping did not commit
        except Exception as err:  # Temporal away or refusing: the referral waits, stored
            return retry(f"intake of referral {item.id}: {type(err).__name__}: {err}")
        return done(intake_started_at=utcnow())


def _not_started() -> Any:
    return Referral.intake_started_at.is_(None) & (Referral.status == RECEIVED)


async def _load(
    session: AsyncSession, ids: Sequence[Any], queues: TaskQueues
) -> list[PendingIntake]:
    referrals = await session.scalars(
        select(Referral)
        .where(Referral.id.in_(ids))
        .options(selectinload(Referral.ask))
        .order_by(Referral.created_at, Referral.id)
    )
    return [
        PendingIntake(r.id, r.intake_attempts, intake_input(r, r.ask, queues))
        for r in referrals.all()
    ]


def install_relay(app: FastAPI, queues: TaskQueues, timing: IntakeTiming | None = None) -> None:
    """app.state.intakes, its loop running while the app's lifespan does."""
    relay = IntakeRelay(lambda: app.state.sessions, lambda: app.state.temporal, queues, timing)
    app.state.intakes = relay
    run_during_lifespan(app, relay)
