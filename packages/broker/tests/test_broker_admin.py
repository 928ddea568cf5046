"""BrokerAdmin against the real RabbitMQ: every operation, and its errors in the broker's types."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from spectacles.broker import Broker, BrokerSettings, TopologyMismatch
from spectacles.broker.admin import BrokerAdmin, NoSuchEntity


@pytest.fixture
async def admin(amqp_url: str, unique_name: str) -> AsyncIterator[BrokerAdmin]:
    async with await BrokerAdmin.connect(amqp_url) as admin:
        yield admin
        await admin.cleanup(
            queues=(f"{unique_name}.q", f"{unique_name}.other"), exchanges=(unique_name,)
        )


async def test_declare_bind_publish_count_get_and_purge(
    admin: BrokerAdmin, unique_name: str
) -> None:
    queue = f"{unique_name}.q"
    await admin.declare_exchange(unique_name, "topic")
    assert await admin.declare_queue(queue, bind=(unique_name, "a.*")) == 0
    for index in range(3):
        await admin.publish(
            unique_name, "a.b", b"%d" % index, headers={"n": index}, message_id=f"m{index}"
        )
    assert await admin.depth(queue) == 3
    peeked = await admin.get(queue, ack=False)
    assert peeked is not None and peeked.body == b"0"
    assert await admin.depth(queue) == 3  # left in place
    first = await admin.get(queue)
    assert first is not None
    assert (first.body, first.routing_key, first.message_id) == (b"0", "a.b", "m0")
    assert first.headers == {"n": 0}
    assert first.exchange == unique_name
    assert [d.body for d in await admin.drain(queue, limit=1)] == [b"1"]
    assert await admin.purge(queue) == 1
    assert await admin.get(queue) is None


async def test_missing_entities_are_answers_not_failures(
    admin: BrokerAdmin, unique_name: str
) -> None:
    missing = f"{unique_name}.q"
    assert await admin.depth(missing) is None
    assert await admin.exists(missing) is False
    await admin.delete_queue(missing)  # already gone: fine
    await admin.delete_exchange(unique_name)
    with pytest.raises(NoSuchEntity, match=missing):
        await admin.get(missing)
    # The refusal closed only that operation's channel: the next one works.
    await admin.declare_queue(missing)
    assert await admin.exists(missing) is True


async def test_another_connections_exclusive_queue_exists(
    admin: BrokerAdmin, amqp_url: str, unique_name: str
) -> None:
    queue = f"{unique_name}.q"
    async with await Broker.connect(BrokerSettings(amqp_url=amqp_url)) as holder:
        channel = await holder.channel()
        await channel.declare_queue(queue, exclusive=True)
        assert await admin.exists(queue) is True
    assert await admin.exists(queue) is False  # gone with its connection


async def test_redeclaring_with_other_arguments_is_a_topology_mismatch(
    admin: BrokerAdmin, unique_name: str
) -> None:
    queue = f"{unique_name}.other"
    await admin.declare_queue(queue, arguments={"x-max-length": 1})
    with pytest.raises(TopologyMismatch):
        await admin.declare_queue(queue, arguments={"x-max-length": 2})
    await admin.declare_exchange(unique_name, "topic")
    with pytest.raises(TopologyMismatch):
        await admin.declare_exchange(unique_name, "direct")
