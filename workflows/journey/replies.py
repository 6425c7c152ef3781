"""What the prospect writes that the journey does not act on, while it runs: a task for the rep.

The first reply while the cadence runs ends it, and its text is on the qualify task; the journey
acts on no other (a second reply, a question while qualifying, a won client answering the
referral ask, a reply in a later run that started past contacting), so only the rep can, and the
text reaches closeflow's reply address, not the rep's mailbox. Each such email or text becomes a
task with its text (kind `reply`; `client_reply` once won, as a reply after the journey ended
is), which the rep inbox ranks urgent as a fresh reply.

That holds until the run's very end: a reply accepted while the run records its last stage or
reports its end is still told (the inbox relay sends a reply to the late-replies path only when
the journey is gone), and a task being made when the run ends is finished, not cancelled.
"""

from __future__ import annotations

import asyncio
import hashlib

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from shared.contracts.journey import MESSAGE_CHANNELS, ReplyReceived, Stage

from workflows.journey import versions
from workflows.journey.state import State
from workflows.journey.steps import Steps
from workflows.journey.versions import Patch

CLIENT_STAGES = (Stage.WON, Stage.REFERRALS)
EVENT_KEY_CHARS = 80  # an email's Message-ID may be longer than a task key holds


class LaterReplies:
    def __init__(self, state: State, steps: Steps) -> None:
        self.state = state
        self.steps = steps
        self.told = 0  # later replies looked at so far
        self.busy = False  # a reply's task is being made
        self.run_over = False  # the run reported its end: tell what is left, then stop

    async def tell_rep(self) -> None:
        """Runs for the whole journey: one task per later email or text, in the order they came
        (a rep's own call outcome and a booking through the link are not the prospect writing:
        the journey acts on those). Returns once the run is over and every reply is told."""
        state = self.state
        while True:
            await workflow.wait_condition(
                lambda: len(state.later_replies) > self.told or self.run_over
            )
            if len(state.later_replies) <= self.told:
                return
            reply = state.later_replies[self.told]
            self.told += 1
            if reply.channel not in MESSAGE_CHANNELS:
                continue
            if not versions.patched(Patch.LATER_REPLY_TASK):
                return  # journeys from before the patch dropped them
            if state.finished and not versions.patched(Patch.REPLIES_TOLD_AFTER_RUN_END):
                return  # journeys from before the patch had cancelled this at their end
            self.busy = True
            try:
                await self._task(reply)
            finally:
                self.busy = False

    def outlives_run(self) -> bool:
        """At the run's end (the stages are over): True when the teller goes on until the run
        has told every reply it accepted (`finish`), False when it is cancelled with the run's
        other background work, as it was before the patch."""
        # idle, it issues no command either way: it asks the patch before a task made after the
        # end; a task in flight was cancelled by journeys from before the patch
        return not self.busy or versions.patched(Patch.REPLIES_TOLD_AFTER_RUN_END)

    async def finish(self, teller: asyncio.Task[None]) -> None:
        """After the run reported its end: the replies that came meanwhile, and a task still
        being made, are told before the run ends (idempotent keys, as during the run)."""
        self.run_over = True
        await workflow.wait_condition(teller.done)

    async def _task(self, reply: ReplyReceived) -> None:
        state = self.state
        client = state.stage in CLIENT_STAGES
        kind = "client_reply" if client else "reply"
        name = state.prospect_name() or "The prospect"
        title = (
            f"{name} (a client) replied by {reply.channel}"
            if client
            else f"{name} replied by {reply.channel} ({state.stage})"
        )
        event = reply.event_id
        if len(event) > EVENT_KEY_CHARS:
            event = hashlib.sha256(event.encode()).hexdigest()[:40]
        await self.steps.task(
            f"{kind}:{event}",
            title,
            f'They wrote: "{reply.excerpt}"\nThe journey is at {state.stage} and does not answer '
            "it: answer them yourself.",
            context={"channel": reply.channel, "reply": reply.excerpt},
        )
