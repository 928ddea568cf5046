"""Identify buckets shared by several gateway processes of one bot, locked in RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import pytest
from gateway_testkit import (
    Control,
    TcpProxy,
    gateway_config,
    queue_state,
    running_gateway,
    running_simulator,
    wait_ready,
    wait_until,
)

from spectacles.broker.broker import Broker
from spectacles.broker.lease import LeaseHolder
from spectacles.broker.settings import BrokerSettings
from spectacles.gateway import ConfigError, GatewayService, IdentifyQueue, ShardState, parse_config
from spectacles.gateway.identify import identify_spacing
from spectacles.gateway.identify_lock import AmqpBucketLock, identify_lock_name
from spectacles.simulator import Simulator

INTERVAL = 0.5


def proxied_url(amqp_url: str, proxy: TcpProxy) -> str:
    target = urlsplit(amqp_url)
    credentials = target.netloc.rsplit("@", 1)[0]
    return target._replace(netloc=f"{credentials}@127.0.0.1:{proxy.port}").geturl()


def proxy_to(amqp_url: str) -> TcpProxy:
    target = urlsplit(amqp_url)
    return TcpProxy(target.hostname or "localhost", target.port or 5672)


async def lock_queue_exists(amqp_url: str, name: str) -> bool:
    """Whether the lock queue exists (also when exclusive to another connection)."""
    return await queue_state(amqp_url, name) != "missing"


@contextlib.asynccontextmanager
async def bucket_lock(
    amqp_url: str, group: str, max_concurrency: int = 1
) -> AsyncIterator[AmqpBucketLock]:
    broker = await Broker.connect(
        BrokerSettings(amqp_url=amqp_url, group=group),
        connection_name=f"{group}:lock",
        reconnect_delay=0.05,
        max_reconnect_delay=0.2,
    )
    lock = AmqpBucketLock(broker, max_concurrency=max_concurrency)
    try:
        yield lock
    finally:
        await lock.close()
        await broker.close()


async def hold_in_background(
    lock: AmqpBucketLock, bucket: int, keep_for: float = 0.0
) -> tuple[asyncio.Task[None], asyncio.Event, asyncio.Event]:
    """Enter `hold` in a task: (task, entered, leave) — set `leave` to exit the block."""
    entered, leave = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        async with lock.hold(bucket, keep_for):
            entered.set()
            await leave.wait()

    return asyncio.create_task(run()), entered, leave


# ----------------------------------------------------------------- two gateway processes


async def two_gateways_identify(
    sim: Simulator, amqp_url: str, group: str, identify_lock: str
) -> dict[int, float]:
    """Start two gateways of one bot at once (shards 0,1 and 2,3); each shard's IDENTIFY time."""
    configs = [
        gateway_config(
            sim,
            amqp_url,
            group,
            gateway={"identify_interval": INTERVAL, "identify_lock": identify_lock},
            shards={"count": 4, "ids": ids},
        )
        for ids in ("0-1", "2-3")
    ]
    services = [
        GatewayService(config, connection_name=f"{group}:{n}") for n, config in enumerate(configs)
    ]
    try:
        await asyncio.gather(*(s.start() for s in services))
        await asyncio.gather(*(wait_ready(s, timeout=20) for s in services))
        sent = {i: s.last_identify_at for svc in services for i, s in svc.shards.items()}
    finally:
        await asyncio.gather(*(s.stop() for s in services))
    assert all(t is not None for t in sent.values())
    return {i: t for i, t in sent.items() if t is not None}


async def test_two_gateways_take_turns_in_each_bucket(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    async with running_simulator(shards=4, max_concurrency=2, identify_interval=INTERVAL) as sim:
        times = await two_gateways_identify(sim, amqp_url, group, "amqp")
        stats = await Control(http, sim.base_url).stats()
    assert stats["identifies"] == 4
    assert stats["invalid_sessions"] == 0  # the simulator refuses a too-early IDENTIFY with op 9
    # Bucket = shard_id % 2: each bucket has one shard in each process.
    assert abs(times[2] - times[0]) >= INTERVAL
    assert abs(times[3] - times[1]) >= INTERVAL
    for bucket in range(2):  # released once the gateways stopped: nothing left in RabbitMQ
        assert not await lock_queue_exists(amqp_url, identify_lock_name(group, 2, bucket))


async def test_two_gateways_without_the_lock_collide(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    """The same start with per-process buckets: Discord (the simulator) refuses IDENTIFYs."""
    async with running_simulator(shards=4, max_concurrency=2, identify_interval=INTERVAL) as sim:
        await two_gateways_identify(sim, amqp_url, group, "local")
        stats = await Control(http, sim.base_url).stats()
    assert stats["invalid_sessions"] > 0
    assert stats["identifies"] == 4


async def test_a_long_wait_for_the_bucket_keeps_the_connection_alive(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    """The last of six shards in one bucket waits ~2.6 s after HELLO: over two heartbeats.

    The shard must read HEARTBEAT_ACKs meanwhile, or it takes its connection for a zombie and
    spends one more IDENTIFY.
    """
    async with running_simulator(shards=6, max_concurrency=1, identify_interval=INTERVAL) as sim:
        config = gateway_config(
            sim, amqp_url, group, gateway={"identify_interval": INTERVAL}, shards={"count": 6}
        )
        async with running_gateway(config, group) as service:
            await wait_ready(service, timeout=20)
            stats = await Control(http, sim.base_url).stats()
            reconnects = {i: dict(s.reconnects) for i, s in service.shards.items()}
    assert sim.config.heartbeat_interval_ms == 1000
    assert stats["identifies"] == 6 and stats["invalid_sessions"] == 0
    assert reconnects == {i: {} for i in range(6)}


# ----------------------------------------------------------------- the lock itself


async def test_lock_excludes_other_connections_and_keeps_after_exit(
    amqp_url: str, group: str
) -> None:
    keep = 0.4
    async with bucket_lock(amqp_url, group) as first, bucket_lock(amqp_url, group) as second:
        async with first.hold(0, keep):
            waiter, entered, leave = await hold_in_background(second, 0)
            other_bucket, other_entered, other_leave = await hold_in_background(second, 1)
            await asyncio.wait_for(other_entered.wait(), 2)  # buckets are independent
            other_leave.set()
            await asyncio.sleep(0.3)
            assert not entered.is_set()
            released = time.monotonic()
        await asyncio.wait_for(entered.wait(), 2)
        waited = time.monotonic() - released
        leave.set()
        await asyncio.gather(waiter, other_bucket)
        assert keep <= waited < keep + 0.6
        await second.close()  # releases the kept buckets at once
        assert not await lock_queue_exists(amqp_url, identify_lock_name(group, 1, 0))


async def test_lock_is_released_after_a_failed_send(amqp_url: str, group: str) -> None:
    async with bucket_lock(amqp_url, group) as first, bucket_lock(amqp_url, group) as second:
        with pytest.raises(RuntimeError):
            async with first.hold(0, 0.2):
                raise RuntimeError("send failed")
        # Still kept for the interval (the IDENTIFY may have gone out), then given back.
        async with asyncio.timeout(2):
            async with second.hold(0, 0.0):
                pass


async def test_cancelled_holder_and_waiter_leave_no_lock(amqp_url: str, group: str) -> None:
    """Shutdown cancels shards mid-IDENTIFY or mid-wait: neither may keep the bucket."""
    async with bucket_lock(amqp_url, group) as first, bucket_lock(amqp_url, group) as second:
        holder, held, _ = await hold_in_background(first, 0, keep_for=0.1)
        await asyncio.wait_for(held.wait(), 2)
        waiter, _, _ = await hold_in_background(second, 0)
        await asyncio.sleep(0.3)
        holder.cancel()
        waiter.cancel()
        await asyncio.gather(holder, waiter, return_exceptions=True)
        async with asyncio.timeout(2):
            async with first.hold(0, 0.0):
                pass
        await first.close()
        await second.close()
        assert not await lock_queue_exists(amqp_url, identify_lock_name(group, 1, 0))


async def test_crashed_holder_releases_at_once(amqp_url: str, group: str) -> None:
    """A holder whose connection dies (crash, network cut) frees the bucket immediately."""
    name = identify_lock_name(group, 1, 0)
    async with proxy_to(amqp_url) as proxy, bucket_lock(amqp_url, group) as lock:
        crashed = LeaseHolder(BrokerSettings(amqp_url=proxied_url(amqp_url, proxy), group=group))
        await crashed.start()
        try:
            assert await crashed.try_acquire(name) is not None
            waiter, entered, leave = await hold_in_background(lock, 0)
            await asyncio.sleep(0.5)
            assert not entered.is_set()
            proxy.cut()  # no AMQP close: like a killed process
            cut = time.monotonic()
            await asyncio.wait_for(entered.wait(), 2)
            waited = time.monotonic() - cut
            leave.set()
            await waiter
        finally:
            with contextlib.suppress(Exception):
                await crashed.close()
    assert waited < 0.6, f"waited {waited:.3f}s after the holder died"


async def test_waiting_survives_a_rabbitmq_outage_and_cancels_promptly(
    amqp_url: str, group: str
) -> None:
    async with (
        proxy_to(amqp_url) as proxy,
        bucket_lock(proxied_url(amqp_url, proxy), group) as lock,
    ):
        proxy.refusing = True
        proxy.cut()
        waiter, entered, leave = await hold_in_background(lock, 0)
        await asyncio.sleep(1.0)
        assert not entered.is_set() and not waiter.done()  # no lock, no crash: still waiting
        proxy.refusing = False
        await asyncio.wait_for(entered.wait(), 5)
        leave.set()
        await waiter
        # And while RabbitMQ is down, a cancel (shutdown) ends the wait at once.
        await lock.close()
        proxy.refusing = True
        proxy.cut()
        waiter, entered, _ = await hold_in_background(lock, 0)
        await asyncio.sleep(0.5)
        cancelled = time.monotonic()
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        assert time.monotonic() - cancelled < 0.2
        assert not entered.is_set()


async def test_shard_waits_for_the_lock_while_rabbitmq_is_down(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    """A shard that must re-IDENTIFY during an outage waits for the lock; it never skips it."""
    async with proxy_to(amqp_url) as proxy, running_simulator() as sim:
        config = gateway_config(sim, proxied_url(amqp_url, proxy), group)
        async with running_gateway(config, group) as service:
            await wait_ready(service)
            shard = service.shards[0]
            # READY is relayed once confirmed: an unconfirmed one would (rightly) hold the shard
            # in WAITING_BROKER, not at the IDENTIFY this test is about.
            await wait_until(lambda: shard.pending_confirms == 0, timeout=10)
            control = Control(http, sim.base_url)
            proxy.refusing = True
            proxy.cut()
            await control.post("/shards/0/invalidate?resumable=false")
            await wait_until(lambda: shard.state is ShardState.IDENTIFYING, timeout=5)
            await asyncio.sleep(1.0)
            assert (await control.stats())["identifies"] == 1  # still only the first session
            assert shard.state is ShardState.IDENTIFYING
            proxy.refusing = False
            await wait_ready(service, timeout=30)
            publisher = service.publisher
            assert publisher is not None
            # Let READY's publish, submitted while RabbitMQ was away, be confirmed: a stop
            # would otherwise wait for it (the drain timeout).
            await wait_until(
                lambda: publisher.is_connected and shard.pending_confirms == 0, timeout=20
            )
            stats = await control.stats()
    assert stats["identifies"] == 2
    assert shard.identifies == 2


# ----------------------------------------------------------------- identify queue and config


async def test_identify_queue_holds_the_bucket_lock_for_the_interval() -> None:
    calls: list[tuple[int, float]] = []

    class Recording:
        @contextlib.asynccontextmanager
        async def hold(self, bucket: int, keep_for: float) -> AsyncIterator[None]:
            calls.append((bucket, keep_for))
            yield

        async def close(self) -> None:
            pass

    queue = IdentifyQueue(max_concurrency=4, interval=2.0, lock=Recording())
    async with queue.slot(6):
        queue.answered(6)  # READY: the slot need not wait for the answer
    assert calls == [(2, identify_spacing(2.0))]


def test_identify_lock_option() -> None:
    base = {"token": "t", "events": ["READY"]}
    assert parse_config(base).gateway.identify_lock == "amqp"
    local = parse_config({**base, "gateway": {"identify_lock": "local"}})
    assert local.gateway.identify_lock == "local"
    assert local.redacted()["gateway"]["identify_lock"] == "local"
    from_env = parse_config(base, {"GATEWAY_IDENTIFY_LOCK": "LOCAL"})
    assert from_env.gateway.identify_lock == "local"
    with pytest.raises(ConfigError) as info:
        parse_config({**base, "gateway": {"identify_lock": "redis"}})
    assert str(info.value) == ("gateway.identify_lock: unknown value 'redis' (valid: amqp, local)")
    with pytest.raises(ConfigError, match=r"gateway\.identify_lock"):
        parse_config({**base, "gateway": {"identify_lock": True}})
