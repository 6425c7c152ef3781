"""Which run of the prospect's journey a deal belongs to, and how its facts reach that run only.

A prospect's journey is one workflow id, `journey-<prospect id>`, started as a new Temporal run
each time they come back (enrolled again, a late reply, a reopened deal), and each run has its
own deal. A signal to the workflow id reaches whichever run is running now: a later run would
take the verdict, moves, meetings or close of an earlier run's deal for its own (it would end
won while its own deal is open). So every deal signal names the run that carries the deal:

- the run recorded on the deal (`Deal.journey_run_id`: the run that opened it, or the one that
  took it back when it was reopened);
- for a deal from before runs were recorded: the run running since before the deal was opened
  (the runs of one workflow id never overlap, so that run is the one that opened it);
- otherwise the running run whose own state names the deal (a run started for the reopened
  deal whose start deals did not see: outreach's reopen repeated by ops).

A deal no running run carries is not signalled at all: the change stays recorded, and the
answer is 409 `journey_not_running`.
"""

from __future__ import annotations

from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus

from services.deals.models import Deal
from shared.contracts.journey import JourneyState, journey_id
from shared.errors import AppError
from shared.journeys import describe_journey, query_state, signal_journey


async def latest_run(client: Client, prospect_id: str) -> WorkflowExecutionDescription | None:
    """The prospect's latest journey run, running or ended; None when they never had one."""
    return await describe_journey(client, journey_id(prospect_id))


def is_running(run: WorkflowExecutionDescription | None) -> bool:
    return run is not None and run.status == WorkflowExecutionStatus.RUNNING


def recorded_for(deal: Deal, run: WorkflowExecutionDescription) -> bool:
    """`run` carries `deal` by what deals recorded (the first two rules above)."""
    if deal.journey_run_id is not None:
        return run.run_id == deal.journey_run_id
    return run.start_time is not None and run.start_time <= deal.created_at


def carries(deal: Deal, run: WorkflowExecutionDescription, state: JourneyState | None) -> bool:
    """`run`, whose state is `state`, carries `deal` (by the rules above)."""
    return recorded_for(deal, run) or _names(state, deal)


def _names(state: JourneyState | None, deal: Deal) -> bool:
    return state is not None and state.deal_id == deal.id


async def state_of(client: Client, run: WorkflowExecutionDescription) -> JourneyState | None:
    """That run's state (None once it has ended); 503 when its worker does not answer."""
    return await query_state(client.get_workflow_handle(run.id, run_id=run.run_id))


async def carrying_run(client: Client, deal: Deal) -> str | None:
    """The Temporal run id of the running run that carries `deal`; None when none does. The
    run's state is asked only when deals' own record does not tell."""
    run = await latest_run(client, deal.prospect_id)
    if run is None or not is_running(run):
        return None
    if recorded_for(deal, run) or _names(await state_of(client, run), deal):
        return run.run_id
    return None


async def signal_deal(client: Client, deal: Deal, signal: str, payload: object) -> None:
    """Tell the run that carries `deal` (call it after the commit that recorded the fact)."""
    if deal.journey_run_id is not None:
        # the recorded run, told directly: Temporal refuses a signal to a run that has ended
        try:
            await signal_journey(
                client, deal.prospect_id, signal, payload, run_id=deal.journey_run_id
            )
            return
        except AppError as err:
            if err.code != "journey_not_running":
                raise
    run_id = await carrying_run(client, deal)
    if run_id is None:
        raise AppError(
            409,
            "journey_not_running",
            f"no running journey carries deal {deal.id} (its run of prospect "
            f"{deal.prospect_id}'s journey has ended, or there never was one): the change is "
            "stored, but no journey follows it",
        )
    await signal_journey(client, deal.prospect_id, signal, payload, run_id=run_id)
