"""Conformance of the hand-written AMQP connection against a real RabbitMQ.

Each test makes RabbitMQ (or the network) do one thing a client must handle: close the connection
(320, 403, 530) or a channel (404, 406), block publishing on a resource alarm, go silent, split a
body over frames, cancel a consumer whose queue was deleted, and redeliver what a killed consumer
held. They drive ``PublishConnection`` and ``ConsumeChannel`` directly, below ``Consumer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from spectacles.broker import _publish_connection
from spectacles.broker._consume_channel import ConsumeChannel
from spectacles.broker._frames import encode_content, encode_properties
from spectacles.broker._properties import BasicProperties
from spectacles.broker._publish_connection import (
    AmqpEndpoint,
    ChannelClosed,
    PublishConnection,
)
from spectacles.broker.broker import Broker
from spectacles.broker.consumer import Consumer
from spectacles.broker.delivery import Delivery
from spectacles.broker.errors import BrokerUnavailable, ConnectionLost

from .conftest import close_connections_named, eventually

# Also run against RabbitMQ 4 (scripts/rabbit4.sh); the alarm test starts a RabbitMQ of its own.
pytestmark = pytest.mark.rmq4


class Recorder:
    """A connection listener that remembers what the connection told it."""

    def __init__(self) -> None:
        self.lost = asyncio.Event()
        self.reason = ""
        self.blocked = asyncio.Event()
        self.unblocked = asyncio.Event()

    def connection_ready(self, connection: PublishConnection) -> None:
        pass

    def connection_unready(self, connection: PublishConnection, reason: str) -> None:
        pass

    def connection_lost(self, connection: PublishConnection, reason: str) -> None:
        self.reason = reason
        self.lost.set()

    def confirms_released(self, connection: PublishConnection) -> None:
        pass

    def connection_blocked(self, connection: PublishConnection) -> None:
        self.blocked.set()

    def connection_unblocked(self, connection: PublishConnection) -> None:
        self.unblocked.set()


Received = tuple[int, bool, str, str, BasicProperties, bytes]


class Inbox:
    """Collects deliveries of one ``ConsumeChannel``; ``ack`` settles each on arrival."""

    def __init__(self, *, ack: bool = True) -> None:
        self.items: list[Received] = []
        self._ack = ack

    def __call__(
        self,
        channel: ConsumeChannel,
        tag: int,
        redelivered: bool,
        exchange: str,
        routing_key: str,
        properties: BasicProperties,
        body: bytes,
    ) -> None:
        self.items.append((tag, redelivered, exchange, routing_key, properties, body))
        if self._ack:
            channel.ack(tag)


async def open_lean(
    url: str, name: str, listener: Recorder | None = None, *, heartbeat: int = 30
) -> PublishConnection:
    return await PublishConnection.open(
        AmqpEndpoint(url),
        listener or Recorder(),
        heartbeat=heartbeat,
        timeout=10.0,
        client_properties={"connection_name": name},
    )


@pytest.fixture
async def lean(
    amqp_url: str, unique_name: str
) -> AsyncIterator[tuple[PublishConnection, Recorder]]:
    recorder = Recorder()
    connection = await open_lean(amqp_url, unique_name, recorder)
    try:
        yield connection, recorder
    finally:
        await connection.close(5.0)


async def declare(raw_channel: AbstractChannel, name: str, amqp_cleanup) -> None:  # type: ignore[no-untyped-def]
    amqp_cleanup(queue=name)
    await raw_channel.declare_queue(name, durable=True)


def _with_url(url: str, *, password: str | None = None, vhost: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if password is not None:
        host = netloc.rpartition("@")[2]
        user = (parts.username or "guest").split(":")[0]
        netloc = f"{user}:{password}@{host}"
    path = parts.path if vhost is None else "/" + vhost
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


# -- the server closes the connection --------------------------------------------------------------


async def test_connection_close_320_ends_calls_and_consuming_channels_with_the_reason(
    lean: tuple[PublishConnection, Recorder],
    raw_channel: AbstractChannel,
    amqp_cleanup,
    unique_name: str,
) -> None:
    connection, recorder = lean
    await declare(raw_channel, unique_name, amqp_cleanup)
    channel = await ConsumeChannel.open(connection, Inbox(), prefetch=1)
    await channel.consume(unique_name)

    closed = await asyncio.to_thread(close_connections_named, unique_name)

    assert closed == 1
    await asyncio.wait_for(recorder.lost.wait(), 10)
    assert "320" in recorder.reason and "CONNECTION_FORCED" in recorder.reason
    assert "320" in await asyncio.wait_for(channel.done, 5)
    assert channel.closed and connection.lost
    assert not channel.ack(1)
    with pytest.raises(ConnectionLost, match="320"):
        await ConsumeChannel.open(connection, Inbox(), prefetch=1)


async def test_bad_credentials_403_is_a_clear_error_without_the_password(amqp_url: str) -> None:
    password = f"wrong-{uuid.uuid4().hex}"
    with pytest.raises(BrokerUnavailable) as info:
        await open_lean(_with_url(amqp_url, password=password), "conformance-403")
    assert "403" in str(info.value) and "ACCESS_REFUSED" in str(info.value)
    assert password not in str(info.value)


async def test_unknown_vhost_530_is_a_clear_error(amqp_url: str) -> None:
    vhost = f"no-such-vhost-{uuid.uuid4().hex[:8]}"
    with pytest.raises(BrokerUnavailable) as info:
        await open_lean(_with_url(amqp_url, vhost=vhost), "conformance-530")
    assert "530" in str(info.value) and "NOT_ALLOWED" in str(info.value)


# -- the server closes a channel -------------------------------------------------------------------


async def test_channel_close_404_fails_the_call_and_spares_the_connection(
    lean: tuple[PublishConnection, Recorder],
    raw_channel: AbstractChannel,
    amqp_cleanup,
    unique_name: str,
) -> None:
    connection, _ = lean
    channel = await ConsumeChannel.open(connection, Inbox(), prefetch=1)
    with pytest.raises(ChannelClosed) as info:
        await channel.consume(f"{unique_name}-missing")
    assert info.value.reply_code == 404
    assert "404" in await asyncio.wait_for(channel.done, 5)
    assert channel.closed and not connection.lost

    # the connection, its publish channel and a new consuming channel all still work
    await declare(raw_channel, unique_name, amqp_cleanup)
    inbox = Inbox()
    again = await ConsumeChannel.open(connection, inbox, prefetch=1)
    await again.consume(unique_name)
    flags, properties = encode_properties(None, None, False, "m-404", None, None)
    content = encode_content(1, flags, properties, b"still here", connection.max_body_frame)
    await asyncio.wait_for(connection.publish("", unique_name, False, content), 10)
    await eventually(lambda: len(inbox.items) == 1)
    assert inbox.items[0][5] == b"still here"


async def test_channel_close_406_on_an_unknown_delivery_tag_ends_only_that_channel(
    lean: tuple[PublishConnection, Recorder],
    raw_channel: AbstractChannel,
    amqp_cleanup,
    unique_name: str,
) -> None:
    connection, _ = lean
    await declare(raw_channel, unique_name, amqp_cleanup)
    channel = await ConsumeChannel.open(connection, Inbox(ack=False), prefetch=1)
    await channel.consume(unique_name)

    assert channel.ack(999)  # RabbitMQ answers an ack of a tag it never sent with 406

    reason = await asyncio.wait_for(channel.done, 10)
    assert "406" in reason and "PRECONDITION_FAILED" in reason
    assert channel.closed and not channel.ack(1)
    assert not connection.lost
    other = await ConsumeChannel.open(connection, Inbox(), prefetch=1)
    await other.close()


# -- resource alarms -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def throwaway_rabbit() -> Iterator[tuple[str, list[str]]]:
    """A RabbitMQ of its own: an alarm on the shared one would block every other client."""
    if (
        shutil.which("docker") is None
        or subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode
    ):
        pytest.skip("needs a Docker engine for a throw-away RabbitMQ (eval scripts' docker setup)")
    image = os.environ.get("RABBITMQ_IMAGE", "local/rabbitmq:4.0")
    prefix = os.environ.get("TEST_CONTAINER_PREFIX", "spectacles-test")
    name = f"{prefix}-alarm-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:5672", image],
        check=True,
        capture_output=True,
        timeout=120,
    )
    ctl = ["docker", "exec", name, "rabbitmqctl", "-q"]
    try:
        for _ in range(90):
            ready = subprocess.run(
                [*ctl, "await_startup", "--timeout", "5"], capture_output=True, timeout=30
            )
            if ready.returncode == 0:
                break
        else:
            pytest.fail(f"throw-away RabbitMQ {name} did not start")
        yield f"amqp://guest:guest@127.0.0.1:{port}/", ctl
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)


async def test_connection_blocked_and_unblocked_on_a_memory_alarm(
    throwaway_rabbit: tuple[str, list[str]],
) -> None:
    url, ctl = throwaway_rabbit
    recorder = Recorder()
    connection = await open_lean(url, "conformance-blocked", recorder)
    try:
        await asyncio.to_thread(
            subprocess.run, [*ctl, "set_vm_memory_high_watermark", "0.0000001"], check=True
        )
        flags, properties = encode_properties(None, None, False, None, None, None)
        content = encode_content(1, flags, properties, b"x", connection.max_body_frame)
        confirm = connection.publish("", "nowhere", False, content)
        await asyncio.wait_for(recorder.blocked.wait(), 30)
        assert connection.blocked and connection.blocked_reason
        assert not confirm.done()  # RabbitMQ holds the publish while the alarm lasts

        await asyncio.to_thread(
            subprocess.run, [*ctl, "set_vm_memory_high_watermark", "0.6"], check=True
        )
        await asyncio.wait_for(recorder.unblocked.wait(), 30)
        assert not connection.blocked
        await asyncio.wait_for(confirm, 10)  # and lets it through afterwards
    finally:
        await connection.close(5.0)


# -- silence ---------------------------------------------------------------------------------------


class Proxy:
    """A TCP relay to RabbitMQ that can go silent: it keeps both sockets open, forwards nothing."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.silent = False
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if not self.silent:
                writer.write(data)
        if not self.silent:  # a silent link does not even pass on a close
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_missed_heartbeats_drop_a_silent_connection(amqp_url: str) -> None:
    parts = urlsplit(amqp_url)
    proxy = Proxy(parts.hostname or "localhost", parts.port or 5672)
    await proxy.start()
    recorder = Recorder()
    via_proxy = urlunsplit(
        (
            parts.scheme,
            f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}",
            parts.path,
            "",
            "",
        )
    )
    connection = await open_lean(via_proxy, "conformance-heartbeat", recorder, heartbeat=1)
    try:
        await asyncio.sleep(1.5)
        assert not connection.lost  # heartbeats keep an idle connection alive
        proxy.silent = True
        await asyncio.wait_for(recorder.lost.wait(), 10)
        assert "heartbeat" in recorder.reason
        assert connection.lost
    finally:
        connection.abort()
        await proxy.close()


# -- frames ----------------------------------------------------------------------------------------


async def test_frame_max_4096_splits_and_joins_a_body_of_three_frames(
    amqp_url: str,
    raw_channel: AbstractChannel,
    amqp_cleanup,
    unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_publish_connection, "_MAX_FRAME", 4096)  # what the client offers
    connection = await open_lean(amqp_url, unique_name)
    try:
        assert connection.frame_max == 4096
        await declare(raw_channel, unique_name, amqp_cleanup)
        inbox = Inbox()
        channel = await ConsumeChannel.open(connection, inbox, prefetch=4)
        await channel.consume(unique_name)
        big = bytes(range(256)) * 46 + b"end"  # 11,779 bytes: 3 body frames of <= 4,088
        for n, body in enumerate((big, b"small", big[::-1])):
            flags, properties = encode_properties(
                "application/octet-stream", {"n": n}, False, f"m{n}", None, None
            )
            content = encode_content(1, flags, properties, body, connection.max_body_frame)
            assert content.count(b"\x03\x00\x01") >= (3 if len(body) > 8000 else 1)
            await asyncio.wait_for(connection.publish("", unique_name, False, content), 10)
        await eventually(lambda: len(inbox.items) == 3)
        assert [item[5] for item in inbox.items] == [big, b"small", big[::-1]]
        assert [item[4].headers for item in inbox.items] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert [item[4].message_id for item in inbox.items] == ["m0", "m1", "m2"]
    finally:
        await connection.close(5.0)


# -- consumer cancel notification ------------------------------------------------------------------


async def test_queue_deleted_cancels_the_consumer_and_consumer_subscribes_again(
    lean: tuple[PublishConnection, Recorder],
    broker: Broker,
    raw_channel: AbstractChannel,
    amqp_cleanup,
    unique_name: str,
) -> None:
    connection, _ = lean
    await declare(raw_channel, unique_name, amqp_cleanup)
    channel = await ConsumeChannel.open(connection, Inbox(), prefetch=1)
    await channel.consume(unique_name)
    await raw_channel.queue_delete(unique_name)
    assert "cancelled by RabbitMQ" in await asyncio.wait_for(channel.done, 10)
    assert not connection.lost

    # Consumer reacts by declaring its queue again and consuming on a new channel
    handled: list[str] = []

    async def handle(delivery: Delivery) -> None:
        handled.append(delivery.message_id or "")

    consumer = Consumer(broker, worker="cancelled", events=["E"], handler=handle, prefetch=2)
    amqp_cleanup(queue=consumer.queue_name)
    amqp_cleanup(queue=consumer.dead_queue_name)
    await consumer.start()
    try:
        before = consumer._subscription
        await raw_channel.queue_delete(consumer.queue_name)
        await eventually(
            lambda: consumer._subscription not in (None, before) and consumer.is_consuming,
            timeout=30,
        )
        exchange = await raw_channel.get_exchange(broker.topology.events_exchange)
        await exchange.publish(aio_pika.Message(b"{}", message_id="after"), routing_key="E")
        await eventually(lambda: handled == ["after"], timeout=30)
    finally:
        await consumer.stop()


# -- redelivery after a consumer dies --------------------------------------------------------------

_HOLDING_CONSUMER = textwrap.dedent(
    """
    import asyncio, sys
    from spectacles.broker._consume_channel import ConsumeChannel
    from spectacles.broker._publish_connection import AmqpEndpoint, PublishConnection

    class Quiet:
        def __getattr__(self, name):
            return lambda *args: None

    async def main() -> None:
        url, queue = sys.argv[1:3]
        connection = await PublishConnection.open(
            AmqpEndpoint(url), Quiet(), heartbeat=30, timeout=10,
            client_properties={"connection_name": queue + "-child"},
        )

        def hold(channel, tag, redelivered, exchange, routing_key, properties, body):
            print("holding", tag, redelivered, body.decode(), flush=True)  # never acked

        channel = await ConsumeChannel.open(connection, hold, prefetch=1)
        await channel.consume(queue)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_a_message_held_by_a_killed_consumer_is_redelivered_marked_redelivered(
    amqp_url: str,
    lean: tuple[PublishConnection, Recorder],
    raw_channel: AbstractChannel,
    amqp_cleanup,
    unique_name: str,
) -> None:
    connection, _ = lean
    await declare(raw_channel, unique_name, amqp_cleanup)
    await raw_channel.default_exchange.publish(
        aio_pika.Message(b"precious", message_id="p1"), routing_key=unique_name
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _HOLDING_CONSUMER,
        amqp_url,
        unique_name,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        assert line.decode().split() == ["holding", "1", "False", "precious"]
        child.send_signal(signal.SIGKILL)  # mid-handler: no ack, no close
        await child.wait()
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.kill()

    inbox = Inbox()
    channel = await ConsumeChannel.open(connection, inbox, prefetch=1)
    await channel.consume(unique_name)
    await eventually(lambda: len(inbox.items) == 1, timeout=15)
    _, redelivered, exchange, routing_key, properties, body = inbox.items[0]
    assert (redelivered, exchange, routing_key, body) == (True, "", unique_name, b"precious")
    assert properties.message_id == "p1"


async def test_consumers_heal_a_drop_of_their_shared_connection_alone(
    broker: Broker, raw_channel: AbstractChannel, amqp_cleanup
) -> None:
    handled: list[str] = []

    async def handle(delivery: Delivery) -> None:
        handled.append(delivery.message_id or "")

    consumer = Consumer(broker, worker="own", events=["E"], handler=handle, prefetch=4)
    other = Consumer(broker, worker="other", events=["E"], handler=handle, prefetch=4)
    for each in (consumer, other):
        amqp_cleanup(queue=each.queue_name)
        amqp_cleanup(queue=each.dead_queue_name)
        await each.start()
    try:
        before = consumer._subscription
        # the consumer's lean connection, not the broker's (which stays up)
        closed = await asyncio.to_thread(
            close_connections_named, f"consumer@{broker.connection_name}"
        )
        assert closed == 1  # both consumers share it
        await eventually(
            lambda: consumer._subscription not in (None, before) and consumer.is_consuming,
            timeout=30,
        )
        assert broker.reconnects == 0
        exchange = await raw_channel.get_exchange(broker.topology.events_exchange)
        await exchange.publish(aio_pika.Message(b"{}", message_id="healed"), routing_key="E")
        await eventually(lambda: handled == ["healed", "healed"], timeout=30)
    finally:
        await consumer.stop()
        await other.stop()
