"""A service the others reach through a gate that a test can close: while closed, every
connection to it is refused and the ones open are cut, as when its replicas are all away (a
deploy gone wrong, a network split). The test's own calls go to the service directly.

`@pytest.mark.stack(gated=["outreach"])` puts one in front of outreach for the other services;
`async with stack.u.gates["outreach"].closed(): ...` is the outage."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    StartWorkflowInput,
    WorkflowHandle,
)
from temporalio.service import RetryConfig

CHUNK = 64 * 1024


class Gate:
    """A TCP forwarder on its own port to `upstream_port`, open until closed."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._streams: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def open(self) -> None:
        # the same port again after an outage: the services' settings name it
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._streams):
            writer.close()
        self._streams.clear()
        if server is not None:
            await server.wait_closed()  # since 3.12, once the connections it served are gone

    @contextlib.asynccontextmanager
    async def closed(self) -> AsyncIterator[None]:
        """The outage: refused until the block ends, then open again on the same port."""
        await self.close()
        try:
            yield
        finally:
            await self.open()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._streams.update((writer, up_writer))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._streams.discard(w)
                w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        writer.write_eof()


async def temporal_out_of_reach(client: Client) -> Client:
    """A client of `client`'s Temporal server whose connection goes through a gate, closed
    once connected: its calls fail as when the server is away (one retry, then the error)."""
    gate = Gate(_temporal_port(client))
    await gate.open()
    away = await _connect(client, gate)
    await gate.close()
    return away


async def temporal_away_at_start(client: Client) -> Client:
    """A client of `client`'s Temporal server that reaches it until it starts a workflow: the
    server goes away just then (its gate closes for good), as in an outage between a caller's
    reads and its start."""
    gate = Gate(_temporal_port(client))
    await gate.open()
    return await _connect(client, gate, _AwayAtStart(gate))


def _temporal_port(client: Client) -> int:
    host, port = client.service_client.config.target_host.rsplit(":", 1)
    assert host in ("127.0.0.1", "localhost"), host
    return int(port)


async def _connect(client: Client, gate: Gate, *interceptors: Interceptor) -> Client:
    return await Client.connect(
        f"127.0.0.1:{gate.port}",
        namespace=client.namespace,
        retry_config=RetryConfig(max_retries=1),
        interceptors=interceptors,
    )


class _AwayAtStart(Interceptor):
    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _CloseBeforeStart(next, self.gate)


class _CloseBeforeStart(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, gate: Gate) -> None:
        super().__init__(next)
        self.gate = gate

    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
        await self.gate.close()
        return await super().start_workflow(input)
