"""BrokerAdmin against the real RabbitMQ: every operation, and its errors in the broker's types."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from collections.abc import AsyncIterator
from urllib.parse import quote, urlsplit

import pytest

from spectacles.broker import Broker, BrokerSettings, ConnectionLost, TopologyMismatch
from spectacles.broker.admin import AccessRefused, BrokerAdmin, NoSuchEntity
from spectacles.broker.topology import QueueSpec

from .conftest import RABBITMQCTL, close_connections_named


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


async def test_consume_hands_out_messages_as_they_arrive_and_leaves_the_rest(
    admin: BrokerAdmin, unique_name: str
) -> None:
    queue = f"{unique_name}.q"
    await admin.declare_queue(queue)
    async with admin.consume(queue) as messages:
        assert await admin.consumers(queue) == 1
        got = asyncio.ensure_future(anext(messages))
        await asyncio.sleep(0.2)
        assert not got.done()  # nothing there yet: it waits
        await admin.publish("", queue, b"late", type="PING", persistent=False)
        first = await asyncio.wait_for(got, 10)
        assert (first.body, first.type, first.persistent) == (b"late", "PING", False)
        await admin.publish("", queue, b"kept-1")
        await admin.publish("", queue, b"kept-2")
    # Only what was handed out was taken; the subscription is gone with the block.
    assert await admin.consumers(queue) == 0
    assert await admin.depth(queue) == 2
    kept = await admin.take(queue, 2)
    assert [(m.body, m.persistent) for m in kept] == [(b"kept-1", True), (b"kept-2", True)]
    assert await admin.consumers(f"{unique_name}.other") is None


async def test_take_waits_for_late_messages_and_says_how_many_came(
    admin: BrokerAdmin, unique_name: str
) -> None:
    queue = f"{unique_name}.q"
    await admin.declare_queue(queue)

    async def publish_later() -> None:
        await asyncio.sleep(0.3)
        for body in (b"a", b"b"):
            await admin.publish("", queue, body)

    publishing = asyncio.create_task(publish_later())
    assert [m.body for m in await admin.take(queue, 2, timeout=10)] == [b"a", b"b"]
    await publishing
    await admin.publish("", queue, b"c")
    with pytest.raises(TimeoutError, match=rf"1 of 2 messages arrived in queue '{queue}'"):
        await admin.take(queue, 2, timeout=0.5)
    assert await admin.depth(queue) == 0  # the one that came was taken


async def test_consuming_a_missing_queue_fails_on_entry_and_a_deleted_one_ends(
    admin: BrokerAdmin, unique_name: str
) -> None:
    queue = f"{unique_name}.q"
    with pytest.raises(NoSuchEntity, match=queue):
        async with admin.consume(queue):
            pass
    await admin.declare_queue(queue)
    async with admin.consume(queue) as messages:
        await admin.delete_queue(queue)  # RabbitMQ cancels the subscription
        async with asyncio.timeout(10):
            assert [m async for m in messages] == []
    await admin.declare_queue(queue)
    taking = asyncio.create_task(admin.take(queue, 1, timeout=10))
    await asyncio.sleep(0.3)
    await admin.delete_queue(queue)
    with pytest.raises(NoSuchEntity, match="went away after 0 of 1"):
        await taking


async def test_a_lost_connection_ends_a_take_with_connection_lost(
    amqp_url: str, unique_name: str
) -> None:
    queue = f"{unique_name}.q"
    name = f"{unique_name}-admin"
    async with await BrokerAdmin.connect(amqp_url, connection_name=name) as admin:
        await admin.declare_queue(queue, auto_delete=False)
        try:
            taking = asyncio.create_task(admin.take(queue, 1, timeout=30))
            await asyncio.sleep(0.5)
            assert await asyncio.to_thread(close_connections_named, name) == 1
            with pytest.raises(ConnectionLost, match=queue):
                await asyncio.wait_for(taking, 20)
        finally:
            await admin.broker.wait_connected(20)
            await admin.delete_queue(queue)


async def test_declare_spec_declares_the_queue_its_dead_queue_and_bindings(
    amqp_url: str, unique_name: str
) -> None:
    spec = QueueSpec(f"{unique_name}.w", unique_name, ("A", "B"), "classic")
    settings = BrokerSettings(amqp_url=amqp_url, group=unique_name)
    async with await BrokerAdmin.connect(settings) as admin:
        try:
            declared = await admin.declare_spec(spec)
            assert (declared.name, declared.hints) == (spec.name, ())
            await admin.publish(unique_name, "B", b"event")
            await admin.publish(f"{unique_name}.dlx", spec.name, b"dead")
            assert [m.body for m in await admin.drain(spec.name)] == [b"event"]
            assert [m.body for m in await admin.drain(spec.dead_queue)] == [b"dead"]
            other = QueueSpec(spec.name, unique_name, ("A",), "quorum")
            with pytest.raises(TopologyMismatch, match=spec.name):
                await admin.declare_spec(other)
        finally:
            await admin.cleanup(
                queues=(spec.name, spec.dead_queue),
                exchanges=(unique_name, f"{unique_name}.dlx"),
            )


def _rabbitmqctl(*args: str) -> None:
    done = subprocess.run([*RABBITMQCTL, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.fixture
async def reader_url(amqp_url: str, unique_name: str) -> AsyncIterator[str]:
    """A user who may only read queues named after the test (and configure/write nothing)."""
    parts = urlsplit(amqp_url)
    vhost = parts.path.lstrip("/") or "/"
    user, password = f"{unique_name}-reader", secrets.token_hex(12)
    await asyncio.to_thread(_rabbitmqctl, "add_user", user, password)
    try:
        await asyncio.to_thread(
            _rabbitmqctl, "set_permissions", "-p", vhost, user, "^$", "^$", f"^{unique_name}.q$"
        )
        host = f"{parts.hostname}:{parts.port or 5672}"
        yield f"amqp://{quote(user, safe='')}:{password}@{host}/{quote(vhost, safe='')}"
    finally:
        await asyncio.to_thread(_rabbitmqctl, "delete_user", user)


async def test_a_refused_permission_is_access_refused(
    admin: BrokerAdmin, reader_url: str, unique_name: str
) -> None:
    readable, other = f"{unique_name}.q", f"{unique_name}.other"
    for name in (readable, other):
        await admin.declare_queue(name)
        await admin.publish("", name, b"x")
    async with await BrokerAdmin.connect(reader_url) as reader:
        with pytest.raises(AccessRefused, match=other):
            await reader.declare_queue(f"{unique_name}.other")
        with pytest.raises(AccessRefused, match=other):
            await reader.delete_queue(other)
        with pytest.raises(AccessRefused, match=other):
            await reader.publish("", other, b"y")
        with pytest.raises(AccessRefused, match=other):
            await reader.get(other)
        with pytest.raises(AccessRefused, match=other):
            async with reader.consume(other):
                pass
        # What it is allowed, it can do on the same connection.
        assert [m.body for m in await reader.take(readable, 1)] == [b"x"]
        assert await reader.exists(other) is True
