"""The supervised connection: lifecycle, and reconnecting after a server-side close."""

from __future__ import annotations

import asyncio

import pytest

from spectacles.broker.broker import Broker
from spectacles.broker.errors import BrokerUnavailable
from spectacles.broker.settings import BrokerSettings

from .conftest import close_connections_named

# Also run against RabbitMQ 4 (scripts/rabbit4.sh).
pytestmark = pytest.mark.rmq4


async def test_context_manager_connects_and_closes(broker_settings: BrokerSettings) -> None:
    async with Broker(broker_settings, connection_name="spectacles-test-ctx") as broker:
        assert broker.is_connected
        channel = await broker.channel(timeout=5)
        assert not channel.is_closed
        await channel.close()
    assert not broker.is_connected
    with pytest.raises(BrokerUnavailable, match="closed"):
        await broker.wait_connected(timeout=1)
    await broker.close()  # idempotent


async def test_reconnects_after_server_side_close_and_notifies_listeners(
    broker: Broker, unique_name: str
) -> None:
    lost = asyncio.Event()
    broker.on_connection_lost(lost.set)
    before = await broker.wait_connected(timeout=5)
    assert await asyncio.to_thread(close_connections_named, f"{unique_name}-broker") == 1
    await asyncio.wait_for(lost.wait(), 10)
    after = await broker.wait_connected(timeout=15)
    assert after is not before
    assert broker.reconnects == 1
    channel = await broker.channel(timeout=5)  # the new connection is usable
    queue = await channel.declare_queue(exclusive=True)
    assert queue.name
    await channel.close()
