"""Referred journeys: a referral brings its prospect to qualifying as the next run of their
journey (issue 10, point 11; come back).

The referral intake workflow asks outreach, which starts every run, to start it
(`outreach.start_referred_run`): run 1 with its row (origin `referral`) for a new prospect, and
for a known one whose journey ended the next run, keyed apart from the earlier ones (its stage
changes, deal, tasks and messages). A known prospect whose run is running keeps it, a client
(their latest run ended won) is not sold to again (`client`), and a person
on the do-not-contact list or opted out of every channel we can reach them on is not brought
back (as for a follow-up): the referral is only attributed. Nor is a client who names
themselves on their own referral page (`self_referral`): they are a client, not their own
referral, and must not get a warm introduction to themselves. Intakes that started their journey
themselves (before this release) left it without a row: its warm introduction registers one
(`register_unenrolled_run`).
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client

from services.outreach import models
from services.outreach.cadences import runs, service
from services.outreach.cadences.enrollment import new_enrollment, start_journey
from shared.activity_boundary import activity_boundary
from shared.contracts.journey import ReferredRun, Stage, StartReferredRun, TouchRequest
from shared.contracts.names import Act
from shared.settings import Settings

SELF = "self_referral"  # the referral names the referrer themselves
CLIENT = "client"  # the person's latest run ended won (a reopened deal starts a later run)
REFERRED = "referral"  # the prospect source (prospecting's schemas.Source) of a referred run


class ReferredRunActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings

    @activity_boundary(Act.START_REFERRED_RUN)
    async def start_referred_run(self, req: StartReferredRun) -> ReferredRun:
        return await start_referred_run(self.sessions, activity.client(), self.settings, req)


async def start_referred_run(
    sessions: async_sessionmaker[AsyncSession],
    client: Client,
    settings: Settings,
    req: StartReferredRun,
) -> ReferredRun:
    """Idempotent: a retry finds the row its earlier attempt stored and starts its run, or
    finds it started (the start is idempotent too) and stores its Temporal id."""
    prospect_id = req.contact.prospect_id
    async with sessions() as session:
        current = await runs.current_run(session, prospect_id)
        if req.referrer.prospect_id == prospect_id:
            return ReferredRun(current.run if current else 0, referred=False, refused=SELF)
        if current is not None and runs.stored_not_started(current, runs.REFERRAL):
            row = current
            snapshot = await service.cadence_snapshot(session, row.cadence_id, row.cadence_version)
        elif current is not None and await _keeps_its_run(client, current):
            return ReferredRun(current.run, referred=current.origin == runs.REFERRAL)
        elif current is not None and current.outcome == Stage.WON:
            # a client already: another client's word is no reason to sell to them again
            return ReferredRun(current.run, referred=False, refused=CLIENT)
        elif why := await runs.refusal(session, prospect_id, req.contact.email, req.contact.phone):
            # asked not to be contacted: a client's word does not override that
            return ReferredRun(current.run if current else 0, referred=False, refused=why.rule)
        else:
            planned = await runs.plan_run(
                session,
                client,
                settings,
                req.contact,
                runs.NewRun(
                    prospect_id,
                    req.cadence_id,
                    origin=runs.REFERRAL,
                    start_stage=Stage.QUALIFYING,
                    hold_to_gap=False,  # the person comes back through a client's word
                ),
            )
            await session.commit()
            row, snapshot = planned.row, planned.snapshot
        # the run came by a referral, whatever brought the person in at first: its deal counts
        # as referred in the referral analytics (deals per source), and so does a booking's
        contact = replace(req.contact, source=REFERRED)
        run_id = await start_journey(
            client, settings, row, contact, snapshot, referrer=req.referrer
        )
        await runs.remember_start(session, row.id, run_id)
        await session.commit()
        return ReferredRun(row.run, referred=True)


async def _keeps_its_run(client: Client, current: models.Enrollment) -> bool:
    """The prospect's current run goes on: it runs (and has not reported its end), or it is an
    enrollment whose start is still to come (its request's retry starts it)."""
    if current.outcome is not None:
        return False
    return (await runs.run_status(client, current)).state != runs.RunState.ENDED


async def register_unenrolled_run(session: AsyncSession, req: TouchRequest) -> None:
    """A referred journey its intake started itself (an earlier release) gets its enrollment
    row, run 1, at its warm introduction when none exists for the prospect yet. The row takes
    the run's Temporal id from the touch's activity, as an enrollment's takes it from the start:
    the run's status and end are read by it (runs.run_status, runs.calling_run_ended)."""
    e = models.Enrollment
    if not req.cadence_id or await session.scalar(
        select(e.id).where(e.prospect_id == req.contact.prospect_id).limit(1)
    ):
        return
    snapshot = await service.cadence_snapshot(session, req.cadence_id)
    row = new_enrollment(req.contact, req.cadence_id, snapshot.version)
    row.origin, row.start_stage = runs.REFERRAL, Stage.QUALIFYING
    row.run_id = activity.info().workflow_run_id  # called by the touch's activity only
    await service.add_enrollment(session, row)
    await session.commit()
