"""The RabbitMQ session store against the real broker."""

from __future__ import annotations

import time

import aio_pika

from spectacles.broker.broker import Broker
from spectacles.broker.settings import BrokerSettings
from spectacles.gateway import AmqpSessionStore, SessionState, session_queue_name


def state(shard_id: int, seq: int, *, saved_at: float | None = None) -> SessionState:
    return SessionState(
        shard_id=shard_id,
        shard_count=2,
        session_id=f"s{shard_id}",
        seq=seq,
        resume_gateway_url="ws://127.0.0.1:1/gateway",
        saved_at=time.time() if saved_at is None else saved_at,
    )


async def test_amqp_session_store_keeps_only_the_newest(amqp_url: str, unique_name: str) -> None:
    broker = await Broker.connect(BrokerSettings(amqp_url=amqp_url, group=unique_name))
    store = AmqpSessionStore(broker, ttl=60)
    try:
        assert await store.load(0, 2) is None
        for seq in (5, 9, 12):
            await store.save(state(0, seq))
        loaded = await store.load(0, 2)
        assert loaded is not None and loaded.seq == 12
        # Loading leaves the session in place (another host may need it after us).
        again = await store.load(0, 2)
        assert again == loaded
        assert await store.load(0, 3) is None  # another shard count
        # A second store (another host) sees the same session.
        other = AmqpSessionStore(broker, ttl=60)
        assert await other.load(0, 2) == loaded
        await other.close()
        await store.save(state(1, 3, saved_at=time.time() - 3600))
        assert await store.load(1, 2) is None  # older than the TTL
    finally:
        await store.close()
        channel = await broker.channel()
        for shard_id in (0, 1):
            await channel.queue_delete(session_queue_name(unique_name, shard_id))
        await channel.close()
        await broker.close()


async def test_amqp_session_store_message_expires(amqp_url: str, unique_name: str) -> None:
    broker = await Broker.connect(BrokerSettings(amqp_url=amqp_url, group=unique_name))
    store = AmqpSessionStore(broker, ttl=0.2)
    try:
        await store.save(state(0, 1))
        channel = await broker.channel()
        queue = await channel.get_queue(session_queue_name(unique_name, 0), ensure=False)
        await _wait_empty(queue)
        assert await store.load(0, 2) is None
        await channel.close()
    finally:
        await store.close()
        channel = await broker.channel()
        await channel.queue_delete(session_queue_name(unique_name, 0))
        await channel.close()
        await broker.close()


async def _wait_empty(queue: aio_pika.abc.AbstractQueue) -> None:
    import asyncio

    for _ in range(50):
        declared = await queue.declare()
        if declared.message_count == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("session message did not expire")
