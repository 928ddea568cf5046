"""Shard failures that must lead to a reconnect, never to a shard that silently stays stopped."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
import websockets
from gateway_testkit import make_shard, wait_until
from websockets.asyncio.server import ServerConnection

from spectacles.broker.errors import PublishNacked
from spectacles.broker.publisher import Publisher
from spectacles.gateway import ServerClosed, ShardState, TransportError
from spectacles.gateway import shard as shard_module
from spectacles.gateway.relay import Relay
from spectacles.gateway.transport import GatewayTransport


async def test_shard_when_server_never_sends_hello_keeps_reconnecting(
    publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shard_module, "HELLO_TIMEOUT", 0.2)
    connections = 0

    async def silent(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        await ws.wait_closed()

    async with websockets.serve(silent, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        shard = make_shard(f"ws://127.0.0.1:{port}/", publisher)
        await shard.start()
        try:
            await wait_until(lambda: shard.reconnects["transport"] >= 2, timeout=10)
            assert shard.is_alive
            assert shard.state is not ShardState.STOPPED
            assert connections >= 2
        finally:
            await asyncio.wait_for(shard.close(), 10)
    assert shard.state is ShardState.STOPPED


async def test_shard_when_a_late_publish_failure_arrives_during_backoff_survives(
    publisher: Publisher,
) -> None:
    shard = make_shard("ws://127.0.0.1:9/", publisher)
    relay = shard.sink
    assert isinstance(relay, Relay)
    relay.begin(shard._interrupt_connection)  # as the previous connection did
    sleeping = asyncio.create_task(shard._sleep_unless_closing(5.0))
    await wait_until(lambda: shard._interrupt is not None, timeout=5)
    # What the previous connection's confirm tracker reports when RabbitMQ nacks late.
    relay._tracker.track(1, "READY")
    relay._tracker.publish_failed(
        1, PublishNacked("nacked", exchange="gateway", routing_key="READY")
    )
    await asyncio.wait_for(sleeping, 5)  # returns early, does not raise


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[aiohttp.ClientSession]:
    """Every ClientSession created during the test, to check that each was closed."""
    created: list[aiohttp.ClientSession] = []
    init = aiohttp.ClientSession.__init__

    def recording(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        created.append(self)

    monkeypatch.setattr(aiohttp.ClientSession, "__init__", recording)
    return created


async def test_transport_when_server_closes_reports_its_code_and_reason_and_answers_it(
    sessions: list[aiohttp.ClientSession],
) -> None:
    answered: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    async def refuse(ws: ServerConnection) -> None:
        await ws.send(b'{"op":10,"d":{"heartbeat_interval":45000}}', text=True)
        await ws.close(4004, "Authentication failed.")
        reply = ws.protocol.close_rcvd
        answered.set_result(reply.code if reply is not None else None)

    async with websockets.serve(refuse, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        transport = await GatewayTransport.connect(f"ws://127.0.0.1:{port}/", "none")
        try:
            assert await transport.receive() == b'{"op":10,"d":{"heartbeat_interval":45000}}'
            with pytest.raises(ServerClosed) as closed:
                await transport.receive()
            assert (closed.value.code, closed.value.reason) == (4004, "Authentication failed.")
            assert closed.value.policy.fatal
            # The close handshake: the client echoed the code instead of dropping the socket.
            assert await asyncio.wait_for(answered, 5) == 4004
            with pytest.raises(ServerClosed):  # a heartbeat racing the close says the same
                await transport.send(b'{"op":1,"d":null}')
        finally:
            transport.abort()
    await wait_until(lambda: all(session.closed for session in sessions), timeout=5)
    assert len(sessions) == 1


async def test_transport_when_connection_drops_raises_transport_error_not_server_closed(
    sessions: list[aiohttp.ClientSession],
) -> None:
    async def drop(ws: ServerConnection) -> None:
        await ws.send(b"{}", text=True)
        ws.transport.abort()

    async with websockets.serve(drop, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        transport = await GatewayTransport.connect(f"ws://127.0.0.1:{port}/", "none")
        try:
            assert await transport.receive() == b"{}"
            with pytest.raises(TransportError) as lost:
                await transport.receive()
            assert not isinstance(lost.value, ServerClosed)
            with pytest.raises(TransportError):
                await transport.send(b'{"op":1,"d":null}')
        finally:
            await transport.close(1000)  # on a dead connection: returns, does not raise
    assert len(sessions) == 1 and sessions[0].closed


async def test_transport_when_the_handshake_fails_raises_transport_error_and_leaks_nothing(
    sessions: list[aiohttp.ClientSession],
) -> None:
    async def not_a_websocket(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(not_a_websocket, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        for url in (f"ws://127.0.0.1:{port}/", "ws://127.0.0.1:9/", "ftp://127.0.0.1/"):
            with pytest.raises(TransportError):
                await GatewayTransport.connect(url, "zlib-stream")
    finally:
        server.close()
        await server.wait_closed()
    assert len(sessions) == 3
    assert all(session.closed for session in sessions)
