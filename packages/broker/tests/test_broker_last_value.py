"""`LastValueStore` against RabbitMQ: newest value only, reads leave it, TTL, errors as ours."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from spectacles.broker.broker import Broker
from spectacles.broker.errors import BrokerError, BrokerUnavailable
from spectacles.broker.last_value import LastValueStore
from spectacles.broker.settings import BrokerSettings
from spectacles.broker.topology import QueueType


@pytest.fixture
async def broker(amqp_url: str, unique_name: str) -> AsyncIterator[Broker]:
    broker = await Broker.connect(BrokerSettings(amqp_url=amqp_url, group=unique_name))
    try:
        yield broker
    finally:
        channel = await broker.channel()
        for suffix in ("classic", "quorum", "clash"):
            await channel.queue_delete(f"{unique_name}.{suffix}")
        await channel.close()
        await broker.close()


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_last_value_keeps_the_newest_and_reads_leave_it(
    broker: Broker, unique_name: str, queue_type: str
) -> None:
    kind: QueueType = "quorum" if queue_type == "quorum" else "classic"
    store = LastValueStore(broker, f"{unique_name}.{queue_type}", queue_type=kind)
    try:
        assert await store.read() is None
        for n in range(3):
            await store.write(b'{"n":%d}' % n, message_id=f"m{n}")
        for _ in range(25):  # more reads than RabbitMQ 4's default delivery limit (20)
            assert await store.read() == b'{"n":2}'
        await store.clear()
        assert await store.read() is None
    finally:
        await store.close()


async def test_last_value_written_with_a_ttl_vanishes(broker: Broker, unique_name: str) -> None:
    store = LastValueStore(broker, f"{unique_name}.classic")
    try:
        await store.write(b"short-lived", ttl=0.2)
        assert await store.read() == b"short-lived"
        await asyncio.sleep(0.5)
        assert await store.read() is None
    finally:
        await store.close()


async def test_last_value_refused_by_rabbitmq_is_a_broker_error(
    broker: Broker, unique_name: str
) -> None:
    """A queue of that name with other arguments: RabbitMQ's 406 as `BrokerError`, not aiormq's."""
    name = f"{unique_name}.clash"
    channel = await broker.channel()
    await channel.declare_queue(name, durable=True, arguments={"x-max-length": 5})
    await channel.close()
    store = LastValueStore(broker, name)
    try:
        with pytest.raises(BrokerError) as raised:
            await store.read()
        assert type(raised.value) is BrokerError and "PRECONDITION" in str(raised.value)
    finally:
        await store.close()


async def test_last_value_on_a_closed_broker_is_unavailable(
    amqp_url: str, unique_name: str
) -> None:
    broker = await Broker.connect(BrokerSettings(amqp_url=amqp_url, group=unique_name))
    store = LastValueStore(broker, f"{unique_name}.closed")
    await broker.close()
    with pytest.raises(BrokerUnavailable):
        await store.write(b"x")
