"""Consumer against a real RabbitMQ: acks, retries, dead-lettering, competing consumers, stop."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from spectacles.broker.broker import Broker
from spectacles.broker.consumer import Consumer, Outcome
from spectacles.broker.delivery import Delivery
from spectacles.broker.errors import DeadLetter, TopologyMismatch
from spectacles.broker.settings import BrokerSettings

from .conftest import eventually

QUEUE_TYPES = ["quorum", "classic"]


async def publish(
    channel: AbstractChannel,
    group: str,
    event: str,
    body: bytes,
    **properties: object,
) -> None:
    exchange = await channel.declare_exchange(group, aio_pika.ExchangeType.DIRECT, durable=True)
    await exchange.publish(aio_pika.Message(body, **properties), routing_key=event)  # type: ignore[arg-type]


async def get_dead(
    channel: AbstractChannel, name: str, timeout: float = 10.0
) -> AbstractIncomingMessage:
    queue = await channel.declare_queue(name, passive=True)
    found: list[AbstractIncomingMessage] = []

    async def check() -> bool:
        message = await queue.get(fail=False, no_ack=True)
        if message is not None:
            found.append(message)
        return bool(found)

    await eventually(check, timeout=timeout)
    return found[0]


async def queue_depth(channel: AbstractChannel, name: str) -> int:
    queue = await channel.declare_queue(name, passive=True)
    return queue.declaration_result.message_count or 0


async def test_round_trip_keeps_body_headers_and_message_id(
    broker: Broker, raw_channel: AbstractChannel, amqp_cleanup, broker_settings: BrokerSettings
) -> None:
    got: list[Delivery] = []
    outcomes: list[Outcome] = []
    consumer = Consumer(
        broker,
        worker="echo",
        events=["MESSAGE_CREATE", "GUILD_CREATE"],
        handler=lambda d: _append(got, d),
        on_outcome=lambda _d, outcome, _e: outcomes.append(outcome),
    )
    amqp_cleanup(queue=consumer.queue_name, exchange=None)
    amqp_cleanup(queue=consumer.dead_queue_name)
    assert consumer.queue_name == f"{broker_settings.group}.echo"
    await consumer.start()
    sent_at = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    await publish(
        raw_channel,
        broker_settings.group,
        "MESSAGE_CREATE",
        b'{"content":"hi"}',
        headers={"shard_id": 3, "seq": 42, "guild_id": "81384788765712384"},
        message_id="3:abc:42",
        type="MESSAGE_CREATE",
        timestamp=sent_at,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    await publish(raw_channel, broker_settings.group, "TYPING_START", b"{}")  # not bound
    await eventually(lambda: len(outcomes) == 1)
    await consumer.stop()

    (delivery,) = got
    assert delivery.body == b'{"content":"hi"}'
    assert delivery.routing_key == "MESSAGE_CREATE"
    assert delivery.message_id == "3:abc:42"
    assert delivery.type == "MESSAGE_CREATE"
    assert delivery.timestamp == sent_at
    assert delivery.content_type == "application/json"
    assert delivery.headers["shard_id"] == 3
    assert delivery.headers["seq"] == 42
    assert delivery.headers["guild_id"] == "81384788765712384"
    assert delivery.attempt == 1
    assert delivery.redelivered is False
    assert outcomes == [Outcome.ACKED]
    assert await queue_depth(raw_channel, consumer.queue_name) == 0


async def _append(into: list[Delivery], delivery: Delivery) -> None:
    into.append(delivery)


async def test_competing_consumers_share_the_load(
    broker_settings: BrokerSettings,
    unique_name: str,
    raw_channel: AbstractChannel,
    amqp_cleanup,
) -> None:
    seen: Counter[str] = Counter()
    ids: set[str] = set()

    def make_handler(name: str):
        async def handle(delivery: Delivery) -> None:
            await asyncio.sleep(0.01)
            seen[name] += 1
            ids.add(delivery.message_id or "")

        return handle

    brokers = [
        await Broker.connect(broker_settings, connection_name=f"{unique_name}-{i}")
        for i in range(2)
    ]
    consumers = [
        Consumer(b, worker="share", events=["E"], handler=make_handler(f"c{i}"), prefetch=1)
        for i, b in enumerate(brokers)
    ]
    amqp_cleanup(queue=consumers[0].queue_name)
    amqp_cleanup(queue=consumers[0].dead_queue_name)
    try:
        for c in consumers:
            await c.start()
        for n in range(40):
            await publish(raw_channel, broker_settings.group, "E", b"{}", message_id=str(n))
        await eventually(lambda: len(ids) == 40, timeout=20)
    finally:
        for c in consumers:
            await c.stop()
        for b in brokers:
            await b.close()
    assert sum(seen.values()) == 40  # each message handled exactly once
    assert seen["c0"] >= 5 and seen["c1"] >= 5, seen


@pytest.mark.parametrize("queue_type", QUEUE_TYPES)
async def test_poison_message_is_dead_lettered_after_max_attempts_with_error_header(
    broker: Broker,
    raw_channel: AbstractChannel,
    amqp_cleanup,
    broker_settings: BrokerSettings,
    queue_type: str,
) -> None:
    attempts: list[int] = []
    outcomes: list[Outcome] = []

    async def explode(delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        raise RuntimeError(f"boom on attempt {delivery.attempt}")

    consumer = Consumer(
        broker,
        worker="poison",
        events=["E"],
        handler=explode,
        max_attempts=3,
        queue_type=queue_type,  # type: ignore[arg-type]
        on_outcome=lambda _d, outcome, _e: outcomes.append(outcome),
    )
    amqp_cleanup(queue=consumer.queue_name)
    amqp_cleanup(queue=consumer.dead_queue_name)
    await consumer.start()
    await publish(
        raw_channel,
        broker_settings.group,
        "E",
        b'{"x":1}',
        message_id="m-1",
        headers={"shard_id": 0},
        type="E",
    )
    dead = await get_dead(raw_channel, consumer.dead_queue_name)
    await consumer.stop()

    assert attempts == [1, 2, 3]
    assert outcomes == [Outcome.RETRIED, Outcome.RETRIED, Outcome.DEAD_LETTERED]
    assert dead.body == b'{"x":1}'
    assert dead.message_id == "m-1"
    assert dead.type == "E"
    assert dead.headers["x-error"] == "RuntimeError: boom on attempt 3"
    assert dead.headers["x-attempts"] == 3
    assert dead.headers["x-original-routing-key"] == "E"
    assert dead.headers["x-original-exchange"] == broker_settings.group
    assert dead.headers["shard_id"] == 0
    assert await queue_depth(raw_channel, consumer.queue_name) == 0


async def test_dead_letter_signal_sends_to_dead_queue_at_once(
    broker: Broker, raw_channel: AbstractChannel, amqp_cleanup, broker_settings: BrokerSettings
) -> None:
    calls = 0

    async def reject(delivery: Delivery) -> None:
        nonlocal calls
        calls += 1
        raise DeadLetter("body is not JSON")

    consumer = Consumer(broker, worker="undecodable", events=["E"], handler=reject)
    amqp_cleanup(queue=consumer.queue_name)
    amqp_cleanup(queue=consumer.dead_queue_name)
    await consumer.start()
    await publish(raw_channel, broker_settings.group, "E", b"\xff not json", message_id="bad")
    dead = await get_dead(raw_channel, consumer.dead_queue_name)
    await consumer.stop()
    assert calls == 1
    assert dead.body == b"\xff not json"
    assert dead.headers["x-error"] == "DeadLetter: body is not JSON"
    assert dead.headers["x-attempts"] == 1


async def test_error_header_is_truncated(
    broker: Broker, raw_channel: AbstractChannel, amqp_cleanup, broker_settings: BrokerSettings
) -> None:
    async def explode(delivery: Delivery) -> None:
        raise ValueError("x" * 5000)

    consumer = Consumer(broker, worker="long", events=["E"], handler=explode, max_attempts=1)
    amqp_cleanup(queue=consumer.queue_name)
    amqp_cleanup(queue=consumer.dead_queue_name)
    await consumer.start()
    await publish(raw_channel, broker_settings.group, "E", b"{}")
    dead = await get_dead(raw_channel, consumer.dead_queue_name)
    await consumer.stop()
    error = dead.headers["x-error"]
    assert isinstance(error, str)
    assert error.startswith("ValueError: xxx")
    assert len(error) == 1000


async def test_stop_waits_for_in_flight_handler_and_acks_it(
    broker: Broker, raw_channel: AbstractChannel, amqp_cleanup, broker_settings: BrokerSettings
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    finished: list[str] = []

    async def slow(delivery: Delivery) -> None:
        started.set()
        await release.wait()
        finished.append(delivery.message_id or "")

    consumer = Consumer(broker, worker="slow", events=["E"], handler=slow, queue_type="classic")
    amqp_cleanup(queue=consumer.queue_name)
    amqp_cleanup(queue=consumer.dead_queue_name)
    await consumer.start()
    await publish(raw_channel, broker_settings.group, "E", b"{}", message_id="only")
    await asyncio.wait_for(started.wait(), 10)
    stopping = asyncio.create_task(consumer.stop(timeout=10))
    await asyncio.sleep(0.2)
    assert not stopping.done()  # it waits for the handler
    release.set()
    await asyncio.wait_for(stopping, 10)
    assert finished == ["only"]
    assert await queue_depth(raw_channel, consumer.queue_name) == 0


async def test_mismatched_queue_arguments_raise_a_clear_error(broker: Broker, amqp_cleanup) -> None:
    async def noop(delivery: Delivery) -> None:
        return None

    first = Consumer(broker, worker="mix", events=["E"], handler=noop, queue_type="classic")
    amqp_cleanup(queue=first.queue_name)
    amqp_cleanup(queue=first.dead_queue_name)
    await first.start()
    await first.stop()
    second = Consumer(broker, worker="mix", events=["E"], handler=noop, queue_type="quorum")
    with pytest.raises(TopologyMismatch, match="already exists with other arguments"):
        await second.start()


def test_invalid_consumer_options_are_rejected(broker_settings: BrokerSettings) -> None:
    broker = Broker(broker_settings)

    async def noop(delivery: Delivery) -> None:
        return None

    with pytest.raises(ValueError, match="prefetch"):
        Consumer(broker, worker="w", events=["E"], handler=noop, prefetch=0)
    with pytest.raises(ValueError, match="max_attempts"):
        Consumer(broker, worker="w", events=["E"], handler=noop, max_attempts=0)
    with pytest.raises(ValueError, match="at least one event"):
        Consumer(broker, worker="w", events=[], handler=noop)
    with pytest.raises(ValueError, match="queue_type"):
        Consumer(broker, worker="w", events=["E"], handler=noop, queue_type="lazy")  # type: ignore[arg-type]


async def test_single_active_consumer_sends_everything_to_one_replica(
    broker_settings: BrokerSettings,
    unique_name: str,
    raw_channel: AbstractChannel,
    amqp_cleanup,
) -> None:
    seen: Counter[str] = Counter()

    def make_handler(name: str):
        async def handle(delivery: Delivery) -> None:
            seen[name] += 1

        return handle

    brokers = [
        await Broker.connect(broker_settings, connection_name=f"{unique_name}-{i}")
        for i in range(2)
    ]
    consumers = [
        Consumer(
            b,
            worker="stateful",
            events=["E"],
            handler=make_handler(f"c{i}"),
            prefetch=1,
            single_active_consumer=True,
        )
        for i, b in enumerate(brokers)
    ]
    amqp_cleanup(queue=consumers[0].queue_name)
    amqp_cleanup(queue=consumers[0].dead_queue_name)
    try:
        for c in consumers:
            await c.start()
        for n in range(20):
            await publish(raw_channel, broker_settings.group, "E", b"{}", message_id=str(n))
        await eventually(lambda: sum(seen.values()) == 20)
        assert len(seen) == 1, seen  # one active replica took all of them
        active = int(next(iter(seen))[1:])
        await consumers[active].stop()  # fail over: the standby takes the next messages
        await brokers[active].close()
        await publish(raw_channel, broker_settings.group, "E", b"{}", message_id="after")
        await eventually(lambda: seen[f"c{1 - active}"] == 1)
    finally:
        for c in consumers:
            await c.stop()
        for b in brokers:
            await b.close()


async def test_server_side_reject_lands_in_dead_queue(
    broker: Broker, raw_channel: AbstractChannel, amqp_cleanup, broker_settings: BrokerSettings
) -> None:
    async def noop(delivery: Delivery) -> None:
        return None

    consumer = Consumer(broker, worker="rejects", events=["E"], handler=noop)
    amqp_cleanup(queue=consumer.queue_name)
    amqp_cleanup(queue=consumer.dead_queue_name)
    await consumer.start()
    await consumer.stop()  # topology declared, nobody consuming
    await publish(raw_channel, broker_settings.group, "E", b"raw", message_id="r1")
    queue = await raw_channel.declare_queue(consumer.queue_name, passive=True)
    message = None

    async def got() -> bool:
        nonlocal message
        message = await queue.get(fail=False)
        return message is not None

    await eventually(got)
    assert message is not None
    await message.reject(requeue=False)  # what a non-Python consumer might do
    dead = await get_dead(raw_channel, consumer.dead_queue_name)
    assert dead.message_id == "r1"
    assert dead.headers["x-death"][0]["reason"] == "rejected"
