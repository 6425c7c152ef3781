"""Serving an app over real HTTP on a port, inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI


@contextlib.asynccontextmanager
async def serve(app: FastAPI, port: int, log_level: str = "warning") -> AsyncIterator[str]:
    """`log_level="info"` turns uvicorn's access log on."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            try:
                task.result()
            except SystemExit as exc:  # uvicorn exits when it cannot bind: a plain test failure
                raise RuntimeError(f"the test server could not start on port {port}") from exc
            raise RuntimeError(f"the test server on port {port} stopped before it started")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
