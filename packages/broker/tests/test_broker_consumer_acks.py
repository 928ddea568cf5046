"""Batched acks: one ``multiple`` ack per tick, never over a delivery that is not settled."""

from __future__ import annotations

import asyncio
from collections import Counter

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from spectacles.broker.broker import Broker
from spectacles.broker.consumer import Consumer, Outcome
from spectacles.broker.delivery import Delivery
from spectacles.broker.settings import BrokerSettings

from .conftest import eventually

# Also run against RabbitMQ 4 (scripts/rabbit4.sh).
pytestmark = pytest.mark.rmq4


async def publish_many(channel: AbstractChannel, group: str, event: str, ids: list[str]) -> None:
    exchange = await channel.declare_exchange(group, aio_pika.ExchangeType.DIRECT, durable=True)
    for message_id in ids:
        await exchange.publish(aio_pika.Message(b"{}", message_id=message_id), routing_key=event)


async def queue_depth(channel: AbstractChannel, name: str) -> int:
    queue = await channel.declare_queue(name, passive=True)
    return queue.declaration_result.message_count or 0


@pytest.mark.parametrize("queue_type", ["quorum", "classic"])
async def test_every_delivery_is_acked_exactly_once(
    broker: Broker,
    raw_channel: AbstractChannel,
    amqp_cleanup,
    broker_settings: BrokerSettings,
    queue_type: str,
) -> None:
    seen: Counter[str] = Counter()
    outcomes: list[Outcome] = []

    async def handle(delivery: Delivery) -> None:
        seen[delivery.message_id or ""] += 1
        if len(seen) % 7 == 0:
            await asyncio.sleep(0.001)  # finish some out of order

    consumer = Consumer(
        broker,
        worker="many",
        events=["E"],
        handler=handle,
        prefetch=16,
        queue_type=queue_type,  # type: ignore[arg-type]
        on_outcome=lambda _d, outcome, _e: outcomes.append(outcome),
    )
    amqp_cleanup(queue=consumer.queue_name)
    amqp_cleanup(queue=consumer.dead_queue_name)
    await consumer.start()
    ids = [f"m{i}" for i in range(300)]
    await publish_many(raw_channel, broker_settings.group, "E", ids)
    await eventually(lambda: len(outcomes) == len(ids), timeout=20)
    await consumer.stop()

    # An ack of an unknown (already acked) tag would close the channel and redeliver.
    assert seen == Counter(ids)
    assert outcomes == [Outcome.ACKED] * len(ids)
    assert await queue_depth(raw_channel, consumer.queue_name) == 0


async def test_slow_handler_does_not_hold_back_acks_of_later_deliveries(
    broker: Broker, raw_channel: AbstractChannel, amqp_cleanup, broker_settings: BrokerSettings
) -> None:
    # prefetch 2: if finished messages above the slow one waited for it to be acked, the window
    # would stay full and the later messages would never arrive.
    later_done = asyncio.Event()
    handled: list[str] = []

    async def handle(delivery: Delivery) -> None:
        if delivery.message_id == "slow":
            await asyncio.wait_for(later_done.wait(), 10)
        handled.append(delivery.message_id or "")
        if len(handled) == 5:
            later_done.set()

    consumer = Consumer(
        broker, worker="hol", events=["E"], handler=handle, prefetch=2, queue_type="classic"
    )
    amqp_cleanup(queue=consumer.queue_name)
    amqp_cleanup(queue=consumer.dead_queue_name)
    await consumer.start()
    await publish_many(raw_channel, broker_settings.group, "E", ["slow", "a", "b", "c", "d", "e"])
    await eventually(lambda: len(handled) == 6, timeout=15)
    await consumer.stop()

    assert handled[:5] == ["a", "b", "c", "d", "e"]
    assert handled[5] == "slow"
    assert await queue_depth(raw_channel, consumer.queue_name) == 0


async def test_handler_cancelled_at_stop_is_redelivered_not_swept_by_a_later_ack(
    broker: Broker, raw_channel: AbstractChannel, amqp_cleanup, broker_settings: BrokerSettings
) -> None:
    # Tag 1 never finishes; tags 2..4 are acked. A ``multiple`` ack for tag 4 would ack tag 1
    # too and lose it; it must come back after stop() cancels its handler.
    stuck_started = asyncio.Event()
    handled: list[str] = []

    async def handle(delivery: Delivery) -> None:
        if delivery.message_id == "stuck":
            stuck_started.set()
            await asyncio.sleep(60)
        handled.append(delivery.message_id or "")

    consumer = Consumer(
        broker, worker="gap", events=["E"], handler=handle, prefetch=4, queue_type="classic"
    )
    amqp_cleanup(queue=consumer.queue_name)
    amqp_cleanup(queue=consumer.dead_queue_name)
    await consumer.start()
    await publish_many(raw_channel, broker_settings.group, "E", ["stuck", "a", "b", "c"])
    await asyncio.wait_for(stuck_started.wait(), 10)
    await eventually(lambda: len(handled) == 3)
    await consumer.stop(timeout=0.2)
    assert await queue_depth(raw_channel, consumer.queue_name) == 1  # only "stuck" is left

    again: list[Delivery] = []

    async def record(delivery: Delivery) -> None:
        again.append(delivery)

    second = Consumer(broker, worker="gap", events=["E"], handler=record, queue_type="classic")
    await second.start()
    await eventually(lambda: len(again) == 1)
    await second.stop()
    assert again[0].message_id == "stuck"
    assert again[0].attempt == 2  # the interrupted run counts as an attempt
    assert await queue_depth(raw_channel, consumer.queue_name) == 0
