"""RabbitMQ closing the publish channel over one publish must not fail the others on it.

The publisher shares one confirm channel between every caller (every gateway shard). A deleted
exchange (404) or a message over ``max_message_size`` (406) closes that channel; the publishes
the refusal does not concern are written again on a new channel, and a deleted exchange the
publisher declared is declared again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import subprocess
from collections.abc import AsyncIterator, Callable

import aio_pika
import pytest

from spectacles.broker.errors import PublishError, PublishTooLarge
from spectacles.broker.publisher import Publisher
from spectacles.broker.settings import BrokerSettings

pytestmark = pytest.mark.rmq4  # also run against RabbitMQ 4 (make test-rmq4)

RABBITMQCTL = shlex.split(os.environ.get("RABBITMQCTL", "rabbitmqctl"))


class Outcomes:
    """A ConfirmListener that records how each token ended."""

    def __init__(self) -> None:
        self.confirmed: set[int] = set()
        self.failed: dict[int, BaseException] = {}

    def publish_confirmed(self, token: int) -> None:
        self.confirmed.add(token)

    def publish_failed(self, token: int, error: BaseException) -> None:
        self.failed[token] = error

    def settled(self, count: int) -> Callable[[], bool]:
        return lambda: len(self.confirmed) + len(self.failed) >= count


async def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


def rabbitmqctl_eval(expression: str) -> str:
    return subprocess.run(
        [*RABBITMQCTL, "eval", expression], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()


@contextlib.asynccontextmanager
async def broker_size_limit(small: int) -> AsyncIterator[int]:
    """The max_message_size RabbitMQ enforces on connections opened in the block.

    RabbitMQ 4 reads the limit (a persistent term) at every publish: its own value (default
    16 MiB) is used as it is, since changing it would hit every user of a shared broker. RabbitMQ
    3.x reads it when a channel opens (default 128 MiB): it is lowered to ``small`` for the block
    only, and restored whatever happens.
    """
    term = await asyncio.to_thread(rabbitmqctl_eval, "persistent_term:get(max_message_size, none).")
    if term.isdigit():
        yield int(term)
        return
    read = await asyncio.to_thread(
        rabbitmqctl_eval, "application:get_env(rabbit, max_message_size)."
    )
    current = re.fullmatch(r"\{ok,(\d+)\}", read)
    assert current is not None, "cannot read RabbitMQ's max_message_size"
    await asyncio.to_thread(
        rabbitmqctl_eval, f"application:set_env(rabbit, max_message_size, {small})."
    )
    try:
        yield small
    finally:
        await asyncio.shield(
            asyncio.to_thread(
                rabbitmqctl_eval,
                f"application:set_env(rabbit, max_message_size, {current.group(1)}).",
            )
        )


@pytest.fixture
async def channel(amqp_url: str) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(amqp_url)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


async def bound_queue(
    channel: aio_pika.abc.AbstractChannel,
    exchange: str,
    routing_key: str,
    register: Callable[..., None],
) -> aio_pika.abc.AbstractQueue:
    queue = await channel.declare_queue(f"{exchange}.{routing_key}", durable=True)
    register(queue=queue.name)
    await queue.bind(exchange, routing_key=routing_key)
    return queue


async def test_publisher_when_one_message_is_over_the_broker_limit_fails_only_that_one(
    broker_settings: BrokerSettings,
    amqp_cleanup: Callable[..., None],
    channel: aio_pika.abc.AbstractChannel,
) -> None:
    async with broker_size_limit(65536) as limit:
        publisher = await Publisher.connect(broker_settings)
    try:
        await publisher.declare_events_exchange()
        queue = await bound_queue(channel, broker_settings.group, "small", amqp_cleanup)
        small = publisher.prepare("small")
        large = publisher.prepare("large")
        others, offender = Outcomes(), Outcomes()
        # One burst, so the large one sits between others still in flight on the channel.
        for token in range(40):
            await publisher.submit_tracked(small, b"x" * 100, others, token, message_id=str(token))
            if token == 20:
                await publisher.submit_tracked(large, b"y" * (limit + 1), offender, 0)
        await wait_until(others.settled(40))
        await wait_until(offender.settled(1))
    finally:
        await publisher.close()
    assert others.failed == {}, "another caller's publishes failed with the offender"
    assert others.confirmed == set(range(40))
    (error,) = offender.failed.values()
    assert isinstance(error, PublishTooLarge)
    assert (error.size, error.limit) == (limit + 1, limit)
    received: set[str] = set()
    async with asyncio.timeout(20):
        async with queue.iterator() as messages:
            async for message in messages:
                await message.ack()
                received.add(message.message_id or "")
                if len(received) == 40:
                    break
    assert received == {str(token) for token in range(40)}


async def test_publisher_when_events_exchange_deleted_declares_it_again_and_resends(
    broker_settings: BrokerSettings,
    amqp_cleanup: Callable[..., None],
    channel: aio_pika.abc.AbstractChannel,
) -> None:
    async with await Publisher.connect(broker_settings) as publisher:
        await publisher.declare_events_exchange()
        await publisher.publish("READY", b"{}")
        await channel.exchange_delete(broker_settings.group)
        stream = publisher.prepare("READY")
        outcomes = Outcomes()
        for token in range(50):
            await publisher.submit_tracked(stream, b"{}", outcomes, token)
        await wait_until(outcomes.settled(50))
        assert outcomes.failed == {}
        assert outcomes.confirmed == set(range(50))
        # Declared again, as the publisher declared it: a passive declare finds it.
        await channel.get_exchange(broker_settings.group, ensure=True)
        assert publisher.is_connected


async def test_publisher_when_unknown_exchange_missing_fails_only_its_publishes(
    broker_settings: BrokerSettings,
    amqp_cleanup: Callable[..., None],
    channel: aio_pika.abc.AbstractChannel,
) -> None:
    missing = f"{broker_settings.group}.never-declared"
    async with await Publisher.connect(broker_settings) as publisher:
        await publisher.declare_events_exchange()
        queue = await bound_queue(channel, broker_settings.group, "READY", amqp_cleanup)
        good, bad = Outcomes(), Outcomes()
        ready = publisher.prepare("READY")
        nowhere = publisher.prepare("READY", exchange=missing)
        for token in range(30):
            await publisher.submit_tracked(ready, b"{}", good, token, message_id=str(token))
            if token == 10:
                await publisher.submit_tracked(nowhere, b"{}", bad, 0)
        await wait_until(good.settled(30))
        await wait_until(bad.settled(1))
        assert good.failed == {}
        assert good.confirmed == set(range(30))
        (error,) = bad.failed.values()
        assert isinstance(error, PublishError)
        assert "404" in str(error)
        await wait_until(lambda: queue.declaration_result.message_count is not None)
        declared = await channel.declare_queue(queue.name, passive=True)
        assert declared.declaration_result.message_count is not None
        assert declared.declaration_result.message_count >= 30


async def unrouted_publisher(
    settings: BrokerSettings, register: Callable[..., None]
) -> tuple[Publisher, str]:
    queue = f"{settings.group}.unrouted"
    register(queue=queue)
    publisher = await Publisher.connect(settings, unrouted_queue=queue)
    await publisher.declare_events_exchange()
    await publisher.declare_queue(queue, {"x-queue-type": "quorum"})
    return publisher, queue


async def drain_ids(channel: aio_pika.abc.AbstractChannel, queue_name: str) -> dict[str, str]:
    """message_id -> type of every message in the queue (consumed)."""
    queue = await channel.declare_queue(queue_name, passive=True)
    found: dict[str, str] = {}
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        found[message.message_id or ""] = message.type or ""
    return found


async def test_publisher_when_mandatory_publish_unroutable_keeps_it_in_unrouted_queue(
    broker_settings: BrokerSettings,
    amqp_cleanup: Callable[..., None],
    channel: aio_pika.abc.AbstractChannel,
) -> None:
    publisher, unrouted = await unrouted_publisher(broker_settings, amqp_cleanup)
    try:
        bound = await bound_queue(channel, broker_settings.group, "READY", amqp_cleanup)
        outcomes = Outcomes()
        ready = publisher.prepare("READY", type="READY", mandatory=True)
        nobody = publisher.prepare("GUILD_CREATE", type="GUILD_CREATE", mandatory=True)
        for token in range(20):
            stream = ready if token % 2 else nobody
            await publisher.submit_tracked(stream, b"{}", outcomes, token, message_id=str(token))
        await wait_until(outcomes.settled(20))
        assert outcomes.failed == {}
        assert publisher.unrouted == {"GUILD_CREATE": 10}
    finally:
        await publisher.close()
    kept = await drain_ids(channel, unrouted)
    assert kept == {str(token): "GUILD_CREATE" for token in range(0, 20, 2)}
    assert set(await drain_ids(channel, bound.name)) == {str(t) for t in range(1, 20, 2)}


async def test_publisher_when_channel_recovers_returns_of_rewritten_publishes_still_match(
    broker_settings: BrokerSettings,
    amqp_cleanup: Callable[..., None],
    channel: aio_pika.abc.AbstractChannel,
) -> None:
    """Written again on a new channel, a mandatory publish keeps its return id (no mix-up)."""
    async with broker_size_limit(65536) as limit:
        publisher, unrouted = await unrouted_publisher(broker_settings, amqp_cleanup)
    try:
        nobody = publisher.prepare("GUILD_CREATE", type="GUILD_CREATE", mandatory=True)
        outcomes, offender = Outcomes(), Outcomes()
        for round_ in range(2):  # the second round's publishes reuse the first one's tags
            for token in range(round_ * 40, round_ * 40 + 40):
                await publisher.submit_tracked(
                    nobody, b"{}", outcomes, token, message_id=str(token)
                )
                if token == 20:
                    await publisher.submit_tracked(nobody, b"y" * (limit + 1), offender, 0)
            await wait_until(outcomes.settled(40 * (round_ + 1)))
        await wait_until(offender.settled(1))
    finally:
        await publisher.close()
    assert outcomes.failed == {}
    assert isinstance(offender.failed[0], PublishTooLarge)
    assert publisher.unrouted == {"GUILD_CREATE": 80}
    assert set(await drain_ids(channel, unrouted)) == {str(token) for token in range(80)}
