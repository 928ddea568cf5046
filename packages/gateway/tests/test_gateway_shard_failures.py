"""Shard failures that must lead to a reconnect, never to a shard that silently stays stopped."""

from __future__ import annotations

import asyncio

import pytest
import websockets
from gateway_testkit import make_shard, wait_until
from websockets.asyncio.server import ServerConnection

from spectacles.broker.errors import PublishNacked
from spectacles.broker.publisher import Publisher
from spectacles.gateway import ShardState
from spectacles.gateway import shard as shard_module


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
    sleeping = asyncio.create_task(shard._sleep_unless_closing(5.0))
    await wait_until(lambda: shard._interrupt is not None, timeout=5)
    # What the previous connection's confirm tracker reports when RabbitMQ nacks late.
    shard._on_publish_failure(PublishNacked("nacked", exchange="gateway", routing_key="READY"))
    await asyncio.wait_for(sleeping, 5)  # returns early, does not raise
