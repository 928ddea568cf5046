"""The relay under faults (broker outage, dropped socket), the commands path, health and metrics."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from gateway_testkit import (
    ALL_DISPATCHES,
    Control,
    TcpProxy,
    amqp_channel,
    assert_every_seq_received,
    close_connections,
    connections_named,
    event_sink,
    gateway_config,
    publish_to,
    running_gateway,
    running_simulator,
    wait_all_relayed,
    wait_ready,
    wait_until,
)

from spectacles.gateway import GatewayService, ShardState
from spectacles.gateway.shard import DRAIN_TIMEOUT

# Also run against RabbitMQ 4 (scripts/rabbit4.sh).
pytestmark = pytest.mark.rmq4


async def test_relay_when_rabbitmq_connections_killed_mid_flood_loses_nothing(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    # Flat-out floods of `chunk` events follow each other until the gateway has lost its publish
    # connection, so the outage lands mid-flood however fast the relay and however slow
    # rabbitmqctl is (a fixed 15,000 were once relayed whole before it had closed anything).
    # Zlib-compressed, tens of thousands of events fit in the socket buffers beyond the last
    # confirmed seq: the simulator keeps more than the floods reach, for the RESUME to replay (past
    # its replay buffer a RESUME gets 4007 and a new session: not what this test is about).
    chunk = 2_000
    async with (
        running_simulator(replay_buffer_size=300_000) as sim,
        event_sink(amqp_url, group, ALL_DISPATCHES) as sink,
    ):
        config = gateway_config(sim, amqp_url, group, events=ALL_DISPATCHES)
        async with running_gateway(config, group) as service:
            await wait_ready(service)
            pids = await asyncio.to_thread(connections_named, group)
            # The publisher, the control connection and the lease connection (identify locks).
            assert len(pids) == 3
            control = Control(http, sim.base_url)
            publisher, shard = service.publisher, service.shards[0]
            assert publisher is not None

            async def outage() -> int:
                """The shard's resume point (last confirmed seq) as the publish link went down."""
                confirmed = 0
                while publisher.is_connected:  # down for >= 0.25 s (the reconnect backoff)
                    confirmed = shard.sink.resume_seq
                    await asyncio.sleep(0.001)
                return confirmed

            async def flood() -> None:
                while True:
                    await control.post("/flood", {"count": chunk, "wait": True})
                    if lost.done() or not publisher.is_connected:
                        return

            lost = asyncio.create_task(outage())
            flooding = asyncio.create_task(flood())
            try:
                # (the shard's own count: the test's consumer lags far behind a flat-out flood)
                await wait_until(lambda: shard.sink.resume_seq > 1000, timeout=20)
                await asyncio.to_thread(close_connections, pids)
                confirmed_at_outage = await asyncio.wait_for(lost, 10)
                await asyncio.wait_for(flooding, 60)
            finally:
                for task in (lost, flooding):
                    task.cancel()
                await asyncio.gather(lost, flooding, return_exceptions=True)
            await wait_ready(service, timeout=20)
            session_id, last_seq = await wait_all_relayed(control, sink)
            stats = await control.stats()
            assert service.broker is not None and service.broker.reconnects >= 1
    # Events Discord sent were still to be confirmed when the link went down (the flood was
    # still running: it stops only once the outage is seen).
    assert confirmed_at_outage < last_seq, "the outage must happen mid-flood"
    # Depending on timing the shard either held its socket (backpressure) while the publisher
    # reconnected, or RESUMEd from the last confirmed seq; never a new session.
    assert stats["identifies"] == 1
    assert_every_seq_received(sink, session_id, last_seq)


async def test_relay_when_broker_link_cut_resumes_from_last_confirmed(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    """Publishes in flight fail: the shard closes (resumable), waits for RabbitMQ, RESUMEs."""
    count = 8000
    target = urlsplit(amqp_url)
    async with (
        TcpProxy(target.hostname or "localhost", target.port or 5672) as proxy,
        running_simulator() as sim,
        event_sink(amqp_url, group, ALL_DISPATCHES) as sink,
    ):
        proxied = target._replace(
            netloc=f"{target.netloc.rsplit('@', 1)[0]}@127.0.0.1:{proxy.port}"
        )
        config = gateway_config(sim, proxied.geturl(), group, events=ALL_DISPATCHES)
        async with running_gateway(config, group) as service:
            await wait_ready(service)
            control = Control(http, sim.base_url)
            flood = asyncio.create_task(
                control.post("/flood", {"count": count, "rate": 2000, "wait": True})
            )
            shard = service.shards[0]
            # (the shard's own count: the test's consumer may lag behind the flood)
            await wait_until(lambda: shard.sink.resume_seq > 1000, timeout=20)
            proxy.stall()  # confirms stop arriving: the window fills with unconfirmed events
            # (confirms already past the proxy still arrive; wait for a real backlog)
            await wait_until(lambda: shard.pending_confirms > 100, timeout=10, what="in flight")
            in_flight_at_cut = shard.pending_confirms
            proxy.refusing = True
            proxy.cut()
            await wait_until(lambda: shard.state is ShardState.WAITING_BROKER, timeout=10)
            await asyncio.sleep(0.5)
            proxy.refusing = False
            await asyncio.wait_for(flood, 60)
            await wait_until(lambda: shard.resumes >= 1 and shard.is_ready, timeout=20)
            session_id, last_seq = await wait_all_relayed(control, sink)
            stats = await control.stats()
    assert in_flight_at_cut > 0
    assert shard.reconnects["broker"] >= 1
    assert stats["resumes"] >= 1 and stats["identifies"] == 1
    assert stats["closes"].get("4900", 0) >= 1  # the shard left with a resumable code
    assert_every_seq_received(sink, session_id, last_seq)


async def test_stop_while_a_publish_waits_for_rabbitmq_is_prompt_and_keeps_the_resume_point(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    """An event whose publish never went out holds the resume point back and is not drained."""
    target = urlsplit(amqp_url)
    async with (
        TcpProxy(target.hostname or "localhost", target.port or 5672) as proxy,
        running_simulator() as sim,
    ):
        proxied = target._replace(
            netloc=f"{target.netloc.rsplit('@', 1)[0]}@127.0.0.1:{proxy.port}"
        )
        config = gateway_config(sim, proxied.geturl(), group, events=ALL_DISPATCHES)
        service = GatewayService(config, connection_name=group)
        await service.start()
        try:
            await wait_ready(service)
            shard = service.shards[0]
            publisher = service.publisher
            assert publisher is not None
            await wait_until(lambda: shard.pending_confirms == 0, timeout=10)
            confirmed = shard.session.seq if shard.session else None
            proxy.refusing = True
            proxy.cut()
            await wait_until(lambda: not publisher.is_connected, timeout=10)
            await Control(http, sim.base_url).post("/flood", {"count": 1, "wait": True})
            await wait_until(lambda: shard.pending_confirms == 1, timeout=10, what="waiting")
        finally:
            started = asyncio.get_running_loop().time()
            await service.stop()
            stopped_in = asyncio.get_running_loop().time() - started
    assert stopped_in < DRAIN_TIMEOUT / 2  # not the drain timeout: nothing could settle
    assert confirmed is not None and shard.session is not None
    assert shard.session.seq == confirmed  # the unsent event is replayed on RESUME


async def test_relay_when_socket_dropped_mid_flood_resume_replays(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    count = 6000  # 2 s at 3000/s; the drop after 600 (the shard's count: the sink may lag)
    async with running_simulator() as sim, event_sink(amqp_url, group, ALL_DISPATCHES) as sink:
        config = gateway_config(sim, amqp_url, group, events=ALL_DISPATCHES)
        async with running_gateway(config, group) as service:
            await wait_ready(service)
            control = Control(http, sim.base_url)
            flood = asyncio.create_task(
                control.post("/flood", {"count": count, "rate": 3000, "wait": True})
            )
            shard = service.shards[0]
            await wait_until(lambda: shard.sink.resume_seq > 600, timeout=20)
            await control.post("/shards/0/drop")
            flooded = await asyncio.wait_for(flood, 60)
            # A flood stops with its connection: the rest comes only through the RESUME's replay.
            assert flooded["sent"] < count, "the drop must happen mid-flood"
            await wait_until(lambda: service.shards[0].resumes >= 1, timeout=10)
            await wait_ready(service)
            session_id, last_seq = await wait_all_relayed(control, sink)
    assert_every_seq_received(sink, session_id, last_seq)


async def test_commands_are_forwarded_and_bad_ones_dead_lettered(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    async with (
        running_simulator() as sim,
        event_sink(amqp_url, group, ["GUILD_MEMBERS_CHUNK"]) as sink,
        running_gateway(gateway_config(sim, amqp_url, group), group) as service,
    ):
        await wait_ready(service)
        guild_id = str((await Control(http, sim.base_url).get("/guilds"))[0]["id"])
        async with amqp_channel(amqp_url) as channel:

            async def send(body: bytes) -> None:
                await publish_to(amqp_url, f"{group}.commands", "shard.0", body)

            request: dict[str, Any] = {
                "op": 8,
                "d": {"guild_id": guild_id, "query": "", "limit": 0, "nonce": "n-42"},
            }
            await send(json.dumps(request).encode())
            await send(b'{"op": 2, "d": {"token": "x"}}')
            await send(json.dumps({"op": 3, "d": {"pad": "x" * 5000}}).encode())
            await wait_until(lambda: bool(sink.messages), timeout=10, what="member chunk")
            dead = await channel.declare_queue(
                f"{group}.commands.shard.0.dead", durable=True, passive=True
            )
            errors: list[str] = []
            for _ in range(100):
                message = await dead.get(no_ack=True, fail=False)
                if message is not None:
                    errors.append(str(message.headers.get("x-error")))
                if len(errors) == 2:
                    break
                await asyncio.sleep(0.05)
    chunk = json.loads(sink.messages[0].body)
    assert chunk["nonce"] == "n-42" and chunk["guild_id"] == guild_id
    assert len(errors) == 2
    assert any("opcode 2" in e for e in errors), errors
    assert any("4096" in e for e in errors), errors


async def test_health_ready_and_metrics_endpoints(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    async with (
        running_simulator() as sim,
        running_gateway(gateway_config(sim, amqp_url, group), group) as service,
    ):
        assert service.health is not None
        base = f"http://127.0.0.1:{service.health.port}"
        await wait_ready(service)
        async with http.get(base + "/healthz") as response:
            assert response.status == 200
        async with http.get(base + "/readyz") as response:
            assert response.status == 200
            details = await response.json()
        service._flush_metrics_once()
        async with http.get(base + "/metrics") as response:
            assert response.status == 200
            text = await response.text()
        await Control(http, sim.base_url).post("/shards/0/close?code=4004")
        await wait_until(lambda: not service.shards[0].is_alive, timeout=10)
        async with http.get(base + "/readyz") as response:
            assert response.status == 503
    assert "0" in json.dumps(details)
    for metric in (
        'spectacles_gateway_events_received_total{event="READY",shard="0"}',
        'spectacles_gateway_events_published_total{event="GUILD_CREATE",shard="0"}',
        'spectacles_gateway_identifies_total{shard="0"}',
        'spectacles_gateway_shard_state{shard="0",state="ready"} 1.0',
        "spectacles_gateway_confirm_latency_seconds_bucket",
        "spectacles_gateway_in_flight",
        'spectacles_gateway_heartbeat_latency_seconds{shard="0"}',
    ):
        assert metric in text, metric


async def test_relay_with_a_tiny_window_backpressures_without_loss(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    async with running_simulator() as sim, event_sink(amqp_url, group, ALL_DISPATCHES) as sink:
        config = gateway_config(
            sim, amqp_url, group, events=ALL_DISPATCHES, gateway={"max_in_flight": 4}
        )
        async with running_gateway(config, group) as service:
            await wait_ready(service)
            control = Control(http, sim.base_url)
            peak = 0

            async def watch() -> None:
                nonlocal peak
                while True:
                    assert service.publisher is not None
                    peak = max(peak, service.publisher.in_flight)
                    await asyncio.sleep(0)

            watcher = asyncio.create_task(watch())
            await control.post("/flood", {"count": 2000, "wait": True})
            session_id, last_seq = await wait_all_relayed(control, sink)
            watcher.cancel()
    assert 0 < peak <= 4
    assert_every_seq_received(sink, session_id, last_seq)
