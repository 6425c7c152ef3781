"""Worker processes a benchmark runs beside the stack, for a baseline measured in the same run:
each is `python -m <module> <args>`, says READY once its workers poll, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any

from temporalio.worker import Worker

READY = "ready"


@contextlib.contextmanager
def worker_process(module: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """`python -m module args`, once it said READY; terminated on leaving."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != READY:
            raise RuntimeError(f"{module} {' '.join(args)} did not start")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()  # a baseline's worker: nothing of it is kept
            proc.wait()


async def serve(workers: Sequence[Worker]) -> None:
    """Runs `workers` until SIGTERM, saying READY once they all poll."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with contextlib.AsyncExitStack() as running:
        for worker in workers:
            await running.enter_async_context(worker)
        print(READY, flush=True)
        await stop.wait()


def main(serving: Coroutine[Any, Any, None]) -> None:
    """A worker process's `__main__`: runs `serving`, then ends as the stack's workers do."""
    # imported here: a workflow's module imports this one, and the sandbox imports that again
    # for each run
    from closeflow.worker import run_worker_process

    run_worker_process(serving)
