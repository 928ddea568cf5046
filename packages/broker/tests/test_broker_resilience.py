"""Crashes and outages: killed consumers, crash-looping messages, server-side connection close."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from spectacles.broker.broker import Broker
from spectacles.broker.consumer import Consumer
from spectacles.broker.delivery import Delivery
from spectacles.broker.errors import BrokerUnavailable
from spectacles.broker.settings import BrokerSettings

from .conftest import close_connections_named, eventually

# Also run against RabbitMQ 4 (scripts/rabbit4.sh).
pytestmark = pytest.mark.rmq4

# A consumer process whose handler never finishes: killed with SIGKILL while holding a message.
_STUCK_CONSUMER = textwrap.dedent(
    """
    import asyncio, sys
    from spectacles.broker.broker import Broker
    from spectacles.broker.consumer import Consumer
    from spectacles.broker.settings import BrokerSettings

    async def main() -> None:
        url, group, queue_type, max_interruptions = sys.argv[1:5]
        broker = await Broker.connect(BrokerSettings(url, group), connection_name=group + "-child")

        async def stuck(delivery) -> None:
            # Let the writer flush the ack of a redelivered original (classic queues record the
            # interrupted attempt as publish-copy-then-ack); a kill inside that window would
            # leave both copies, the documented at-least-once duplicate.
            await asyncio.sleep(0.2)
            print("started", delivery.message_id, delivery.attempt, flush=True)
            await asyncio.sleep(3600)

        consumer = Consumer(broker, worker="crash", events=["E"], handler=stuck,
                            queue_type=queue_type, max_interruptions=int(max_interruptions))
        await consumer.start()
        print("ready", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def _read_line(process: asyncio.subprocess.Process, prefix: str) -> str:
    assert process.stdout is not None
    while True:
        raw = await asyncio.wait_for(process.stdout.readline(), 20)
        if not raw:
            pytest.fail(f"child exited before printing {prefix!r}")
        line = raw.decode().strip()
        if line.startswith(prefix):
            return line


async def _kill_while_handling(
    settings: BrokerSettings, queue_type: str, max_interruptions: int, publish_first: bool
) -> str:
    """Run a child consumer, let it take the message, SIGKILL it; return its 'started' line."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _STUCK_CONSUMER,
        settings.amqp_url,
        settings.group,
        queue_type,
        str(max_interruptions),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        await _read_line(process, "ready")
        if publish_first:
            channel_conn = await aio_pika.connect(settings.amqp_url)
            async with channel_conn:
                channel = await channel_conn.channel()
                exchange = await channel.declare_exchange(
                    settings.group, aio_pika.ExchangeType.DIRECT, durable=True
                )
                await exchange.publish(
                    aio_pika.Message(b'{"n":1}', message_id="victim"), routing_key="E"
                )
        return await _read_line(process, "started")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        await asyncio.wait_for(process.wait(), 10)


@pytest.mark.parametrize("queue_type", ["quorum", "classic"])
async def test_message_of_a_killed_consumer_is_redelivered_to_another(
    broker: Broker,
    broker_settings: BrokerSettings,
    raw_channel: AbstractChannel,
    amqp_cleanup,
    queue_type: str,
) -> None:
    queue = broker.topology.worker_queue("crash")
    amqp_cleanup(queue=queue)
    amqp_cleanup(queue=broker.topology.dead_queue("crash"))
    started = await _kill_while_handling(broker_settings, queue_type, 20, publish_first=True)
    assert started == "started victim 1"

    got: list[Delivery] = []

    async def handle(delivery: Delivery) -> None:
        got.append(delivery)

    survivor = Consumer(broker, worker="crash", events=["E"], handler=handle, queue_type=queue_type)  # type: ignore[arg-type]
    await survivor.start()
    await eventually(lambda: len(got) == 1, timeout=15)
    await survivor.stop()
    (delivery,) = got
    assert delivery.message_id == "victim"
    assert delivery.body == b'{"n":1}'
    assert delivery.attempt == 2  # the interrupted try counts
    queue_obj = await raw_channel.declare_queue(queue, passive=True)
    assert queue_obj.declaration_result.message_count == 0


@pytest.mark.parametrize("queue_type", ["quorum", "classic"])
async def test_message_that_keeps_crashing_consumers_is_dead_lettered(
    broker: Broker,
    broker_settings: BrokerSettings,
    raw_channel: AbstractChannel,
    amqp_cleanup,
    queue_type: str,
) -> None:
    amqp_cleanup(queue=broker.topology.worker_queue("crash"))
    amqp_cleanup(queue=broker.topology.dead_queue("crash"))
    # A process death is an interruption: it has its own budget (max_interruptions), since the
    # broker returns every prefetched message with the one that crashed the process.
    first = await _kill_while_handling(broker_settings, queue_type, 2, publish_first=True)
    second = await _kill_while_handling(broker_settings, queue_type, 2, publish_first=False)
    assert (first, second) == ("started victim 1", "started victim 2")

    handled: list[Delivery] = []

    async def handle(delivery: Delivery) -> None:
        handled.append(delivery)

    survivor = Consumer(
        broker,
        worker="crash",
        events=["E"],
        handler=handle,
        queue_type=queue_type,  # type: ignore[arg-type]
        max_interruptions=2,
    )
    await survivor.start()
    dead_queue = await raw_channel.declare_queue(broker.topology.dead_queue("crash"), passive=True)
    dead: list[aio_pika.abc.AbstractIncomingMessage] = []

    async def dead_arrived() -> bool:
        message = await dead_queue.get(fail=False, no_ack=True)
        if message is not None:
            dead.append(message)
        return bool(dead)

    await eventually(dead_arrived, timeout=15)
    await survivor.stop()
    assert handled == []
    assert dead[0].message_id == "victim"
    assert dead[0].headers["x-attempts"] == 2
    assert str(dead[0].headers["x-error"]).startswith("Interrupted:")


async def test_server_side_close_mid_stream_loses_nothing_and_consuming_resumes(
    broker: Broker,
    broker_settings: BrokerSettings,
    unique_name: str,
    raw_channel: AbstractChannel,
    amqp_cleanup,
) -> None:
    seen: set[str] = set()
    outage_done = asyncio.Event()

    async def handle(delivery: Delivery) -> None:
        await asyncio.sleep(0.001)
        if len(seen) >= 30 and not outage_done.is_set():
            # Hold the in-flight handlers until the connection is gone, so the close really
            # happens mid-stream with unacked messages, however slow rabbitmqctl is.
            await outage_done.wait()
        seen.add(delivery.message_id or "")

    consumer = Consumer(broker, worker="outage", events=["E"], handler=handle, prefetch=8)
    amqp_cleanup(queue=consumer.queue_name)
    amqp_cleanup(queue=consumer.dead_queue_name)
    await consumer.start()
    exchange = await raw_channel.declare_exchange(
        broker_settings.group, aio_pika.ExchangeType.DIRECT, durable=True
    )
    for n in range(300):
        await exchange.publish(aio_pika.Message(b"{}", message_id=f"a{n}"), routing_key="E")
    await eventually(lambda: len(seen) >= 30)
    closed = await asyncio.to_thread(close_connections_named, f"{unique_name}-broker")
    assert closed == 1
    assert len(seen) < 300  # the close really happened mid-stream
    outage_done.set()
    await eventually(lambda: broker.reconnects >= 1, timeout=20)
    await consumer.wait_consuming(timeout=20)
    for n in range(50):
        await exchange.publish(aio_pika.Message(b"{}", message_id=f"b{n}"), routing_key="E")
    expected = {f"a{n}" for n in range(300)} | {f"b{n}" for n in range(50)}
    await eventually(lambda: seen >= expected, timeout=30)
    await consumer.stop()
    assert consumer.dead_queue_name
    queue = await raw_channel.declare_queue(consumer.queue_name, passive=True)
    dead = await raw_channel.declare_queue(consumer.dead_queue_name, passive=True)
    assert queue.declaration_result.message_count == 0
    assert dead.declaration_result.message_count == 0


async def test_first_connect_fails_fast_naming_the_host_but_not_the_password() -> None:
    settings = BrokerSettings(amqp_url="amqp://bot:s3cr3t-pw@127.0.0.1:1/", group="g")
    with pytest.raises(BrokerUnavailable) as info:
        await Broker.connect(settings, connect_timeout=2.0)
    assert "127.0.0.1:1" in str(info.value)
    assert "s3cr3t-pw" not in str(info.value)
    assert info.value.host == "127.0.0.1:1"
