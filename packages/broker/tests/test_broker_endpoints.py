"""Several AMQP URLs (a cluster's nodes): every client connects to a live one and fails over.

"Nodes" here are TCP relays to the one RabbitMQ under test, so cutting a relay is a node loss as a
client sees it (its connection drops, the address stops answering); a closed local port is a node
that is down. The three-node cluster itself is exercised by ``make e2e-cluster``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from spectacles.broker._endpoints import AmqpEndpoints, address_of, connect_first
from spectacles.broker.broker import Broker
from spectacles.broker.errors import BrokerUnavailable, ConnectionLost
from spectacles.broker.publisher import Publisher
from spectacles.broker.settings import AmqpUrlError, BrokerSettings
from spectacles.models import MessageCreate
from spectacles.worker import Context, Worker, WorkerConfigError, WorkerSettings

from .conftest import eventually
from .test_broker_publisher import _Proxy, _via

pytestmark = [pytest.mark.rmq4, pytest.mark.timeout(90)]

MESSAGE = (
    b'{"id":"1","channel_id":"2","guild_id":"3","author":{"id":"4","username":"a"},'
    b'"content":"hi","timestamp":"2024-05-01T12:00:00+00:00"}'
)


@pytest.fixture
def dead_url(amqp_url: str) -> str:
    """An AMQP URL on a local port nothing listens on: a node that is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"amqp://guest:secret-dead-pw@127.0.0.1:{port}/"


@contextlib.asynccontextmanager
async def _node(amqp_url: str) -> AsyncIterator[_Proxy]:
    proxy = _Proxy(int(address_of(amqp_url).rsplit(":", 1)[1]))
    await proxy.start()
    try:
        yield proxy
    finally:
        with contextlib.suppress(Exception):
            await proxy.cut()


@pytest.fixture
async def node_a(amqp_url: str) -> AsyncIterator[_Proxy]:
    async with _node(amqp_url) as proxy:
        yield proxy


@pytest.fixture
async def node_b(amqp_url: str) -> AsyncIterator[_Proxy]:
    async with _node(amqp_url) as proxy:
        yield proxy


@pytest.fixture
async def channel(amqp_url: str) -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        yield await connection.channel()


# -- choosing a node --------------------------------------------------------------------------


def test_in_order_keeps_the_list_and_shuffle_varies_it() -> None:
    urls = [f"amqp://h{i}:5672/" for i in range(3)]
    in_order = AmqpEndpoints.parse(",".join(urls), "in-order")
    assert all(in_order.attempt_order() == urls for _ in range(50))
    shuffled = AmqpEndpoints.parse(urls)
    firsts = Counter(shuffled.attempt_order()[0] for _ in range(300))
    assert set(firsts) == set(urls)  # each node leads sometimes: clients spread over the nodes
    assert min(firsts.values()) > 50
    assert sorted(shuffled.attempt_order()) == sorted(urls)


def test_the_node_just_lost_is_tried_last() -> None:
    urls = [f"amqp://h{i}:5672/" for i in range(3)]
    for order in ("in-order", "shuffle"):
        endpoints = AmqpEndpoints.parse(urls, order)
        assert all(endpoints.attempt_order(last_lost=urls[0])[-1] == urls[0] for _ in range(30))


def test_bad_url_in_the_list_names_the_key_and_position_without_the_password() -> None:
    good = "amqp://u:hunter2-secret@h1:5672/"
    with pytest.raises(AmqpUrlError) as caught:
        BrokerSettings.from_env({"AMQP_URL": f"{good},http://u:hunter2-secret@h2/"})
    text = str(caught.value)
    assert text.startswith("AMQP_URL ") and "URL 2 of 2" in text
    assert "hunter2-secret" not in text and "u:***@h2" in text
    for bad, where in ((f"{good},", "URL 2 of 2"), (f"{good},amqp://h:notaport/", "URL 2 of 2")):
        with pytest.raises(AmqpUrlError, match=where):
            BrokerSettings(amqp_url=bad)
    with pytest.raises(AmqpUrlError, match="AMQP_URL_ORDER"):
        BrokerSettings.from_env({"AMQP_URL": good, "AMQP_URL_ORDER": "random"})


def test_worker_settings_name_the_key_of_a_bad_url_or_order() -> None:
    base = {"DISCORD_TOKEN": "t", "AMQP_URL": "amqp://h1/,amqp://h2:99999/"}
    with pytest.raises(WorkerConfigError) as caught:
        WorkerSettings.from_env(base)
    assert caught.value.key == "AMQP_URL" and "URL 2 of 2" in str(caught.value)
    with pytest.raises(WorkerConfigError) as caught:
        WorkerSettings.from_env({**base, "AMQP_URL": "amqp://h1/", "AMQP_URL_ORDER": "x"})
    assert caught.value.key == "AMQP_URL_ORDER"
    settings = WorkerSettings.from_env({**base, "AMQP_URL": "amqp://h1/, amqp://h2/"})
    assert settings.broker.endpoints.urls == ("amqp://h1/", "amqp://h2/")
    assert settings.broker.endpoints.order == "shuffle"


def test_dead_letters_cli_exits_2_naming_the_bad_url() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "spectacles.broker.dead_letters_cli", "list", "ping"],
        env={"AMQP_URL": "amqp://u:pw-secret-1@h1/,amqp//h2", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "AMQP_URL" in result.stderr and "URL 2 of 2" in result.stderr
    assert "pw-secret-1" not in result.stderr


async def test_no_node_answering_lists_every_node_and_hides_passwords(dead_url: str) -> None:
    other = dead_url.replace("secret-dead-pw", "another-secret")
    other = other.rsplit(":", 1)[0] + ":9/"
    endpoints = AmqpEndpoints.parse([dead_url, other])

    async def refuse(url: str) -> None:
        raise ConnectionRefusedError(f"refused {url}")

    with pytest.raises(BrokerUnavailable) as caught:
        await connect_first(endpoints, refuse)
    text = str(caught.value)
    assert address_of(dead_url) in text and address_of(other) in text
    assert "secret-dead-pw" not in text and "another-secret" not in text


# -- every client connects past a dead node ---------------------------------------------------


@pytest.mark.parametrize("order", ["in-order", "shuffle"])
async def test_publisher_skips_a_dead_node(
    dead_url: str, amqp_url: str, unique_name: str, channel: AbstractChannel, order: str
) -> None:
    settings = BrokerSettings(f"{dead_url},{amqp_url}", unique_name, url_order=order)
    async with await Publisher.connect(settings, connect_timeout=5) as publisher:
        await publisher.declare_events_exchange()
        queue = await channel.declare_queue(f"{unique_name}.q", exclusive=True)
        await queue.bind(unique_name, "EVENT")
        await publisher.publish("EVENT", b"via the live node", message_id="m1")
        message = await queue.get(timeout=10)
        assert message.body == b"via the live node"
    await channel.exchange_delete(unique_name)


@pytest.mark.parametrize("order", ["in-order", "shuffle"])
async def test_broker_connection_skips_a_dead_node(
    dead_url: str, amqp_url: str, unique_name: str, order: str
) -> None:
    settings = BrokerSettings(f"{dead_url},{amqp_url}", unique_name, url_order=order)
    async with Broker(settings, connection_name=f"{unique_name}-broker") as broker:
        assert broker.node == address_of(amqp_url)
        channel = await broker.channel(timeout=10)
        assert (await channel.declare_queue(exclusive=True)).name
        await channel.close()


async def test_worker_consumes_through_the_live_node(
    dead_url: str, amqp_url: str, unique_name: str, channel: AbstractChannel
) -> None:
    settings = WorkerSettings.from_env(
        {
            "DISCORD_TOKEN": "test-token-not-used",
            "AMQP_URL": f"{dead_url},{amqp_url}",
            "AMQP_URL_ORDER": "in-order",
            "BROKER_GROUP": unique_name,
            "DISCORD_API_URL": "http://127.0.0.1:9/api/v10",
            "METRICS_ADDRESS": "127.0.0.1:0",
        }
    )
    worker = Worker("sdk", settings=settings)
    seen: asyncio.Queue[str] = asyncio.Queue()

    @worker.on("MESSAGE_CREATE")
    async def on_message(message: MessageCreate, ctx: Context) -> None:
        seen.put_nowait(message.content)

    try:
        async with (
            worker.running(),
            await Publisher.connect(BrokerSettings(amqp_url, unique_name)) as publisher,
        ):
            await publisher.publish("MESSAGE_CREATE", MESSAGE, message_id="0:s:1")
            assert await asyncio.wait_for(seen.get(), 20) == "hi"
    finally:
        for queue in (f"{unique_name}.sdk", f"{unique_name}.sdk.dead"):
            await channel.queue_delete(queue)
        for exchange in (unique_name, f"{unique_name}.dlx", f"{unique_name}.commands"):
            await channel.exchange_delete(exchange)


# -- failing over when the connected node is lost ---------------------------------------------


async def test_broker_connection_fails_over_to_the_other_node(
    amqp_url: str, unique_name: str, node_a: _Proxy, node_b: _Proxy
) -> None:
    settings = BrokerSettings(
        f"{_via(node_a, amqp_url)},{_via(node_b, amqp_url)}", unique_name, url_order="in-order"
    )
    async with Broker(settings, reconnect_delay=0.05, connect_timeout=3) as broker:
        assert broker.node == f"127.0.0.1:{node_a.port}"
        before = await broker.wait_connected(5)
        await node_a.cut()  # node A is gone for good: only B can take the connection
        await eventually(lambda: broker.reconnects == 1, timeout=20)
        assert broker.node == f"127.0.0.1:{node_b.port}"
        assert await broker.wait_connected(5) is not before
        channel = await broker.channel(timeout=5)
        assert (await channel.declare_queue(exclusive=True)).name
        await channel.close()


async def test_publisher_fails_over_and_every_message_arrives_by_message_id(
    amqp_url: str, unique_name: str, node_a: _Proxy, node_b: _Proxy, channel: AbstractChannel
) -> None:
    """Unconfirmed publishes fail with ConnectionLost (= not sent); the caller republishes them
    with the same message_id on the other node; nothing is missing, duplicates share an id."""
    settings = BrokerSettings(
        f"{_via(node_a, amqp_url)},{_via(node_b, amqp_url)}", unique_name, url_order="in-order"
    )
    publisher = await Publisher.connect(settings, reconnect_delay=0.05, connect_timeout=3)
    try:
        await publisher.declare_events_exchange()
        queue = await channel.declare_queue(f"{unique_name}.q", exclusive=True)
        await queue.bind(unique_name, "EVENT")
        total, lost_once = 400, 0

        async def send(index: int) -> None:
            nonlocal lost_once
            while True:
                try:
                    await publisher.publish("EVENT", b"%d" % index, message_id=f"id-{index}")
                    return
                except (ConnectionLost, BrokerUnavailable):
                    lost_once += 1  # not sent as far as we know: send it again, same id

        sends = []
        for index in range(total):
            sends.append(asyncio.create_task(send(index)))
            if index == total // 3:
                node_a.hold_replies()  # confirms of what follows stay outstanding...
            if index == total // 2:
                await asyncio.sleep(0.2)
                await node_a.cut()  # ...until node A dies with them in flight
            await asyncio.sleep(0)
        await asyncio.wait_for(asyncio.gather(*sends), 60)
        assert lost_once > 0  # the node loss did hit publishes in flight
        assert publisher.is_connected

        ids: Counter[str] = Counter()
        done = asyncio.Event()

        async def on_message(message: AbstractIncomingMessage) -> None:
            ids[message.message_id or ""] += 1
            if len(ids) == total:
                done.set()

        await queue.consume(on_message, no_ack=True)
        await asyncio.wait_for(done.wait(), 20)
        assert set(ids) == {f"id-{index}" for index in range(total)}  # 0 missing
    finally:
        await publisher.close()
        await channel.exchange_delete(unique_name)
