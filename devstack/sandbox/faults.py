"""A fault switch for the dev-only provider sandboxes (make chaos, issue 13).

`POST /sandbox/faults {"mode": "error" | "hang" | "none", "seconds": 8}` makes a sandbox answer
its provider API with a server error, or hold each call until the fault ends (then answer it as
usual: the caller may have given up by then, which is what a provider outage does), for that
many seconds. Only the sandboxes have it: they are never in the production image, and no
production code path reads it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Literal

from fastapi import FastAPI
from pydantic import BaseModel, Field

Mode = Literal["none", "error", "hang"]
FAULTS_PATH = "/sandbox/faults"


class FaultIn(BaseModel):
    mode: Mode
    seconds: float = Field(10.0, gt=0, le=600, description="how long the fault lasts")


class FaultOut(BaseModel):
    mode: Mode
    remaining_seconds: float


@dataclass
class FaultSwitch:
    mode: Mode = "none"
    until: float = 0.0  # time.monotonic() at which the fault ends

    def set(self, mode: Mode, seconds: float) -> None:
        self.mode = mode
        self.until = time.monotonic() + seconds if mode != "none" else 0.0

    def active(self) -> Mode:
        if self.mode != "none" and time.monotonic() >= self.until:
            self.mode = "none"
        return self.mode

    def remaining(self) -> float:
        return max(0.0, self.until - time.monotonic()) if self.active() != "none" else 0.0

    async def hold(self) -> None:
        """While a hang lasts: wait it out (polling, so a cleared fault releases the caller)."""
        while self.active() == "hang":
            await asyncio.sleep(min(0.2, self.remaining()) or 0.01)


def add_fault_routes(app: FastAPI, switch: FaultSwitch) -> None:
    @app.post(FAULTS_PATH, include_in_schema=False)
    async def set_fault(body: FaultIn) -> FaultOut:
        switch.set(body.mode, body.seconds)
        return FaultOut(mode=switch.active(), remaining_seconds=switch.remaining())

    @app.get(FAULTS_PATH, include_in_schema=False)
    async def get_fault() -> FaultOut:
        return FaultOut(mode=switch.active(), remaining_seconds=switch.remaining())
