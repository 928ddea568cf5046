"""Exclusive leases against a real RabbitMQ: one holder at a time, and a lost holder is told."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from spectacles.broker.lease import Lease, LeaseHolder, LeaseLost, LeaseTimeout
from spectacles.broker.settings import BrokerSettings

from .conftest import close_connections_named


@pytest.fixture
async def holders(
    broker_settings: BrokerSettings, unique_name: str
) -> AsyncIterator[Callable[..., object]]:
    """Start LeaseHolders named ``{unique_name}-{tag}``; all closed at the end."""
    started: list[LeaseHolder] = []

    async def start(
        tag: str, settings: BrokerSettings = broker_settings, **kw: object
    ) -> LeaseHolder:
        options: dict[str, object] = {"heartbeat": 1, "probe_interval": 0.1, "probe_timeout": 1.0}
        options.update(kw)
        holder = LeaseHolder(settings, connection_name=f"{unique_name}-{tag}", **options)  # type: ignore[arg-type]
        await holder.start()
        started.append(holder)
        return holder

    yield start
    for holder in started:
        await holder.close()


async def test_two_holders_exclude_each_other(
    holders: Callable[..., object], unique_name: str
) -> None:
    a: LeaseHolder = await holders("a")  # type: ignore[misc]
    b: LeaseHolder = await holders("b")  # type: ignore[misc]
    name = f"{unique_name}.lease"

    lease = await a.try_acquire(name)
    assert lease is not None and lease.is_held
    assert await b.try_acquire(name) is None
    with pytest.raises(LeaseTimeout):
        await b.acquire(name, timeout=0.5, retry_interval=0.1)
    assert await a.try_acquire(name) is lease  # taking what one holds already is a no-op

    waiting = asyncio.create_task(b.acquire(name, timeout=10, retry_interval=0.05))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await lease.release()
    assert not lease.is_held and lease.was_released
    taken: Lease = await asyncio.wait_for(waiting, 10)
    assert taken.is_held and b.held == (name,)
    assert await a.try_acquire(name) is None
    assert not a.is_lost and not b.is_lost


async def test_killed_connection_frees_the_lease_and_tells_the_holder(
    holders: Callable[..., object], unique_name: str
) -> None:
    a: LeaseHolder = await holders("victim")  # type: ignore[misc]
    b: LeaseHolder = await holders("peer")  # type: ignore[misc]
    names = [f"{unique_name}.lease.{i}" for i in range(3)]
    held = [await a.try_acquire(name) for name in names]
    assert all(held)
    told: list[str] = []
    a.on_lost(lambda: told.append("holder"))
    for lease in held:
        assert lease is not None
        lease.on_lost(lambda lease=lease: told.append(lease.name))

    # Off the event loop: rabbitmqctl takes seconds, and a loop blocked that long starves the
    # peer's lease probes (1 s timeout), so the peer too was lost (and its close then hung).
    assert await asyncio.to_thread(close_connections_named, f"{unique_name}-victim") == 1

    await asyncio.wait_for(a.wait_lost(), 10)
    assert a.is_lost and a.held == ()
    assert sorted(told) == sorted([*names, "holder"])
    assert all(lease is not None and not lease.is_held and not lease.was_released for lease in held)
    for name in names:  # free for the peer at once: RabbitMQ deleted the exclusive queues
        assert await b.try_acquire(name) is not None
    with pytest.raises(LeaseLost):
        await a.try_acquire(f"{unique_name}.other")


async def test_close_releases_every_lease(holders: Callable[..., object], unique_name: str) -> None:
    a: LeaseHolder = await holders("a")  # type: ignore[misc]
    b: LeaseHolder = await holders("b")  # type: ignore[misc]
    told: list[str] = []
    a.on_lost(lambda: told.append("lost"))
    for i in range(2):
        assert await a.try_acquire(f"{unique_name}.l{i}") is not None
    await a.close()
    for i in range(2):
        assert await b.try_acquire(f"{unique_name}.l{i}") is not None
    assert told == []  # a deliberate close is not a loss


class _FreezableProxy:
    """A TCP proxy to RabbitMQ that can go silent without closing: a network partition."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self.frozen = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers += [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    if self.frozen.is_set():
                        continue  # swallowed: neither side hears from the other
                    dst.write(data)
                    await dst.drain()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()


async def test_a_silent_partition_is_noticed_by_the_holder_before_a_peer_can_take_over(
    holders: Callable[..., object], broker_settings: BrokerSettings, unique_name: str
) -> None:
    """No close reaches the holder; its probes time out before RabbitMQ frees the lease."""
    from urllib.parse import urlsplit

    url = urlsplit(broker_settings.endpoints.urls[0])
    proxy = _FreezableProxy(url.hostname or "localhost", url.port or 5672)
    await proxy.start()
    try:
        via_proxy = BrokerSettings(
            amqp_url=url._replace(
                netloc=f"{url.netloc.rsplit('@', 1)[0]}@127.0.0.1:{proxy.port}"
            ).geturl(),
            group=broker_settings.group,
        )
        a: LeaseHolder = await holders("cut", via_proxy, probe_timeout=1.0)  # type: ignore[misc]
        b: LeaseHolder = await holders("peer")  # type: ignore[misc]
        name = f"{unique_name}.lease"
        assert await a.try_acquire(name) is not None
        loop = asyncio.get_running_loop()

        proxy.frozen.set()
        cut_at = loop.time()
        taken = asyncio.create_task(b.acquire(name, timeout=30, retry_interval=0.05))
        await asyncio.wait_for(a.wait_lost(), 10)
        noticed = loop.time() - cut_at
        lease = await asyncio.wait_for(taken, 30)
        freed = loop.time() - cut_at
        assert lease.is_held
        # The holder knew within its probe timeout (plus scheduling slack), and before RabbitMQ
        # ended its lease (missed heartbeats take at least one heartbeat interval).
        assert noticed < 1.0 + 0.9
        assert noticed < freed
    finally:
        await proxy.close()


async def test_probe_settings_are_checked(broker_settings: BrokerSettings) -> None:
    with pytest.raises(ValueError, match="probe_interval"):
        LeaseHolder(broker_settings, probe_interval=2.0, probe_timeout=1.0)
    with pytest.raises(ValueError, match="heartbeat"):
        LeaseHolder(broker_settings, heartbeat=0)


async def test_try_acquire_before_start_is_a_clear_error(broker_settings: BrokerSettings) -> None:
    with pytest.raises(RuntimeError, match="start"):
        await LeaseHolder(broker_settings).try_acquire("x")
