"""shared/peers.py: the clients between closeflow's services keep a small pool of connections
(httpcore's cost per request grows with the connections it keeps), and every such client is
made there."""

import asyncio
import contextlib
import re
from pathlib import Path

from shared.peers import PEER_CONNECTIONS, peer_client

ROOT = Path(__file__).resolve().parents[2]


async def test_many_requests_at_once_share_a_few_connections() -> None:
    connections = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:  # requests one after the other on the connection, until it closes
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"content-length: (\d+)", head.lower())
                await reader.readexactly(int(length.group(1)) if length else 0)
                await asyncio.sleep(0.02)  # long enough for the requests to overlap
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with peer_client("token", timeout=10, base_url=f"http://127.0.0.1:{port}") as http:
            answers = await asyncio.gather(*(http.post("/e", json={"i": i}) for i in range(40)))
    finally:
        server.close()
    assert [a.status_code for a in answers] == [200] * 40
    assert all(a.request.headers["X-API-Key"] == "token" for a in answers)
    assert 1 <= connections <= PEER_CONNECTIONS


def test_every_client_presenting_the_service_token_is_a_peer_client() -> None:
    """A client made by hand with the token would get httpx's pool of 100 connections."""
    made_by_hand = [
        str(path.relative_to(ROOT))
        for folder in ("services", "shared")
        for path in (ROOT / folder).rglob("*.py")
        if path.name != "peers.py" and re.search(r"headers=\{API_KEY_HEADER", path.read_text())
    ]
    assert made_by_hand == []
