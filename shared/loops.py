"""A pass run again and again beside a service's requests (a relay, a roll-up): the task, its
pauses, its stop, and its failures, the same way for each.

A subclass says what one pass does (`one_pass`: True when more is due at once, no pause) and how
long to pause and to wait at a stop (read on every pass: tests swap in faster timings). A pass
that raises is logged once per distinct failure, not on every pass while a database is away,
and the loop goes on after the pause. `stop()` waits for the pass under way up to its grace,
then cancels it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod

log = logging.getLogger(__name__)


class RepeatingPass(ABC):
    # what a stop past its grace leaves behind, for the log
    cut_short = "cancelled"

    def __init__(self, name: str) -> None:
        self.name = name
        self.stopping = False  # a pass may look: stopping, hand the rest back
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_failure = ""

    @abstractmethod
    async def one_pass(self) -> bool:
        """The work of one pass; True when more is due now (the next pass follows at once)."""

    @abstractmethod
    def pause_seconds(self) -> float:
        """How long the loop waits between passes when nobody wakes it."""

    @abstractmethod
    def stop_grace(self) -> float:
        """How long stop() waits for the pass under way before cancelling it."""

    def wake(self) -> None:
        """Run the next pass now (a use case just committed work for it)."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self.stopping = False
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self.stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), self.stop_grace())
        except TimeoutError:
            log.warning(
                "%s: still busy after %.0fs, %s", self.name, self.stop_grace(), self.cut_short
            )
        except Exception:  # the loop itself never raises; a pass failing is logged inside it
            log.exception("%s stopped with an error", self.name)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while not self.stopping:
            more = False
            try:
                more = await self.one_pass()
            except Exception as err:  # the database is briefly away, say: the next pass retries
                failure = f"{type(err).__name__}: {getattr(err, 'orig', err)}"
                if failure != self._last_failure:
                    log.exception("%s pass failed", self.name)
                self._last_failure = failure
            else:
                self._last_failure = ""
            if more or self.stopping:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.pause_seconds())
            self._wake.clear()
