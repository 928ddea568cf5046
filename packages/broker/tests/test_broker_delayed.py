"""publish_later against the real RabbitMQ: late, never early, durable past its publisher."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable

import aio_pika
import aiormq
import pytest

from spectacles.broker import (
    Broker,
    TopologyMismatch,
    delay_queue_name,
    publish_later,
    scheduled,
)
from spectacles.broker import delayed as delayed_module

from .conftest import eventually


@pytest.fixture
async def target(
    raw_channel: aio_pika.abc.AbstractChannel,
    unique_name: str,
    amqp_cleanup: Callable[..., None],
) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """Exchange ``{unique}`` with queue ``{unique}.target`` bound to routing key ``later``."""
    exchange = await raw_channel.declare_exchange(unique_name, "direct", durable=True)
    queue = await raw_channel.declare_queue(f"{unique_name}.target", durable=True)
    await queue.bind(exchange, "later")
    amqp_cleanup(queue=queue.name)
    for delay in (0.2, 0.5, 1.5, 3.0):
        amqp_cleanup(queue=delay_queue_name(unique_name, "later", delay))
    yield queue


async def first_message(
    queue: aio_pika.abc.AbstractQueue, timeout: float = 15.0
) -> aio_pika.abc.AbstractIncomingMessage:
    async with asyncio.timeout(timeout):
        while (message := await queue.get(no_ack=True, fail=False)) is None:
            await asyncio.sleep(0.02)
    return message


def test_buckets_round_up_and_name_their_target() -> None:
    assert delay_queue_name("gateway", "raid-guard.restore", 150) == (
        "gateway.delayed.raid-guard.restore.150000ms"
    )
    assert delay_queue_name("g", "k", 1.234) == "g.delayed.k.1300ms"  # later, never earlier
    assert delay_queue_name("g", "k", 0.0991) == "g.delayed.k.100ms"
    assert delay_queue_name("", "q", 0.5) == "default.delayed.q.500ms"
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="delay"):
            delay_queue_name("g", "k", bad)
    with pytest.raises(ValueError, match="255"):
        delay_queue_name("g", "k" * 250, 1)


async def test_a_message_arrives_after_its_delay_and_not_before(
    broker: Broker, unique_name: str, target: aio_pika.abc.AbstractQueue
) -> None:
    started = time.monotonic()
    bucket = await publish_later(
        broker,
        unique_name,
        "later",
        b'{"n": 1}',
        delay=1.5,
        headers={"guild_id": "7"},
        message_id="order-1",
    )
    assert bucket == f"{unique_name}.delayed.later.1500ms"
    assert await target.get(no_ack=True, fail=False) is None
    message = await first_message(target)
    waited = time.monotonic() - started
    assert waited >= 1.5, f"delivered after {waited:.3f}s, before its delay"
    assert message.body == b'{"n": 1}'
    assert message.message_id == "order-1"
    assert message.headers["guild_id"] == "7"
    assert message.routing_key == "later"


async def test_a_short_delay_does_not_wait_behind_a_long_one(
    broker: Broker, unique_name: str, target: aio_pika.abc.AbstractQueue
) -> None:
    # With per-message TTL on one queue the 0.5 s message would wait for the 3 s one at the head.
    await publish_later(broker, unique_name, "later", b"long", delay=3.0)
    started = time.monotonic()
    await publish_later(broker, unique_name, "later", b"short", delay=0.5)
    first = await first_message(target)
    assert first.body == b"short"
    assert time.monotonic() - started < 2.5
    assert (await first_message(target)).body == b"long"


async def test_the_message_survives_its_publisher_process(
    amqp_url: str, unique_name: str, target: aio_pika.abc.AbstractQueue
) -> None:
    script = (
        "import asyncio, sys\n"
        "from spectacles.broker import BrokerSettings, Publisher, publish_later\n"
        "async def main():\n"
        "    async with await Publisher.connect(BrokerSettings(amqp_url=sys.argv[1])) as p:\n"
        "        await publish_later(p, sys.argv[2], 'later', b'from a dead process', delay=1.5)\n"
        "asyncio.run(main())\n"
    )
    started = time.monotonic()
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", script, amqp_url, unique_name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    message = await first_message(target)
    assert message.body == b"from a dead process"
    assert time.monotonic() - started >= 1.5


@pytest.mark.slow
async def test_dead_lettering_waits_for_a_target_queue_that_is_not_bound_yet(
    broker: Broker,
    raw_channel: aio_pika.abc.AbstractChannel,
    unique_name: str,
    target: aio_pika.abc.AbstractQueue,
) -> None:
    # At-least-once dead-lettering (quorum): with none (classic, or quorum without the strategy)
    # RabbitMQ drops a message it cannot route when it expires.
    await target.unbind(unique_name, "later")
    await publish_later(broker, unique_name, "later", b"kept", delay=0.5)
    await asyncio.sleep(1.5)  # expired, nowhere to go
    assert await target.get(no_ack=True, fail=False) is None
    await target.bind(unique_name, "later")
    message = await first_message(target, timeout=240)  # RabbitMQ retries unconfirmed dead letters
    assert message.body == b"kept"


async def test_scheduled_lists_waiting_messages_and_leaves_them_in_place(
    broker: Broker, unique_name: str, target: aio_pika.abc.AbstractQueue
) -> None:
    assert await scheduled(broker, unique_name, "later", delay=3.0) == []  # no bucket yet
    for n in range(3):
        await publish_later(broker, unique_name, "later", b"%d" % n, delay=3.0, message_id=f"m{n}")
    for _ in range(25):  # more looks than RabbitMQ 4's default delivery limit of 20
        seen = await scheduled(broker, unique_name, "later", delay=3.0)
        assert [s.message_id for s in seen] == ["m0", "m1", "m2"]
    bodies = [(await first_message(target)).body for _ in range(3)]
    assert bodies == [b"0", b"1", b"2"]  # a look that saw them all keeps their order
    await publish_later(broker, unique_name, "later", b"3", delay=3.0, message_id="m3")
    await publish_later(broker, unique_name, "later", b"4", delay=3.0, message_id="m4")
    assert [s.body for s in await scheduled(broker, unique_name, "later", delay=3.0, limit=1)] == [
        b"3"
    ]


async def test_a_bucket_of_another_type_is_a_topology_mismatch(
    broker: Broker, unique_name: str, target: aio_pika.abc.AbstractQueue
) -> None:
    await publish_later(broker, unique_name, "later", b"x", delay=0.2, queue_type="classic")
    with pytest.raises(TopologyMismatch) as info:
        await publish_later(broker, unique_name, "later", b"x", delay=0.2)
    assert info.value.queue == delay_queue_name(unique_name, "later", 0.2)
    assert (await first_message(target)).body == b"x"


async def test_rabbitmq_deletes_a_bucket_nobody_uses(
    broker: Broker,
    raw_channel: aio_pika.abc.AbstractChannel,
    unique_name: str,
    target: aio_pika.abc.AbstractQueue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The real margin is ten minutes; shortened here so x-expires shows within the test.
    monkeypatch.setattr(delayed_module, "_MIN_EXPIRES_MARGIN_MS", 0)
    bucket = await publish_later(broker, unique_name, "later", b"x", delay=0.5)
    assert (await first_message(target)).body == b"x"
    connection = await aio_pika.connect(broker.settings.amqp_url)

    async def bucket_gone() -> bool:
        channel = await connection.channel()
        try:
            await channel.declare_queue(bucket, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return True
        await channel.close()
        return False

    try:
        # Looks 2.5 s apart: a passive declare may count as use and renew the 1 s expiry.
        await eventually(bucket_gone, timeout=20, interval=2.5)
    finally:
        await connection.close()
