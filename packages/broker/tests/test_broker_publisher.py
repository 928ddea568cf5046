"""Publisher against a real RabbitMQ: confirms, window, nack/return, big bodies, outages."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import shlex
import subprocess
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from spectacles.broker.errors import (
    BrokerUnavailable,
    ConnectionLost,
    PublishError,
    PublishNacked,
    PublishReturned,
    TopologyMismatch,
)
from spectacles.broker.publisher import Publisher
from spectacles.broker.settings import BrokerSettings

pytestmark = pytest.mark.timeout(60)

#: How to run rabbitmqctl; e.g. RABBITMQCTL="docker compose exec -T rabbit rabbitmqctl" when the
#: broker under test runs in a container.
RABBITMQCTL = shlex.split(os.environ.get("RABBITMQCTL", "rabbitmqctl"))


@pytest.fixture
async def channel(amqp_url: str) -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        yield await connection.channel()


@pytest.fixture
async def settings(amqp_url: str, unique_name: str) -> BrokerSettings:
    return BrokerSettings(amqp_url=amqp_url, group=unique_name)


@pytest.fixture
async def publisher(settings: BrokerSettings, unique_name: str) -> AsyncIterator[Publisher]:
    publisher = await Publisher.connect(settings, connection_name=unique_name, reconnect_delay=0.05)
    await publisher.declare_events_exchange()
    try:
        yield publisher
    finally:
        await publisher.close()


@pytest.fixture
async def queue(
    channel: AbstractChannel, publisher: Publisher, unique_name: str
) -> AsyncIterator[AbstractQueue]:
    """A queue bound to the test's events exchange for routing key ``EVENT``."""
    queue = await channel.declare_queue(f"{unique_name}.q", auto_delete=False)
    await queue.bind(unique_name, "EVENT")
    try:
        yield queue
    finally:
        await queue.delete(if_unused=False, if_empty=False)
        await channel.exchange_delete(unique_name)


async def drain(queue: AbstractQueue, expected: int, timeout: float = 10.0) -> list[bytes]:
    """Consume message bodies until ``expected`` arrived and the queue went quiet, or timeout."""
    bodies: list[bytes] = []
    arrived = asyncio.Event()

    async def on_message(message: AbstractIncomingMessage) -> None:
        bodies.append(message.body)
        if len(bodies) >= expected:
            arrived.set()

    tag = await queue.consume(on_message, no_ack=True)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(arrived.wait(), timeout)
        await asyncio.sleep(0.1)  # anything beyond ``expected`` would show up by now
    finally:
        await queue.cancel(tag)
    return bodies


async def test_publish_is_confirmed_and_arrives_with_every_property(
    publisher: Publisher, queue: AbstractQueue
) -> None:
    sent_at = datetime.datetime(2026, 11, 29, 12, 0, 5, tzinfo=datetime.UTC)
    await publisher.publish(
        "EVENT",
        b'{"id":"1"}',
        headers={"shard_id": 3, "seq": 41, "guild_id": "175928847299117063", "big": 2**40},
        message_id="3:abc:41",
        type="MESSAGE_CREATE",
        timestamp=sent_at,
    )
    assert publisher.in_flight == 0
    message = await queue.get(timeout=5, no_ack=True)
    assert message.body == b'{"id":"1"}'
    assert message.routing_key == "EVENT"
    assert message.exchange == queue.name.removesuffix(".q")
    assert message.headers == {
        "shard_id": 3,
        "seq": 41,
        "guild_id": "175928847299117063",
        "big": 2**40,
    }
    assert message.message_id == "3:abc:41"
    assert message.type == "MESSAGE_CREATE"
    assert message.timestamp == sent_at
    assert message.content_type == "application/json"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT


async def test_prepared_publishes_arrive_like_submitted_ones(
    publisher: Publisher, queue: AbstractQueue
) -> None:
    # The relay's path: constant parts encoded once, per-message headers appended after them.
    stream = publisher.prepare("EVENT", headers={"shard_id": 3}, type="MESSAGE_CREATE")
    returned = publisher.prepare("NOBODY", mandatory=True)
    sent_at = datetime.datetime(2026, 11, 29, 12, 0, 5, tzinfo=datetime.UTC)
    first = await publisher.submit_prepared(
        stream,
        b'{"id":"1"}',
        headers={"seq": 41, "guild_id": "175928847299117063"},
        message_id="3:abc:41",
        timestamp=sent_at,
    )
    second = await publisher.submit_prepared(stream, b'{"id":"2"}', headers={"seq": 42})
    lost = await publisher.submit_prepared(returned, b"lost")
    await asyncio.gather(first, second)
    with pytest.raises(PublishReturned):
        await lost
    one = await queue.get(timeout=5, no_ack=True)
    two = await queue.get(timeout=5, no_ack=True)
    assert (one.body, one.routing_key, one.type) == (b'{"id":"1"}', "EVENT", "MESSAGE_CREATE")
    assert one.headers == {"shard_id": 3, "seq": 41, "guild_id": "175928847299117063"}
    assert (one.message_id, one.timestamp) == ("3:abc:41", sent_at)
    assert one.content_type == "application/json"
    assert one.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert two.headers == {"shard_id": 3, "seq": 42}
    assert two.message_id is None and two.timestamp is None


async def test_transient_publish_without_optional_properties(
    publisher: Publisher, queue: AbstractQueue
) -> None:
    await publisher.publish("EVENT", b"", content_type=None, persistent=False)
    message = await queue.get(timeout=5, no_ack=True)
    assert message.body == b""
    assert message.content_type is None
    assert message.message_id is None
    assert message.headers == {}
    assert message.delivery_mode == aio_pika.DeliveryMode.NOT_PERSISTENT


async def test_submit_never_exceeds_the_window(
    settings: BrokerSettings, queue: AbstractQueue, unique_name: str
) -> None:
    async with await Publisher.connect(settings, max_in_flight=8) as publisher:
        futures = []
        peak = 0
        for index in range(500):
            futures.append(await publisher.submit("EVENT", b"%d" % index))
            peak = max(peak, publisher.in_flight)
            assert publisher.in_flight <= 8
        await asyncio.gather(*futures)
        assert peak == 8  # the window filled up, so submit really waited for confirms
        assert publisher.in_flight == 0
    bodies = await drain(queue, 500)
    assert sorted(bodies) == sorted(b"%d" % index for index in range(500))


class Outcomes:
    """A ConfirmListener recording what the publisher told it."""

    def __init__(self) -> None:
        self.confirmed: list[int] = []
        self.failed: dict[int, BaseException] = {}
        self.changed = asyncio.Event()

    def publish_confirmed(self, token: int) -> None:
        self.confirmed.append(token)
        self.changed.set()

    def publish_failed(self, token: int, error: BaseException) -> None:
        self.failed[token] = error
        self.changed.set()

    async def wait_settled(self, count: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.confirmed) + len(self.failed) < count:
                self.changed.clear()
                await self.changed.wait()


async def test_tracked_submits_tell_the_listener_and_respect_the_window(
    settings: BrokerSettings, queue: AbstractQueue
) -> None:
    outcomes = Outcomes()
    async with await Publisher.connect(settings, max_in_flight=8) as publisher:
        stream = publisher.prepare("EVENT", headers={"shard_id": 0})
        refused = peak = 0
        for token in range(300):
            body = b"%d" % token
            if not publisher.try_submit_tracked(
                stream, body, outcomes, token, headers={"seq": token}
            ):
                refused += 1
                assert publisher.in_flight == 8  # refused only because the window is full
                await publisher.submit_tracked(
                    stream, body, outcomes, token, headers={"seq": token}
                )
            peak = max(peak, publisher.in_flight)
            assert publisher.in_flight <= 8
        await outcomes.wait_settled(300)
        assert refused > 0 and peak == 8
        assert sorted(outcomes.confirmed) == list(range(300)) and not outcomes.failed
        assert publisher.in_flight == 0
    bodies = await drain(queue, 300)
    assert sorted(bodies) == sorted(b"%d" % token for token in range(300))


async def test_tracked_submit_refused_by_rabbitmq_is_told_as_failed(
    publisher: Publisher, channel: AbstractChannel, unique_name: str
) -> None:
    full = await channel.declare_queue(
        f"{unique_name}.full",
        arguments={"x-max-length": 1, "x-overflow": "reject-publish"},
    )
    outcomes = Outcomes()
    try:
        await full.bind(unique_name, "EVENT")
        stream = publisher.prepare("EVENT")
        unroutable = publisher.prepare("NOBODY", mandatory=True)
        assert publisher.try_submit_tracked(stream, b"fits", outcomes, 1)
        assert publisher.try_submit_tracked(stream, b"overflows", outcomes, 2)
        assert publisher.try_submit_tracked(unroutable, b"lost", outcomes, 3)
        await outcomes.wait_settled(3)
        assert outcomes.confirmed == [1]
        assert isinstance(outcomes.failed[2], PublishNacked)
        assert isinstance(outcomes.failed[3], PublishReturned)
        assert outcomes.failed[3].routing_key == "NOBODY"  # type: ignore[attr-defined]
        assert publisher.in_flight == 0
    finally:
        await full.delete(if_unused=False, if_empty=False)
        await channel.exchange_delete(unique_name)


async def test_concurrent_publishers_share_the_window(
    settings: BrokerSettings, queue: AbstractQueue
) -> None:
    async with await Publisher.connect(settings, max_in_flight=4) as publisher:
        peak = 0

        async def one(index: int) -> None:
            nonlocal peak
            await publisher.publish("EVENT", b"%d" % index)
            peak = max(peak, publisher.in_flight)

        await asyncio.gather(*(one(index) for index in range(200)))
        assert peak <= 4
    assert len(await drain(queue, 200)) == 200


async def test_mandatory_unroutable_publish_raises_returned(
    publisher: Publisher, queue: AbstractQueue
) -> None:
    routable = await publisher.submit("EVENT", b"kept", mandatory=True)
    unroutable = await publisher.submit("NOBODY", b"lost", mandatory=True)
    also_routable = await publisher.submit("EVENT", b"kept too", mandatory=True)
    await routable
    with pytest.raises(PublishReturned) as caught:
        await unroutable
    await also_routable
    assert caught.value.routing_key == "NOBODY"
    assert caught.value.exchange == queue.name.removesuffix(".q")
    assert caught.value.reply_code == 312
    assert publisher.in_flight == 0
    # Without mandatory, RabbitMQ confirms an unroutable publish (it is simply dropped).
    await publisher.publish("NOBODY", b"dropped")
    assert sorted(await drain(queue, 2)) == [b"kept", b"kept too"]


async def test_nack_raises_publish_nacked(
    publisher: Publisher, channel: AbstractChannel, unique_name: str
) -> None:
    full = await channel.declare_queue(
        f"{unique_name}.full",
        arguments={"x-max-length": 1, "x-overflow": "reject-publish"},
    )
    try:
        await full.bind(unique_name, "EVENT")
        await publisher.publish("EVENT", b"fits")
        with pytest.raises(PublishNacked) as caught:
            await publisher.publish("EVENT", b"overflows")
        assert caught.value.routing_key == "EVENT"
        assert publisher.in_flight == 0
    finally:
        await full.delete(if_unused=False, if_empty=False)
        await channel.exchange_delete(unique_name)


async def test_bodies_larger_than_frame_max_arrive_intact(
    publisher: Publisher, queue: AbstractQueue
) -> None:
    big = bytes(range(256)) * 1200  # 300 KB, more than two 128 KB frames
    exact = b"e" * (131072 - 8)  # exactly one full body frame
    await asyncio.gather(
        publisher.publish("EVENT", big), publisher.publish("EVENT", exact, message_id="exact")
    )
    bodies = await drain(queue, 2)
    assert sorted(bodies, key=len) == [exact, big]


async def test_unknown_exchange_fails_the_publish_and_the_channel_recovers(
    publisher: Publisher, queue: AbstractQueue, unique_name: str
) -> None:
    with pytest.raises(PublishError, match="404"):
        await publisher.publish("EVENT", b"nowhere", exchange=f"{unique_name}.missing")
    await publisher.publish("EVENT", b"after")
    assert await drain(queue, 1) == [b"after"]


async def test_declaring_an_exchange_that_exists_differently_is_a_topology_mismatch(
    settings: BrokerSettings, channel: AbstractChannel, unique_name: str
) -> None:
    await channel.declare_exchange(unique_name, aio_pika.ExchangeType.FANOUT, durable=False)
    try:
        async with await Publisher.connect(settings) as publisher:
            with pytest.raises(TopologyMismatch, match=unique_name):
                await publisher.declare_events_exchange()
            await publisher.publish("EVENT", b"still publishing")  # the channel was unaffected
    finally:
        await channel.exchange_delete(unique_name)


@pytest.mark.rmq4
async def test_close_waits_for_in_flight_confirms(
    settings: BrokerSettings, queue: AbstractQueue
) -> None:
    publisher = await Publisher.connect(settings)
    futures = [await publisher.submit("EVENT", b"x" * 1024) for _ in range(300)]
    await publisher.close()
    await asyncio.gather(*futures)  # all confirmed, none failed by the close
    assert len(await drain(queue, 300)) == 300
    with pytest.raises(BrokerUnavailable, match="closed"):
        await publisher.publish("EVENT", b"late")


def _close_connection_named(name: str) -> None:
    listing = subprocess.run(
        [*RABBITMQCTL, "-q", "list_connections", "pid", "client_properties"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    pids = [line.split("\t")[0] for line in listing.splitlines() if f'"{name}"' in line]
    assert len(pids) == 1, listing
    subprocess.run(
        [*RABBITMQCTL, "-q", "close_connection", pids[0], "test"],
        capture_output=True,
        timeout=30,
        check=True,
    )


@pytest.mark.rmq4
# The stream runs until rabbitmqctl has closed the connection; `docker exec rabbitmqctl` (the
# RabbitMQ 4 run) takes seconds on a loaded machine, so the backlog to drain grows with it.
@pytest.mark.timeout(180)
async def test_server_side_close_mid_stream_loses_nothing_confirmed(
    publisher: Publisher, queue: AbstractQueue, unique_name: str
) -> None:
    confirmed: list[bytes] = []
    lost = submitted = 0
    stop = asyncio.Event()

    async def track(body: bytes, future: asyncio.Future[None]) -> None:
        nonlocal lost
        try:
            await future
        except ConnectionLost:
            lost += 1
        else:
            confirmed.append(body)

    async def stream() -> None:
        nonlocal submitted
        index = 0
        trackers = []
        while not stop.is_set():
            body = b"%d" % index
            index += 1
            try:
                future = await publisher.submit("EVENT", body)
            except BrokerUnavailable:
                continue
            submitted += 1
            trackers.append(asyncio.create_task(track(body, future)))
            if index % 20 == 0:
                await asyncio.sleep(0.001)
        await asyncio.gather(*trackers)

    streaming = asyncio.create_task(stream())
    await asyncio.sleep(0.3)
    await asyncio.to_thread(_close_connection_named, unique_name)
    await publisher.wait_connected(10)
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(streaming, 20)
    assert len(confirmed) + lost == submitted  # every submit ended confirmed or ConnectionLost

    assert publisher.is_connected
    await publisher.publish("EVENT", b"after-reconnect")
    confirmed.append(b"after-reconnect")
    received = set(await drain(queue, len(confirmed)))
    assert set(confirmed) <= received  # every publish that returned successfully arrived
    assert len(confirmed) > 1


class _Proxy:
    """A TCP relay to RabbitMQ that the test can cut and restore (a real network outage)."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._replies_flowing = asyncio.Event()
        self._replies_flowing.set()
        self.port = 0

    def hold_replies(self) -> None:
        """Stop relaying RabbitMQ's bytes to the client (so confirms stay outstanding)."""
        self._replies_flowing.clear()

    def release_replies(self) -> None:
        self._replies_flowing.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._replies_flowing.set()
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        self._writers += [writer, up_writer]

        async def pipe(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, gate: asyncio.Event | None
        ) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    if gate is not None:
                        await gate.wait()
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(
            pipe(reader, up_writer, None), pipe(up_reader, writer, self._replies_flowing)
        )


def _via(proxy: _Proxy, amqp_url: str) -> str:
    parts = urlsplit(amqp_url)
    return amqp_url.replace(
        parts.netloc, f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"
    )


@pytest.fixture
async def proxy(amqp_url: str) -> AsyncIterator[_Proxy]:
    proxy = _Proxy(urlsplit(amqp_url).port or 5672)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.cut()


@pytest.mark.rmq4
async def test_dropped_connection_fails_in_flight_with_connection_lost_then_reconnects(
    amqp_url: str, unique_name: str, channel: AbstractChannel, proxy: _Proxy
) -> None:
    settings = BrokerSettings(amqp_url=_via(proxy, amqp_url), group=unique_name)
    publisher = await Publisher.connect(settings, reconnect_delay=0.05)
    try:
        await publisher.declare_events_exchange()
        queue = await channel.declare_queue(f"{unique_name}.q")
        await queue.bind(unique_name, "EVENT")

        proxy.hold_replies()
        futures = [await publisher.submit("EVENT", b"%d" % index) for index in range(10)]
        outcomes = Outcomes()
        stream = publisher.prepare("EVENT")
        for token in range(5):
            assert publisher.try_submit_tracked(stream, b"tracked", outcomes, token)
        await asyncio.sleep(0.2)
        assert publisher.in_flight == 15
        assert not any(future.done() for future in futures) and not outcomes.failed

        await proxy.cut()
        for future in futures:
            with pytest.raises(ConnectionLost):
                await asyncio.wait_for(future, 5)
        await outcomes.wait_settled(5)
        assert not outcomes.confirmed
        assert all(isinstance(error, ConnectionLost) for error in outcomes.failed.values())
        assert publisher.in_flight == 0

        await proxy.start()
        await publisher.wait_connected(5)
        await publisher.publish("EVENT", b"after")
        # The dropped fifteen reached RabbitMQ but were never confirmed: "not sent" for the caller,
        # who republishes; consumers de-duplicate by message_id. What matters: "after" arrived.
        assert b"after" in await drain(queue, 16)
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await publisher.close()
        await channel.exchange_delete(unique_name)


@pytest.mark.rmq4
async def test_outage_waits_then_raises_and_recovers_after(
    amqp_url: str, unique_name: str, channel: AbstractChannel, proxy: _Proxy
) -> None:
    settings = BrokerSettings(amqp_url=_via(proxy, amqp_url), group=unique_name)
    publisher = await Publisher.connect(
        settings, publish_timeout=1.0, reconnect_delay=0.05, max_reconnect_delay=0.2
    )
    try:
        await publisher.declare_events_exchange()
        queue = await channel.declare_queue(f"{unique_name}.q")
        await queue.bind(unique_name, "EVENT")
        await publisher.publish("EVENT", b"before")

        await proxy.cut()
        await asyncio.sleep(0.1)
        assert not publisher.is_connected
        with pytest.raises(BrokerUnavailable, match="still unreachable"):
            await publisher.wait_connected(0.1)
        with pytest.raises(BrokerUnavailable, match="publish not sent"):
            await publisher.publish("EVENT", b"during, too long")

        # A publish issued during the outage waits for the reconnection and then goes out.
        waiting = asyncio.create_task(publisher.publish("EVENT", b"during, waited"))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await proxy.start()
        await asyncio.wait_for(waiting, 5)
        assert publisher.is_connected
        await publisher.publish("EVENT", b"after")
        assert await drain(queue, 3) == [b"before", b"during, waited", b"after"]
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await publisher.close()
        await channel.exchange_delete(unique_name)


async def test_unreachable_broker_fails_connect_fast(unique_name: str) -> None:
    settings = BrokerSettings(amqp_url="amqp://guest:secret@127.0.0.1:1/", group=unique_name)
    with pytest.raises(BrokerUnavailable) as caught:
        await Publisher.connect(settings, connect_timeout=2)
    assert caught.value.host == "127.0.0.1:1"
    assert "secret" not in str(caught.value)


async def test_wrong_credentials_fail_connect_with_the_reason(
    amqp_url: str, unique_name: str
) -> None:
    parts = urlsplit(amqp_url)
    bad = amqp_url.replace(parts.netloc, f"nobody:wrong@{parts.hostname}:{parts.port or 5672}")
    with pytest.raises(BrokerUnavailable, match="403 ACCESS_REFUSED"):
        await Publisher.connect(BrokerSettings(amqp_url=bad, group=unique_name))


async def test_heartbeats_keep_an_idle_connection_open(
    settings: BrokerSettings, queue: AbstractQueue
) -> None:
    # RabbitMQ closes a connection that stays silent for two heartbeat intervals.
    async with await Publisher.connect(settings, heartbeat=1) as publisher:
        for _ in range(35):
            await asyncio.sleep(0.1)
            assert publisher.is_connected
        await publisher.publish("EVENT", b"still here")
    assert await drain(queue, 1) == [b"still here"]


async def test_silent_broker_is_detected_by_missed_heartbeats(
    amqp_url: str, unique_name: str, proxy: _Proxy
) -> None:
    settings = BrokerSettings(amqp_url=_via(proxy, amqp_url), group=unique_name)
    publisher = await Publisher.connect(settings, heartbeat=1, reconnect_delay=0.05)
    try:
        proxy.hold_replies()  # the socket stays open but nothing comes back: a half-dead peer
        future = await publisher.submit("NOWHERE", b"x", exchange="")
        with pytest.raises(ConnectionLost, match="heartbeat"):
            await asyncio.wait_for(future, 5)
        proxy.release_replies()
        await publisher.wait_connected(5)
        await publisher.publish("NOWHERE", b"y", exchange="")
    finally:
        await publisher.close()


def test_works_on_uvloop(amqp_url: str, unique_name: str) -> None:
    """The gateway runs on uvloop, whose transports are not asyncio.Transport subclasses."""
    import uvloop

    async def scenario() -> list[bytes]:
        settings = BrokerSettings(amqp_url=amqp_url, group=unique_name)
        connection = await aio_pika.connect(amqp_url)
        async with connection, await Publisher.connect(settings, max_in_flight=16) as publisher:
            await publisher.declare_events_exchange()
            channel = await connection.channel()
            queue = await channel.declare_queue(f"{unique_name}.q", exclusive=True)
            await queue.bind(unique_name, "EVENT")
            futures = [await publisher.submit("EVENT", b"%d" % index) for index in range(100)]
            await asyncio.gather(*futures)
            bodies = await drain(queue, 100)
            await channel.exchange_delete(unique_name)
            return bodies

    assert sorted(uvloop.run(scenario())) == sorted(b"%d" % index for index in range(100))


@pytest.mark.parametrize(
    ("option", "value"),
    [("max_in_flight", 0), ("publish_timeout", 0.0), ("connect_timeout", -1.0)],
)
async def test_bad_options_are_rejected_before_connecting(
    unique_name: str, option: str, value: float
) -> None:
    settings = BrokerSettings(amqp_url="amqp://guest:guest@127.0.0.1:1/", group=unique_name)
    with pytest.raises(ValueError, match=option):
        await Publisher.connect(settings, **{option: value})  # type: ignore[arg-type]
