"""shared.loops.RepeatingPass, the loop of every relay and of the funnel's roll-up: a failure
is logged once while it repeats, the loop goes on after it, a wake runs the next pass at once,
and a stop cancels a pass that outlasts its grace."""

from __future__ import annotations

import asyncio
import logging

import pytest

from shared.loops import RepeatingPass


class Scripted(RepeatingPass):
    """Raises the scripted errors in turn (None: a pass that works), then works."""

    def __init__(self, script: list[Exception | None], pause: float = 60.0) -> None:
        super().__init__("scripted")
        self.script = list(script)
        self.pause = pause
        self.passes = 0
        self.hang = asyncio.Event()
        self.hanging = False

    async def one_pass(self) -> bool:
        self.passes += 1
        if self.hanging:
            await self.hang.wait()
        if self.script:
            error = self.script.pop(0)
            if error is not None:
                raise error
            return True  # more due: no pause before the next scripted pass
        return False

    def pause_seconds(self) -> float:
        return self.pause

    def stop_grace(self) -> float:
        return 0.2


async def until(condition: object, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_a_repeating_failure_is_logged_once_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = ConnectionError("database away")
    loop = Scripted([down, down, down, ValueError("other"), None, down], pause=0.01)
    with caplog.at_level(logging.ERROR, logger="shared.loops"):
        loop.start()
        await until(lambda: loop.passes >= 7)
        await loop.stop()
    failures = [r.exc_info[1] for r in caplog.records if r.exc_info]
    # three in a row: one line; a new failure: one more; after a pass that worked: again
    assert [type(e).__name__ for e in failures] == [
        "ConnectionError",
        "ValueError",
        "ConnectionError",
    ]


async def test_a_wake_runs_the_next_pass_without_waiting_out_the_pause() -> None:
    loop = Scripted([], pause=60.0)
    loop.start()
    await until(lambda: loop.passes == 1)
    loop.wake()
    await until(lambda: loop.passes == 2)
    await loop.stop()


async def test_a_stop_cancels_a_pass_that_outlasts_its_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = Scripted([])
    loop.hanging = True
    loop.start()
    await until(lambda: loop.passes == 1)
    with caplog.at_level(logging.WARNING, logger="shared.loops"):
        async with asyncio.timeout(2):
            await loop.stop()
    assert loop.stopping
    assert any("still busy after" in r.getMessage() for r in caplog.records)
    # started again, it runs passes again
    loop.hanging = False
    loop.start()
    await until(lambda: loop.passes >= 2)
    await loop.stop()
