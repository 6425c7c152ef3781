"""The intake workflows of referrals that are gone, deleted from Temporal.

An intake's history holds the referred person's name, email and phone (its input), encrypted
with the referral's own data key (shared.codec.referral_scope), which is shredded only with the
prospect the referral made. The referrals forgotten without their workflow made no prospect: the
person had been erased before a client named them, so their intake was refused (the workflow
failed) and the key lives on. Migration 0010_forget_erased_referrals deleted such referrals but
could not reach Temporal, and the re-sent erasure order (prospecting's 0018) then found no
referral left whose workflow to delete: the history stayed readable (through the codec server,
say) until the namespace's retention (30 days) dropped it, and in Temporal's backups for good.

So the referrals app, at every start and daily after that, lists the intakes that ended
without completing (one that completed made a prospect, whose erasure deletes its workflow with
its referral) and deletes each one whose referral is no longer stored, its data key shredded
first (no copy of its history, backups included, can be read then): a referral is stored before
its intake starts (services.referrals.intakes), so an intake without one belongs to a referral
that was forgotten. A Temporal that is away makes the pass fail; the next one, after a shorter
pause, tries again. Shredding and deleting are idempotent: replicas may sweep at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from services.referrals.intakes import INTAKE_WORKFLOW
from services.referrals.models import Referral
from shared.app import run_during_lifespan
from shared.contracts.journey import referral_intake_id
from shared.contracts.queues import TaskQueues
from shared.erasure import forget_workflow, shred_intake_keys
from shared.loops import RepeatingPass

log = logging.getLogger(__name__)

INTAKE_PREFIX = referral_intake_id("")
SWEEP_SECONDS = 24 * 3600.0
RETRY_SECONDS = 60.0  # after a failed pass (Temporal or the database away)
CHECKED_AT_ONCE = 500  # referral ids per existence query


class ForgottenIntakes(RepeatingPass):
    def __init__(
        self,
        sessions: Callable[[], async_sessionmaker[AsyncSession]],
        client: Callable[[], Client],
        queues: TaskQueues,
    ) -> None:
        super().__init__("forgotten intakes sweep")
        # intakes that ended without completing (failed, terminated, timed out: each holds its
        # input for the retention period), on this deployment's queue (a namespace may serve
        # others). Not a running one: a referrals app pointed at the wrong database by mistake
        # would otherwise take every live intake for forgotten; one of a forgotten referral
        # fails soon enough (prospecting refuses the person) and goes on the next pass.
        self._ended = (
            f"WorkflowType = '{INTAKE_WORKFLOW}' AND TaskQueue = '{queues.journeys}'"
            " AND ExecutionStatus != 'Completed' AND ExecutionStatus != 'Running'"
        )
        self._sessions = sessions
        self._client = client
        self._swept = False  # the last pass went through
        self.deleted = 0  # intakes deleted by this process (tests, the log)

    def pause_seconds(self) -> float:
        return SWEEP_SECONDS if self._swept else RETRY_SECONDS

    def stop_grace(self) -> float:
        return 5.0

    async def one_pass(self) -> bool:
        self._swept = False
        gone = await self.forgotten()
        # their keys first: Temporal's backups keep the deleted histories
        await shred_intake_keys(self._client(), gone)
        for referral_id in gone:
            await forget_workflow(self._client(), referral_intake_id(referral_id))
        if gone:
            log.info("%s: deleted %d intakes of forgotten referrals", self.name, len(gone))
        self.deleted += len(gone)
        self._swept = True
        return False

    async def forgotten(self) -> list[str]:
        """The referral ids of intakes that ended uncompleted and whose referral is not stored."""
        listed = {
            execution.id.removeprefix(INTAKE_PREFIX)
            async for execution in self._client().list_workflows(self._ended)
            if execution.id.startswith(INTAKE_PREFIX)
        }
        ids = sorted(listed)
        stored: set[str] = set()
        async with self._sessions()() as session:
            for start in range(0, len(ids), CHECKED_AT_ONCE):
                chunk = ids[start : start + CHECKED_AT_ONCE]
                found = await session.scalars(select(Referral.id).where(Referral.id.in_(chunk)))
                stored.update(found)
        return [i for i in ids if i not in stored]


def install_sweep(app: FastAPI, queues: TaskQueues) -> ForgottenIntakes:
    """app.state.forgotten_intakes, its loop running while the app's lifespan does."""
    sweep = ForgottenIntakes(lambda: app.state.sessions, lambda: app.state.temporal, queues)
    app.state.forgotten_intakes = sweep
    run_during_lifespan(app, sweep)
    return sweep
