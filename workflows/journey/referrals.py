"""Stage 7, referrals: the client is asked for referrals (and reminded) after the win, until the
won deal is reopened; a referred prospect's referrer is thanked for the first meeting and for the
win."""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from shared.contracts.journey import (
        DealReopened,
        ReferralAsk,
        ReferralAskRef,
        ReferralAskRequest,
        ReferralAskStatus,
        Stage,
        ThanksRequest,
        system_actor,
        thanks_workflow_id,
    )
    from shared.contracts.names import Act

from workflows.journey import versions
from workflows.journey.state import State
from workflows.journey.steps import (
    Steps,
    call,
    journey_id,
    reopening_to_follow,
)
from workflows.journey.thanks import thank
from workflows.journey.versions import Patch


class Referrals:
    def __init__(self, state: State, steps: Steps) -> None:
        self.state = state
        self.steps = steps

    async def until_reopened(self) -> DealReopened | None:
        """The referrals stage while the deal stays won: None once it is over, or the reopening
        that cut it short (the referral ask and reminders still to come are cancelled; the
        thanks to this client's referrer goes on in the background)."""
        state = self.state
        if not versions.patched(Patch.DEAL_REOPENED_RUNNING):
            await self.ask()
            return None
        # a later win of the same journey: the client was asked already, not again
        asked = state.referral_asked or self._asked_by_an_earlier_run()
        asking = asyncio.ensure_future(self._asked() if asked else self.ask())
        reopened = None
        while reopened is None:
            await workflow.wait_condition(
                lambda: asking.done() or state.next_reopening() is not None
            )
            if state.next_reopening() is None:
                break  # the stage is over
            reopened = reopening_to_follow(state)
        if reopened is None:
            await asking  # over: its failure, if any, is the journey's
            return None
        if not asking.done():
            asking.cancel()
            try:
                await asking
            except asyncio.CancelledError:
                pass  # the timers and the activity in flight are cancelled with it
            except ActivityError as err:
                # an activity in flight (the ask, its message, the stage record) reports its
                # cancellation as its failure: the journey goes on with the reopened deal
                if not isinstance(err.cause, CancelledError) or not versions.patched(
                    Patch.REFERRAL_STEP_CANCELLED
                ):
                    raise
        return reopened

    def _asked_by_an_earlier_run(self) -> bool:
        """A reopened deal's new run, its earlier run ended won (so after its referral
        request): asked only then, no marker otherwise."""
        return self.state.inp.referral_asked_before and versions.patched(
            Patch.REFERRAL_ASKED_BY_EARLIER_RUN
        )

    async def _asked(self) -> None:
        await self.steps.enter(
            Stage.REFERRALS,
            "referral request sent at an earlier win",
            system_actor("referral request"),
        )
        await self._thanks_done()

    async def ask(self) -> None:
        state, steps, inp = self.state, self.steps, self.state.inp
        await steps.task(
            "thank_client",
            f"Thank {state.prospect_name()} and mention referrals",
            "They just became a client. The automatic referral request goes out after "
            f"{state.cadence.referral_delay_seconds} seconds.",
        )
        await workflow.sleep(state.cadence.referral_delay_seconds)
        ask = await call(
            Act.CREATE_REFERRAL_ASK,
            ReferralAskRequest(
                inp.contact.prospect_id,
                journey_id(),
                state.prospect_name(),
                inp.contact.rep_id,
                state.cadence.cadence_id,
            ),
            inp.queues.referrals,
            ReferralAsk,
        )
        await steps.system_touch("referral-ask", "referral_ask", {"referral_link": ask.link})
        state.referral_asked = True
        await steps.enter(
            Stage.REFERRALS, "referral request sent", system_actor("referral request")
        )
        if versions.patched(Patch.REFERRAL_REMINDERS):
            await self._remind(ask)
        await self._thanks_done()

    async def _thanks_done(self) -> None:
        # a thanks to this client's own referrer that waits for their send window must not be
        # cut off by the end of the journey (no command: replays are unaffected)
        state = self.state
        await workflow.wait_condition(lambda: all(state.referrer_thanks.values()))

    async def _remind(self, ask: ReferralAsk) -> None:
        """Up to `referral_reminders` reminders (email + SMS, the same personal link), each
        `referral_reminder_interval_seconds` after the previous message, until the client has
        referred someone (through the form or the API: the referrals service knows) or their
        link is used (it opens nothing more: a client who named only themselves or people
        erased, an ask closed by their erasure), also while a reminder waits for its window."""
        cadence = self.state.cadence
        # the journeys that got this far before the change replay without the link's state
        link_known = versions.patched(Patch.REMINDERS_STOP_AT_USED_LINK)

        async def wanted() -> bool:
            status = await call(
                Act.REFERRAL_ASK_STATUS,
                ReferralAskRef(ask.ask_id),
                self.state.inp.queues.referrals,
                ReferralAskStatus,
            )
            return status.referrals == 0 and not (link_known and status.link_used)

        for number in range(1, cadence.referral_reminders + 1):
            await workflow.sleep(cadence.referral_reminder_interval_seconds)
            if not await wanted():
                return
            await self.steps.system_touch(
                f"referral-reminder-{number}",
                "referral_reminder",
                {"referral_link": ask.link},
                still_wanted=wanted if link_known else None,
            )

    async def thank_referrer(self, event: str) -> None:
        """Thank the client who referred this prospect, once per event ("meeting": the first
        meeting booked, "won"), by email and SMS (send_touch honours their consent), and note
        it on the referral. A journey without a referrer does nothing. Runs in the background:
        waiting for the referrer's send window holds nothing up (and the run's end hands a
        thanks still waiting to ThankReferrer: hand_over_thanks)."""
        state = self.state
        referrer = state.inp.referrer
        if referrer is None or event in state.referrer_thanks:
            return
        if not versions.patched(Patch.REFERRER_THANKS):
            return
        state.referrer_thanks[event] = False
        try:
            await thank(self._thanks(event))
        except ActivityError as err:
            # e.g. the referrer was erased: the thanks is a courtesy, the journey goes on
            workflow.logger.warning("could not thank referrer %s: %s", referrer.prospect_id, err)
        finally:
            state.referrer_thanks[event] = True

    async def hand_over_thanks(self) -> None:
        """At the run's end, which cancels its background work: each thanks not done yet
        (mostly one waiting for the referrer's send window) goes on in a ThankReferrer workflow
        of its own, abandoned by the run, on this run's ledger key (what the run sent is not
        sent again). Asked only when one is pending: other runs end as they did."""
        state = self.state
        pending = [event for event, done in state.referrer_thanks.items() if not done]
        if not pending or not versions.patched(Patch.THANKS_OUTLIVE_RUN):
            return
        for event in pending:
            request = self._thanks(event)
            try:
                await workflow.start_child_workflow(
                    "ThankReferrer",
                    request,
                    id=thanks_workflow_id(request.referrer.referral_id, event),
                    task_queue=state.inp.queues.journeys,
                    parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                )
            except WorkflowAlreadyStartedError:
                workflow.logger.info("referrer thanks for %s already handed over", event)

    def _thanks(self, event: str) -> ThanksRequest:
        state = self.state
        assert state.inp.referrer is not None
        return ThanksRequest(
            journey_id(),
            event,
            state.inp.referrer,
            state.cadence.cadence_id,
            state.cadence.send_window,
            state.inp.queues,
        )
