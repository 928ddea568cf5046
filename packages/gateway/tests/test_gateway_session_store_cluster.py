"""The RabbitMQ session store on a cluster: quorum (replicated) queues, and no 406 for old ones."""

from __future__ import annotations

import time

import pytest

from spectacles.broker.broker import Broker
from spectacles.broker.queue_type import declarable_type
from spectacles.broker.settings import BrokerSettings
from spectacles.gateway import AmqpSessionStore, SessionState, session_queue_name

pytestmark = [pytest.mark.rmq4, pytest.mark.timeout(60)]

ARGUMENTS = {"x-max-length": 1, "x-overflow": "drop-head", "x-expires": 24 * 3600 * 1000}


def state(shard_id: int, seq: int) -> SessionState:
    return SessionState(
        shard_id=shard_id,
        shard_count=1,
        session_id=f"s{shard_id}",
        seq=seq,
        resume_gateway_url="ws://127.0.0.1:1/gateway",
        saved_at=time.time(),
    )


async def queue_type(broker: Broker, name: str) -> str:
    """The queue's type, from how RabbitMQ answers its declaration as a quorum queue."""
    arguments = {**ARGUMENTS, "x-queue-type": "quorum", "x-delivery-limit": 2**31 - 1}
    return await declarable_type(broker, name, "quorum", arguments)


async def test_sessions_live_in_quorum_queues_with_last_value_and_ttl(
    amqp_url: str, unique_name: str
) -> None:
    broker = await Broker.connect(BrokerSettings(amqp_url=amqp_url, group=unique_name))
    store = AmqpSessionStore(broker, ttl=60)
    name = session_queue_name(unique_name, 0)
    try:
        for seq in (5, 9, 12):
            await store.save(state(0, seq))
        for _ in range(25):  # more peeks than RabbitMQ 4's default delivery limit (20)
            loaded = await store.load(0, 1)
            assert loaded is not None and loaded.seq == 12
        assert await queue_type(broker, name) == "quorum"
    finally:
        await store.close()
        channel = await broker.channel()
        await channel.queue_delete(name)
        await channel.close()
        await broker.close()


async def test_a_classic_session_queue_from_an_older_version_keeps_working(
    amqp_url: str, unique_name: str
) -> None:
    broker = await Broker.connect(BrokerSettings(amqp_url=amqp_url, group=unique_name))
    name = session_queue_name(unique_name, 0)
    channel = await broker.channel()
    await channel.declare_queue(
        name,
        durable=True,
        arguments={**ARGUMENTS, "x-queue-type": "classic"},
    )
    store = AmqpSessionStore(broker, ttl=60)
    try:
        await store.save(state(0, 7))  # a 406 PRECONDITION_FAILED here without the fallback
        loaded = await store.load(0, 1)
        assert loaded is not None and loaded.seq == 7
        assert await queue_type(broker, name) == "classic"
    finally:
        await store.close()
        channel = await broker.channel()
        await channel.queue_delete(name)
        await channel.close()
        await broker.close()
