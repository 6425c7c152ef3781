"""Serving an app over real HTTP on a port, inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp

# httpx waits 5 s by default; the suite runs 6 workers on 2 cores beside whole stacks, where a
# healthy answer can take longer than that. A test that means a timeout says its own.
HTTP_TIMEOUT = 30.0


@contextlib.asynccontextmanager
async def serve(
    app: FastAPI | ASGIApp,
    port: int,
    *,
    lifespan: bool = True,
    log_level: str = "warning",
    **config: Any,
) -> AsyncIterator[str]:
    """lifespan=False: an app whose lifespan the test already runs (e.g. from service_app);
    `log_level="info"` turns uvicorn's access log on; `config`: more uvicorn settings
    (`ssl_certfile`, `ssl_keyfile`: served over https)."""
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level=log_level,
            lifespan="on" if lifespan else "off",
            # longer than httpx's idle keep-alive (5 s, uvicorn's default too): the client drops
            # an idle connection first, so no request lands on one the server is just closing
            # (a reset: the httpx.ReadError a CI run saw in a stage-truth check)
            **{"timeout_keep_alive": 30, **config},
        )
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
        scheme = "https" if config.get("ssl_certfile") else "http"
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
