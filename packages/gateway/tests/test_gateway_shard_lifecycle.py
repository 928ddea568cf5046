"""Shard lifecycle edges: closing while the websocket opens, command slots across reconnects."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct

import pytest
import websockets
from gateway_testkit import make_shard, wait_until
from websockets.asyncio.server import ServerConnection

from spectacles.broker.publisher import Publisher
from spectacles.gateway import SendLimiter, ShardState
from spectacles.gateway import transport as transport_module
from spectacles.gateway.transport import GatewayTransport

COMMAND = b'{"op":3,"d":{"since":null,"activities":[],"status":"idle","afk":false}}'


async def test_close_while_the_websocket_is_opening_does_not_wait_for_the_open_timeout(
    publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Far beyond the bound on close() below: a close that waits for it fails the test.
    monkeypatch.setattr(transport_module, "OPEN_TIMEOUT", 120.0)
    accepted = asyncio.Event()
    dropped = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def never_answers_the_handshake(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writers.append(writer)
        accepted.set()
        await reader.read()  # until the client drops the half-open connection
        dropped.set()

    server = await asyncio.start_server(never_answers_the_handshake, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    shard = make_shard(f"ws://127.0.0.1:{port}/", publisher)
    await shard.start()
    closing: asyncio.Task[None] | None = None
    try:
        await asyncio.wait_for(accepted.wait(), 10)
        assert shard.state is ShardState.CONNECTING
        closing = asyncio.create_task(shard.close())
        # Not wait_for: cancelling close() would stop the shard too and hide the wait.
        await asyncio.wait({closing}, timeout=10)
        assert closing.done(), "close() waited for the websocket open timeout"
        closing.result()
        assert shard.state is ShardState.STOPPED
        assert not shard.is_alive
        await asyncio.wait_for(dropped.wait(), 10)  # the socket was not left open
    finally:
        if closing is not None and not closing.done():
            closing.cancel()
            await asyncio.gather(closing, return_exceptions=True)
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_send_command_gives_its_slot_back_when_the_shard_stops_being_ready(
    publisher: Publisher,
) -> None:
    received: list[str | bytes] = []

    async def record(ws: ServerConnection) -> None:
        async for message in ws:
            received.append(message)

    async with websockets.serve(record, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        shard = make_shard(f"ws://127.0.0.1:{port}/", publisher)
        limiter = shard._limiter = SendLimiter(limit=1, window=60.0, reserved=0)
        transport = shard._transport = await GatewayTransport.connect(
            f"ws://127.0.0.1:{port}/", "none"
        )
        try:
            shard._set_state(ShardState.READY)
            async with limiter._lock:  # someone else holds the limiter: the command waits
                sending = asyncio.create_task(shard.send_command(COMMAND))
                await asyncio.sleep(0.1)  # let it reach the limiter
                shard._set_state(ShardState.CONNECTING)  # meanwhile the connection drops
            await asyncio.sleep(0.1)  # it takes its slot, finds the shard not ready, waits
            assert not sending.done()
            shard._set_state(ShardState.READY)
            # The only slot of this 60 s window must still be free for the real send.
            await asyncio.wait_for(sending, 5)
            await wait_until(lambda: len(received) == 1, timeout=5, what="the command")
            assert received == [COMMAND.decode()]
        finally:
            await transport.close(1000)


async def test_send_limiter_refund_frees_the_slot() -> None:
    limiter = SendLimiter(limit=2, window=60.0, reserved=0)
    first = await limiter.acquire()
    second = await limiter.acquire()
    assert not limiter.try_acquire_priority()  # the window is full
    limiter.refund(second)
    await asyncio.wait_for(limiter.acquire(), 1)
    limiter.reset()
    limiter.refund(first)  # after a reset (new connection) there is nothing to give back
    assert limiter.try_acquire_priority() and limiter.try_acquire_priority()


async def test_transport_stops_reading_the_socket_while_receive_is_not_called() -> None:
    # The shard stops calling receive() while RabbitMQ's window is full: the transport must then
    # stop reading the socket (TCP pushes back on Discord) instead of buffering the flood.
    frame = bytes([0x82, 126]) + struct.pack("!H", 16384) + bytes(16384)
    total = 4096 * len(frame)  # 64 MiB: far more than the transport and the kernel buffer
    written = 0
    stalled = asyncio.Event()  # or the whole flood was taken in: the assertions below say which

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal written
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        magic = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
        accept = base64.b64encode(hashlib.sha1(key + magic).digest())
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        try:
            while written < total:
                writer.write(frame)
                written += len(frame)
                try:
                    await asyncio.wait_for(writer.drain(), 0.5)
                except TimeoutError:
                    stalled.set()
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            stalled.set()
            writer.close()

    server = await asyncio.start_server(flood, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = await GatewayTransport.connect(f"ws://127.0.0.1:{port}/", "none")
    try:
        assert len(await transport.receive()) == 16384
        await asyncio.wait_for(stalled.wait(), 20)
        held = written
        await asyncio.sleep(0.5)
        assert written == held, "the flood went on while nobody called receive()"
        # Kernel socket buffers (a few MiB here) plus at most ~1 MiB held by the transport.
        assert held < total // 4, f"{held >> 20} MiB taken in without receive()"
        for _ in range(held // len(frame)):  # reading again resumes the socket
            assert len(await transport.receive()) == 16384
        await wait_until(lambda: written > held, timeout=5, what="the flood to resume")
    finally:
        transport.abort()
        server.close()
        await server.wait_closed()
