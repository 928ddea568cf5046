"""Dead letters survive being looked at, and connection blips never dead-letter a healthy message.

Measured on RabbitMQ 3.10 and 4.0: every return to a quorum queue counts as a delivery attempt
(channel close, connection close, nack/reject with requeue), and RabbitMQ 4 puts a delivery limit
of 20 on every quorum queue that does not say otherwise.
"""

from __future__ import annotations

import asyncio
import collections

import aio_pika
import aiormq
import pytest
from aio_pika.abc import AbstractChannel

from spectacles.broker.broker import Broker
from spectacles.broker.consumer import Consumer
from spectacles.broker.dead_letters import list_dead, replay_dead
from spectacles.broker.delivery import Delivery
from spectacles.broker.errors import DeadLetter
from spectacles.broker.settings import BrokerSettings
from spectacles.broker.topology import (
    QueueSpec,
    declare_queue,
    server_major_version,
)

from .conftest import close_connections_named, eventually

pytestmark = pytest.mark.rmq4


async def _message_count(channel: AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return int(declared.declaration_result.message_count or 0)


async def test_listing_dead_letters_30_times_keeps_them_in_order_and_replayable(
    broker: Broker, raw_channel: AbstractChannel, amqp_cleanup, broker_settings: BrokerSettings
) -> None:
    broken = True
    handled: list[str | None] = []

    async def handler(delivery: Delivery) -> None:
        if broken:
            raise DeadLetter("permission missing")
        handled.append(delivery.message_id)

    consumer = Consumer(broker, worker="peek", events=["E"], handler=handler)
    amqp_cleanup(queue=consumer.queue_name)
    amqp_cleanup(queue=consumer.dead_queue_name)
    await consumer.start()
    exchange = await raw_channel.get_exchange(broker_settings.group)
    for n in range(3):
        await exchange.publish(aio_pika.Message(b"{}", message_id=f"m-{n}"), routing_key="E")

    async def three_dead() -> bool:
        return await _message_count(raw_channel, consumer.dead_queue_name) == 3

    await eventually(three_dead)
    # RabbitMQ 4's default limit of 20 would drop each letter at the 21st listing
    for _ in range(30):
        listed = await list_dead(broker, "peek")
        assert [d.message_id for d in listed] == ["m-0", "m-1", "m-2"]
    broken = False
    assert await replay_dead(broker, "peek") == 3
    await eventually(lambda: len(handled) == 3)
    await consumer.stop()
    assert handled == ["m-0", "m-1", "m-2"]
    assert await list_dead(broker, "peek") == []


async def test_three_connection_blips_with_prefetch_16_dead_letter_nothing_and_lose_nothing(
    broker: Broker,
    raw_channel: AbstractChannel,
    amqp_cleanup,
    broker_settings: BrokerSettings,
    unique_name: str,
) -> None:
    gate = asyncio.Event()
    starts: collections.Counter[str] = collections.Counter()
    done: set[str] = set()

    async def handle(delivery: Delivery) -> None:
        starts[delivery.message_id or ""] += 1
        await gate.wait()  # hold every prefetched message unacked until the blips are over
        done.add(delivery.message_id or "")

    consumer = Consumer(
        broker, worker="blips", events=["E"], handler=handle, prefetch=16, max_attempts=3
    )
    amqp_cleanup(queue=consumer.queue_name)
    amqp_cleanup(queue=consumer.dead_queue_name)
    await consumer.start()
    exchange = await raw_channel.get_exchange(broker_settings.group)
    ids = {f"m-{n}" for n in range(64)}
    for mid in sorted(ids):
        await exchange.publish(aio_pika.Message(b"{}", message_id=mid), routing_key="E")
    for blip in range(3):
        # a full prefetch window is held by running handlers when the connection drops
        await eventually(lambda b=blip: starts.total() >= 16 * (b + 1), timeout=30)
        reconnects = broker.reconnects
        closed = await asyncio.to_thread(close_connections_named, f"{unique_name}-broker")
        assert closed == 1
        await eventually(lambda r=reconnects: broker.reconnects > r, timeout=30)
        await consumer.wait_consuming(timeout=30)
    await eventually(lambda: starts.total() >= 16 * 4, timeout=30)
    assert max(starts.values()) == 4  # the same window came back after each blip
    gate.set()
    await eventually(lambda: done >= ids, timeout=60)
    await consumer.stop()
    assert await _message_count(raw_channel, consumer.dead_queue_name) == 0
    assert await _message_count(raw_channel, consumer.queue_name) == 0


async def test_queues_declared_by_an_earlier_release_keep_working_with_a_hint(
    broker: Broker, raw_channel: AbstractChannel, amqp_cleanup, broker_settings: BrokerSettings
) -> None:
    topology = broker.topology
    spec = QueueSpec(
        name=topology.worker_queue("old"),
        exchange=topology.events_exchange,
        routing_keys=("E",),
        delivery_limit=20,
        legacy_delivery_limit=3,
    )
    amqp_cleanup(queue=spec.name)
    amqp_cleanup(queue=spec.dead_queue)
    # what the previous release declared: no limit argument on .dead, max_attempts on the queue
    await raw_channel.declare_queue(
        spec.dead_queue, durable=True, arguments={"x-queue-type": "quorum"}
    )
    legacy = spec.arguments(topology.dlx) | {"x-delivery-limit": 3}
    await raw_channel.declare_queue(spec.name, durable=True, arguments=legacy)

    declared = await declare_queue(broker.channel, topology, spec)

    major = await server_major_version(raw_channel)
    hints = " ".join(declared.hints)
    assert "x-delivery-limit=3" in hints
    # RabbitMQ 4's default limit of 20 applies to the old .dead queue: the hint lifts it
    assert ("'{\"delivery-limit\":-1}'" in hints) == (major >= 4)
    # and the bindings were made: a published event reaches the old queue
    exchange = await raw_channel.get_exchange(topology.events_exchange)
    await exchange.publish(aio_pika.Message(b"{}"), routing_key="E")

    async def arrived() -> bool:
        return await _message_count(raw_channel, spec.name) == 1

    await eventually(arrived)


async def test_queue_with_foreign_arguments_still_fails_naming_our_arguments(
    broker: Broker, raw_channel: AbstractChannel, amqp_cleanup
) -> None:
    topology = broker.topology
    spec = QueueSpec(
        name=topology.worker_queue("alien"),
        exchange=topology.events_exchange,
        routing_keys=("E",),
        delivery_limit=20,
        legacy_delivery_limit=3,
    )
    amqp_cleanup(queue=spec.name)
    amqp_cleanup(queue=spec.dead_queue)
    await raw_channel.declare_queue(
        spec.name, durable=True, arguments=spec.arguments(topology.dlx) | {"x-delivery-limit": 7}
    )
    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed, match="received '20'"):
        await declare_queue(broker.channel, topology, spec)


async def test_deleting_an_old_queue_under_a_running_worker_recreates_it_with_the_new_limit(
    broker: Broker,
    raw_channel: AbstractChannel,
    amqp_cleanup,
    broker_settings: BrokerSettings,
    amqp_url: str,
) -> None:
    got: list[str | None] = []

    async def handle(delivery: Delivery) -> None:
        got.append(delivery.message_id)

    consumer = Consumer(broker, worker="migrate", events=["E"], handler=handle, max_attempts=3)
    amqp_cleanup(queue=consumer.queue_name)
    amqp_cleanup(queue=consumer.dead_queue_name)
    legacy = consumer.spec.arguments(broker.topology.dlx) | {"x-delivery-limit": 3}
    await raw_channel.declare_queue(consumer.queue_name, durable=True, arguments=legacy)
    await consumer.start()  # keeps working on the old queue
    await raw_channel.queue_delete(consumer.queue_name)  # the documented migration step

    async def recreated_with_new_limit() -> bool:
        if not consumer.is_consuming:
            return False
        # passive first: an active declare would create the queue itself
        async with await aio_pika.connect(amqp_url) as connection:
            channel = await connection.channel()
            try:
                await channel.declare_queue(consumer.queue_name, passive=True)
            except aio_pika.exceptions.ChannelClosed:
                return False  # not recreated yet
            channel = await connection.channel()
            new = consumer.spec.arguments(broker.topology.dlx)
            try:
                await channel.declare_queue(consumer.queue_name, durable=True, arguments=new)
            except aiormq.exceptions.ChannelPreconditionFailed:
                return False  # still the old arguments
        return True

    await eventually(recreated_with_new_limit, timeout=30)
    assert consumer.spec.arguments(broker.topology.dlx)["x-delivery-limit"] == 20
    exchange = await raw_channel.get_exchange(broker_settings.group)
    await exchange.publish(aio_pika.Message(b"{}", message_id="after"), routing_key="E")
    await eventually(lambda: got == ["after"], timeout=30)
    await consumer.stop()
