"""A service's background loops (relays, the mailbox watcher, the notifier) stop all at once:
each may wait out its items in flight, and one after the other they would outlast the pod's
grace period (deploy/k8s/apis.yaml)."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from shared.app import run_during_lifespan


class Loop:
    """Waits, as it stops, for every other loop of the app to begin stopping (up to 5 s)."""

    def __init__(self, stopping: dict[str, asyncio.Event], name: str) -> None:
        self.stopping = stopping
        self.name = name
        self.started = False
        self.stopped_together = False

    def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopping[self.name].set()
        others = [e.wait() for n, e in self.stopping.items() if n != self.name]
        try:
            await asyncio.wait_for(asyncio.gather(*others), 5)
        except TimeoutError:
            return
        self.stopped_together = True


async def test_every_loop_starts_with_the_app_and_they_stop_together() -> None:
    app = FastAPI()
    stopping = {name: asyncio.Event() for name in ("relay", "watcher", "notifier")}
    loops = [Loop(stopping, name) for name in stopping]
    for loop in loops:
        run_during_lifespan(app, loop)
    async with app.router.lifespan_context(app):
        assert all(loop.started for loop in loops)
        assert not any(e.is_set() for e in stopping.values())
    # one after the other, each stop would find the ones after it not stopping yet
    assert [loop.name for loop in loops if not loop.stopped_together] == []
