"""``amqps://`` and the URL options against a real RabbitMQ 4 with a private CA (see tls_kit).

Each connection kind the project opens is exercised: the lean publish connection (``Publisher``)
and the aio-pika one (``Broker``). What the broker saw (user, vhost, TLS peer certificate,
heartbeat, connection name) is read back with ``rabbitmqctl list_connections``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from spectacles.broker.broker import Broker
from spectacles.broker.errors import BrokerUnavailable
from spectacles.broker.publisher import Publisher
from spectacles.broker.settings import BrokerSettings

from .tls_kit import EXTERNAL_USER, ODD_VHOST, TlsBroker, docker_missing, make_pki, start_broker

# The first test may wait for Docker to start and the image to be built (see tls_kit).
pytestmark = [pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    reason = docker_missing()
    if reason is not None:
        pytest.skip(f"needs Docker to run a TLS RabbitMQ: {reason}")
    workdir = tmp_path_factory.mktemp("amqp-url-tls")
    broker = start_broker(make_pki(workdir / "pki"), workdir)
    try:
        yield broker
    finally:
        broker.stop()


def _url(tls: TlsBroker, query: str = "", *, host: str = "127.0.0.1", vhost: str = "") -> str:
    return f"amqps://guest:guest@{host}:{tls.tls_port}/{vhost}?cafile={tls.pki.ca}" + (
        f"&{query}" if query else ""
    )


@contextlib.asynccontextmanager
async def _both(url: str, group: str) -> AsyncIterator[tuple[Publisher, Broker]]:
    """A Publisher (lean connection) and a Broker (aio-pika connection) on ``url``."""
    settings = BrokerSettings(url, group)
    async with (
        await Publisher.connect(settings, connect_timeout=20) as publisher,
        Broker(settings, connect_timeout=20) as broker,
    ):
        yield publisher, broker


async def _round_trip(publisher: Publisher, broker: Broker, group: str) -> bytes:
    """Publish one confirmed event through ``publisher``; read it back through ``broker``."""
    await publisher.declare_events_exchange()
    channel = await broker.channel(timeout=10)
    try:
        queue = await channel.declare_queue(f"{group}.q", exclusive=True)
        await queue.bind(group, "EVENT")
        await publisher.publish("EVENT", b"over TLS", message_id="m1")  # returns once confirmed
        message = await queue.get(timeout=10)
        await channel.exchange_delete(group)
        return message.body
    finally:
        await channel.close()


def _connection_line(tls: TlsBroker, name: str) -> str:
    for line in tls.connections().splitlines():
        if f'"{name}"' in line:
            return line
    raise AssertionError(f"no connection named {name} in {tls.connections()!r}")


async def test_publish_and_confirm_over_amqps_with_the_private_ca(tls_broker: TlsBroker) -> None:
    group = f"tls-{uuid.uuid4().hex[:8]}"
    async with _both(_url(tls_broker), group) as (publisher, broker):
        assert await _round_trip(publisher, broker, group) == b"over TLS"


async def test_client_certificate_is_presented_by_both_connection_kinds(
    tls_broker: TlsBroker,
) -> None:
    pki = tls_broker.pki
    name = f"tls-client-{uuid.uuid4().hex[:8]}"
    url = _url(tls_broker, f"certfile={pki.client_cert}&keyfile={pki.client_key}&name={name}")
    async with _both(url, name) as (publisher, broker):
        await _round_trip(publisher, broker, name)
        lines = [line for line in tls_broker.connections().splitlines() if f'"{name}"' in line]
    assert len(lines) == 2, lines  # the URL's name wins for both kinds
    assert all("CN=amqp-url-client" in line and "true" in line for line in lines), lines


async def test_sni_server_hostname_is_checked_and_no_verify_ssl_skips_the_check(
    tls_broker: TlsBroker,
) -> None:
    group = f"tls-sni-{uuid.uuid4().hex[:8]}"
    # The certificate names localhost and 127.0.0.1, not wrong.test: verification refuses.
    wrong = _url(tls_broker, "server_hostname=wrong.test")
    for connect in (
        Publisher.connect(BrokerSettings(wrong, group), connect_timeout=20),
        Broker.connect(BrokerSettings(wrong, group), connect_timeout=20),
    ):
        with pytest.raises(BrokerUnavailable, match=r"CERTIFICATE_VERIFY_FAILED|hostname"):
            await connect
    async with _both(_url(tls_broker, "server_hostname=localhost"), group) as (p, b):
        assert await _round_trip(p, b, group) == b"over TLS"
    async with _both(_url(tls_broker, "server_hostname=wrong.test&no_verify_ssl=1"), group) as (
        p,
        b,
    ):
        assert await _round_trip(p, b, group) == b"over TLS"


async def test_a_wrong_ca_is_a_clear_broker_unavailable(tls_broker: TlsBroker) -> None:
    url = _url(tls_broker).replace(str(tls_broker.pki.ca), str(tls_broker.pki.other_ca))
    settings = BrokerSettings(url.replace("guest:guest", "guest:tls-secret-pw"), "tls-wrong-ca")
    for connect in (
        Publisher.connect(settings, connect_timeout=20),
        Broker.connect(settings, connect_timeout=20),
    ):
        with pytest.raises(BrokerUnavailable) as caught:
            await connect
        text = str(caught.value)
        assert "CERTIFICATE_VERIFY_FAILED" in text and f"127.0.0.1:{tls_broker.tls_port}" in text
        assert "tls-secret-pw" not in text


async def test_auth_external_logs_in_as_the_certificate_cn(tls_broker: TlsBroker) -> None:
    pki = tls_broker.pki
    name = f"tls-ext-{uuid.uuid4().hex[:8]}"
    # No credentials in the URL: EXTERNAL takes the user from the certificate.
    url = (
        f"amqps://127.0.0.1:{tls_broker.tls_port}/?auth=external&cafile={pki.ca}"
        f"&certfile={pki.external_cert}&keyfile={pki.external_key}&name={name}"
    )
    async with _both(url, name) as (publisher, broker):
        await _round_trip(publisher, broker, name)
        lines = [line for line in tls_broker.connections().splitlines() if f'"{name}"' in line]
    assert len(lines) == 2, lines
    assert all(f"\t{EXTERNAL_USER}\t" in line for line in lines), lines


async def test_auth_external_without_the_user_is_refused_clearly(tls_broker: TlsBroker) -> None:
    pki = tls_broker.pki  # the client certificate's CN has no RabbitMQ user
    url = (
        f"amqps://127.0.0.1:{tls_broker.tls_port}/?auth=external&cafile={pki.ca}"
        f"&certfile={pki.client_cert}&keyfile={pki.client_key}"
    )
    with pytest.raises(BrokerUnavailable, match=f"127.0.0.1:{tls_broker.tls_port}"):
        await Publisher.connect(BrokerSettings(url, "tls-ext-refused"), connect_timeout=20)
    with pytest.raises(BrokerUnavailable, match=f"127.0.0.1:{tls_broker.tls_port}"):
        await Broker.connect(BrokerSettings(url, "tls-ext-refused"), connect_timeout=20)


async def test_percent_encoded_vhost_heartbeat_and_name_reach_the_broker(
    tls_broker: TlsBroker,
) -> None:
    name = f"tls-vhost-{uuid.uuid4().hex[:8]}"
    url = _url(tls_broker, f"heartbeat=7&name={name}", vhost=quote(ODD_VHOST, safe=""))
    async with _both(url, name) as (publisher, broker):
        await _round_trip(publisher, broker, name)
        lines = [line for line in tls_broker.connections().splitlines() if f'"{name}"' in line]
    assert len(lines) == 2, lines
    for line in lines:
        fields = line.split("\t")
        assert fields[2] == ODD_VHOST and fields[-1] == "7", fields


async def test_plain_amqp_on_an_ipv6_literal(tls_broker: TlsBroker) -> None:
    """``amqp://[::1]:port/`` reaches the broker (through a relay on ::1: Docker maps IPv4)."""
    relay = await asyncio.start_server(
        lambda r, w: _pipe_to(r, w, tls_broker.port), "::1", 0, reuse_address=True
    )
    port = relay.sockets[0].getsockname()[1]
    group = f"v6-{uuid.uuid4().hex[:8]}"
    try:
        async with _both(f"amqp://guest:guest@[::1]:{port}/%2F", group) as (publisher, broker):
            assert broker.node == f"[::1]:{port}"
            assert await _round_trip(publisher, broker, group) == b"over TLS"
    finally:
        relay.close()


async def _pipe_to(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> None:
    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.close()

    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def test_tls_files_are_checked_when_the_url_is_read(tmp_path: Path) -> None:
    """A certificate that does not load is a config error at start-up, not a failed connect."""
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ValueError, match=r"AMQP_URL .*cannot be loaded"):
        BrokerSettings(f"amqps://h/?cafile={bad}")


async def test_a_consumer_consumes_over_amqps_on_its_lean_connection(tls_broker: TlsBroker) -> None:
    from spectacles.broker.consumer import Consumer
    from spectacles.broker.delivery import Delivery

    group = f"tls-consumer-{uuid.uuid4().hex[:8]}"
    got = asyncio.Event()
    bodies: list[bytes] = []

    async def handle(delivery: Delivery) -> None:
        bodies.append(delivery.body)
        got.set()

    async with _both(_url(tls_broker), group) as (publisher, broker):
        consumer = Consumer(broker, worker="w", events=["EVENT"], handler=handle)
        await consumer.start()
        try:
            await publisher.publish("EVENT", b"consumed over TLS", message_id="c1")
            await asyncio.wait_for(got.wait(), 20)
            listing = await asyncio.to_thread(tls_broker.connections)
        finally:
            await consumer.stop()
        lines = [line for line in listing.splitlines() if "consumer@" in line]
    assert bodies == [b"consumed over TLS"]
    assert lines and all("true" in line for line in lines), lines  # the lean one is TLS too
