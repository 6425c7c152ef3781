"""A reopened deal reaches its own journey run (issue 10 point 4), never a later one.

Decided before the reopening is committed (plan_reopen), so a refusal changes nothing:
- the run that carries the deal still runs (a won deal's referrals stage): it hears
  deal_reopened and goes back to the deal's stage. A signal that lands as the run ends (after
  its last look for reopenings) is accepted but not followed: deals asks the run (its state
  query, which a closed run answers too) and, once it has closed, starts a new run as below;
- another run of the prospect's journey runs (they were enrolled again, or a late reply brought
  them back, after the deal's run ended): 409 `another_run_running`. That run has its own course,
  maybe its own deal, and would not follow this one (it would only keep the deal's later close
  for its own deal). The rep ends it first (a stop in its cadence, POST /journeys/{id}/stop on
  outreach; past it, the close of its own deal) and reopens the deal again, which then comes
  back as a new run;
- the run is ending at this moment: 503, to be repeated in a few seconds;
- the journey ended (lost, or won and done with referrals): after the commit, outreach, which
  starts journeys, starts a new run at presenting carrying the deal
  (POST /internal/prospects/{id}/journeys/reopen), and deals records that run as the deal's
  and tells it the deal's scheduled meetings and decision deadline still ahead.

The reopened deal goes to the rep its journey signs as: the running run's, or the new run's (the
prospect's rep now). A closed deal keeps the rep who closed it, so without this a prospect
reassigned since (or whose rep was deactivated) would get back a deal only the old rep may work.

When outreach cannot be reached, or the run that missed the reopening does not close in time,
the deal stays reopened and the answer is 503: repeating the reopen (a `repeat`: the deal is
reopened already and nothing moved it since) changes nothing here and does the journey's part
again; outreach's start is idempotent, and the deal's signals find the run it starts by that
run's state (services.deals.core.runs).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowFailureError
from temporalio.service import RPCError

from services.deals.core.runs import (
    carries,
    carrying_run,
    is_running,
    latest_run,
    signal_deal,
    state_of,
)
from services.deals.meetings.service import scheduled_signal
from services.deals.models import Deal, Meeting
from shared.contracts.journey import (
    DealReopened,
    DecisionDeadline,
    JourneyState,
    journey_id,
)
from shared.contracts.names import Sig
from shared.db import utcnow
from shared.errors import AppError
from shared.ids import id_path, is_id
from shared.journeys import query_state, signal_journey
from shared.peers import peer_client
from shared.settings import Settings

log = logging.getLogger(__name__)
TIMEOUT = 15.0  # a new run may wait for the previous one to close (outreach: FINISHING_WAIT)
CLOSING_WAIT = 10.0  # a finished run that missed a reopening: how long to wait for it to close


@dataclass(frozen=True)
class Follower:
    """Which journey follows the reopened deal, decided before the commit."""

    journey: bool  # False: no run to tell (a deal made by hand; a repeat its run follows)
    run_id: str | None = None  # the running run that carries the deal; None: a new run


@dataclass(frozen=True)
class NewRun:
    """Outreach's answer: a run started for the deal, or the run that is running."""

    started: bool
    run_id: str | None
    rep_id: str | None


async def plan_reopen(client: Client, deal: Deal, *, repeat: bool = False) -> Follower:
    """Who follows `deal` once its reopening is committed; 409 or 503 (nothing committed) when
    no run can now. The deal goes to the running run's rep. A `repeat` tells a running run that
    carries the deal only if it has neither followed nor heard a reopening yet: a second
    deal_reopened would be taken for a second reopening, at the deal's next win."""
    run = await latest_run(client, deal.prospect_id)
    if run is None:
        return Follower(journey=False)
    state = await state_of(client, run) if is_running(run) else None
    if state is None:
        return Follower(journey=True)  # ended (maybe between the look and the query)
    if state.finished:
        raise AppError(
            503,
            "journey_ending",
            f"prospect {deal.prospect_id}'s journey run is ending at this moment; reopen the "
            "deal again in a few seconds",
        )
    if not carries(deal, run, state):
        raise _another_run(deal, state)
    if repeat and (state.stage == deal.stage or state.reopenings_heard > state.reopenings_handled):
        return Follower(journey=False)  # it follows the deal, or will: nothing left to do
    _follow_rep(deal, state.rep_id)
    deal.journey_run_id = run.run_id
    return Follower(journey=True, run_id=run.run_id)


async def follow(
    client: Client,
    settings: Settings,
    session: AsyncSession,
    deal: Deal,
    follower: Follower,
    actor: str = "",
) -> None:
    """After the commit: the running run hears deal_reopened, or a new run takes the deal."""
    if not follower.journey:
        return
    if follower.run_id is not None and await told_run_follows(client, deal, follower.run_id, actor):
        return
    new_run = await _start_run(settings, deal)
    if new_run is None:
        return  # never enrolled: no journey to bring back
    if new_run.started and new_run.run_id is not None:
        deal.journey_run_id = new_run.run_id
        _follow_rep(deal, new_run.rep_id)
        await session.commit()
        await _tell_what_is_ahead(client, session, deal, actor)
    elif await carrying_run(client, deal) is None:
        # a run started between our look and outreach's (an enrollment, a late reply)
        stop = f"stop it (POST /journeys/{deal.prospect_id}/stop on outreach), then "
        raise _not_followed(409, deal, "another run of the journey started meanwhile", stop)


async def _tell_what_is_ahead(
    client: Client, session: AsyncSession, deal: Deal, actor: str
) -> None:
    """A new run knows nothing of the deal's meetings still ahead and its decision deadline
    still ahead (the run that ended planned them, and its close stopped them): told now, it
    prepares and reminds those meetings and watches the deadline. A failure to tell is logged:
    the deal is reopened and its run started, which a repeat of the reopen would not change."""
    now = utcnow()
    meetings = (
        await session.scalars(
            select(Meeting)
            .where(
                Meeting.deal_id == deal.id,
                Meeting.status == "scheduled",
                Meeting.starts_at > now,
            )
            .order_by(Meeting.starts_at)
        )
    ).all()
    signals: list[tuple[str, object]] = [
        (Sig.MEETING_SCHEDULED, scheduled_signal(m, actor)) for m in meetings
    ]
    if deal.decision_deadline is not None and deal.decision_deadline > now:
        deadline = DecisionDeadline(deal.id, deal.decision_deadline.isoformat())
        signals.append((Sig.DECISION_DEADLINE, deadline))
    for name, payload in signals:
        try:
            await signal_deal(client, deal, name, payload)
        except AppError as err:
            log.error("reopened deal %s: its new run was not told %s: %s", deal.id, name, err)


async def told_run_follows(client: Client, deal: Deal, run_id: str, actor: str) -> bool:
    """Tell the running run; False when it ended without following the reopening (a new run
    must take the deal, as for any ended run), once it has closed."""
    try:
        reopened = DealReopened(deal.id, deal.stage, actor=actor)
        await signal_journey(client, deal.prospect_id, Sig.DEAL_REOPENED, reopened, run_id=run_id)
    except AppError as err:
        if err.code != "journey_not_running":
            raise
        return False  # it ended between the look and the signal
    try:
        followed = await reopening_followed(client, deal.prospect_id, run_id)
    except AppError as err:
        if err.code != "journey_busy":
            raise
        # the journeys worker does not answer (away, or busy): the signal is recorded and a
        # running run follows it once a worker is back; only the rare run that was ending as it
        # landed could miss it, which cannot be told now (the reopen answers as it did before)
        log.warning("reopened deal %s: run %s did not answer its state query", deal.id, run_id)
        return True
    if followed:
        return True
    log.warning("reopened deal %s: its run %s ended without following it", deal.id, run_id)
    handle = client.get_workflow_handle(journey_id(deal.prospect_id), run_id=run_id)
    try:
        # it is reporting its end: outreach starts the next run only once that is recorded
        await asyncio.wait_for(handle.result(), CLOSING_WAIT)
    except TimeoutError as err:
        raise _not_followed(503, deal, f"its run {run_id} is still ending") from err
    except (WorkflowFailureError, RPCError):
        pass  # closed otherwise (terminated, failed): closed all the same
    return False


async def reopening_followed(client: Client, prospect_id: str, run_id: str) -> bool:
    """Whether run `run_id`, told of a reopening, follows it. The signal may land in the run's
    last moments, after its last look for reopenings (it is reporting its end): accepted, but
    never followed. A run that has not finished still looks; one that has followed each
    reopening it heard, or not (its state query answers for a closed run too)."""
    handle = client.get_workflow_handle(journey_id(prospect_id), run_id=run_id)
    state = await query_state(handle)
    if state is None:
        return False  # no such run any more
    return not state.finished or state.reopenings_handled >= state.reopenings_heard


def _follow_rep(deal: Deal, rep_id: str | None) -> None:
    if rep_id is not None:
        deal.rep_id = rep_id


def _another_run(deal: Deal, state: JourneyState) -> AppError:
    theirs = f", its own deal {state.deal_id}" if state.deal_id else ""
    return AppError(
        409,
        "another_run_running",
        f"deal {deal.id} is not the deal of the run of prospect {deal.prospect_id}'s journey "
        f"running now (stage {state.stage}{theirs}): that run would not follow it. End that run "
        f"first (in its cadence: POST /journeys/{deal.prospect_id}/stop on outreach; past it: "
        "close its own deal), then reopen the deal: it comes back as a new run at presenting",
        [{"deal_id": deal.id, "running_stage": state.stage, "running_deal_id": state.deal_id}],
    )


async def _start_run(settings: Settings, deal: Deal) -> NewRun | None:
    """Outreach's new run for the deal; None when the prospect was never enrolled."""
    if not is_id(deal.prospect_id):
        return None  # not an id outreach could have enrolled: no journey to bring back
    path = id_path("/internal/prospects/{id}/journeys/reopen", id=deal.prospect_id)
    try:
        async with peer_client(
            settings.internal_api_key, base_url=settings.outreach_url, timeout=TIMEOUT + 5
        ) as http:
            response = await http.post(path, json={"deal_id": deal.id})
    except httpx.HTTPError as err:
        raise _not_followed(503, deal, f"{type(err).__name__}: {err}") from err
    if response.status_code == 404:
        return None
    if response.status_code >= 400:
        raise _not_followed(503, deal, f"{response.status_code} {response.text[:300]}")
    body = response.json()
    return NewRun(bool(body.get("started")), body.get("run_id"), body.get("rep_id"))


def _not_followed(status: int, deal: Deal, why: str, first: str = "") -> AppError:
    path = id_path("/deals/{id}/reopen", id=deal.id)
    log.error("reopened deal %s: journey not restarted: %s", deal.id, why)
    return AppError(
        status,
        "journey_not_restarted",
        f"the deal is reopened, but its journey was not restarted ({why}); {first}repeat POST "
        f"{path}: it changes nothing more and restarts the journey",
    )
