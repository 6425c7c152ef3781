"""A real outreach activity worker that fails, or dies, once at a chosen moment of a send.

test_exactly_once.py runs it as a process of its own, as this command would (forked from a
process that imported it once, tests/support/forks.py):

    python -m tests.support.faults --point after_provider_accepted --channel sms \
        --mode kill --marker /tmp/x/marker.json

Settings come from CLOSEFLOW_* variables (Temporal address, task-queue prefix, database, SMTP,
Twilio), so the worker is built exactly as production builds it, plus the fault. The fault fires
only while the marker file does not exist, and writes it first: the same command started again,
as a supervisor restarts a crashed pod, runs clean. Without --point it is a plain worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
from pathlib import Path

from temporalio.worker import Worker

from services.outreach import models
from services.outreach.activities import SendFaults, activities_for, close_activities
from shared.db import create_engine, session_factory
from shared.settings import Settings
from shared.temporal import connect

POINTS = ("before_provider_call", "after_provider_accepted", "after_ledger_commit")
MODES = ("raise", "kill")


class InjectedFault(RuntimeError):
    """What the activity raises in "raise" mode; Temporal retries it like any failure."""


class OnceFault(SendFaults):
    """Fails at `point` for `channel`, once per marker file: raises, or SIGKILLs the process."""

    def __init__(self, point: str, channel: str, mode: str, marker: Path) -> None:
        if point not in POINTS or mode not in MODES:
            raise ValueError(f"point must be one of {POINTS}, mode one of {MODES}")
        self.point = point
        self.channel = channel
        self.mode = mode
        self.marker = marker

    async def before_provider_call(self, row: models.Message) -> None:
        self._maybe_fail("before_provider_call", row, "")

    async def after_provider_accepted(self, row: models.Message, provider_id: str) -> None:
        self._maybe_fail("after_provider_accepted", row, provider_id)

    async def after_ledger_commit(self, row: models.Message) -> None:
        self._maybe_fail("after_ledger_commit", row, row.provider_id or "")

    def _maybe_fail(self, point: str, row: models.Message, provider_id: str) -> None:
        if point != self.point or row.channel != self.channel or self.marker.exists():
            return
        # What the test checks afterwards: that the fault fired where it was asked to, and the
        # ledger state the crash left behind. Written whole (rename) before dying.
        record = {
            "point": point,
            "channel": row.channel,
            "journey_id": row.journey_id,
            "status": row.status,
            "provider_id": provider_id,
            "pid": os.getpid(),
        }
        tmp = self.marker.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            json.dump(record, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.marker)
        if self.mode == "kill":
            # SIGKILL, not sys.exit: no finally blocks, no session rollback, no goodbye to
            # Temporal; the server learns of it only when start_to_close_timeout expires.
            os.kill(os.getpid(), signal.SIGKILL)
        raise InjectedFault(f"injected fault at {point} ({row.channel})")


async def run(faults: SendFaults | None) -> None:
    settings = Settings()
    client = await connect(settings)
    engine = create_engine(settings.database_url("outreach"))
    activities = activities_for(settings, session_factory(engine), faults=faults)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with Worker(
            client, task_queue=settings.task_queue("outreach"), activities=activities
        ):
            print("ready", flush=True)
            await stop.wait()
    finally:
        await close_activities(activities)
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--point", choices=POINTS)
    parser.add_argument("--channel", default="email", choices=("email", "sms"))
    parser.add_argument("--mode", default="kill", choices=MODES)
    parser.add_argument("--marker", type=Path)
    args = parser.parse_args()
    if args.point and args.marker is None:
        parser.error("--point needs --marker")
    logging.basicConfig(level=logging.WARNING)
    faults = OnceFault(args.point, args.channel, args.mode, args.marker) if args.point else None
    asyncio.run(run(faults))


if __name__ == "__main__":
    main()
