"""RabbitMQ refusing events: no RESUME storm, no healthy shard bounced, nothing lost or wedged.

Real RabbitMQ and the simulator. Refusals come from the broker itself: a full `reject-publish`
queue (nack), a deleted events exchange (404), an event over `max_message_size` (406), and a
resource alarm (`connection.blocked`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from gateway_testkit import (
    ALL_DISPATCHES,
    RABBITMQCTL,
    Control,
    EventSink,
    TcpProxy,
    amqp_channel,
    event_sink,
    gateway_config,
    running_gateway,
    running_simulator,
    session_seq,
    wait_ready,
    wait_until,
)
from structlog.testing import capture_logs

from spectacles.gateway import GatewayService
from spectacles.gateway.relay import Relay
from spectacles.simulator import Simulator

pytestmark = pytest.mark.rmq4  # also run against RabbitMQ 4 (make test-rmq4)

MiB = 1024 * 1024


def rabbitmqctl(*args: str) -> str:
    return subprocess.run(
        [*RABBITMQCTL, *args], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()


async def rabbitmqctl_async(*args: str) -> str:
    """rabbitmqctl off the event loop (it takes seconds; heartbeats must go on meanwhile)."""
    return await asyncio.to_thread(rabbitmqctl, *args)


@contextlib.asynccontextmanager
async def broker_size_limit(small: int) -> AsyncIterator[int]:
    """The max_message_size RabbitMQ enforces on publisher connections opened in the block.

    RabbitMQ 4 reads the limit (a persistent term) at every publish: its own value (default
    16 MiB) is used as it is, since changing it would hit every user of a shared broker. RabbitMQ
    3.x reads it when a channel opens (default 128 MiB): it is lowered to `small` for the block
    only, and restored whatever happens.
    """
    term = await rabbitmqctl_async("eval", "persistent_term:get(max_message_size, none).")
    if term.isdigit():
        yield int(term)
        return
    current = re.fullmatch(
        r"\{ok,(\d+)\}",
        await rabbitmqctl_async("eval", "application:get_env(rabbit, max_message_size)."),
    )
    assert current is not None, "cannot read RabbitMQ's max_message_size"
    await rabbitmqctl_async("eval", f"application:set_env(rabbit, max_message_size, {small}).")
    try:
        yield small
    finally:
        await asyncio.shield(
            rabbitmqctl_async(
                "eval", f"application:set_env(rabbit, max_message_size, {current.group(1)})."
            )
        )


@contextlib.asynccontextmanager
async def memory_alarm() -> AsyncIterator[None]:
    """Raise RabbitMQ's memory alarm (every publishing connection is blocked), then restore it."""
    watermark = await rabbitmqctl_async("eval", "vm_memory_monitor:get_vm_memory_high_watermark().")
    absolute = re.fullmatch(r"\{absolute,(\d+)\}", watermark)
    restore = ["absolute", absolute.group(1)] if absolute else [watermark]
    float(restore[-1])  # refuse to go on when the current value cannot be restored
    try:
        await rabbitmqctl_async("set_vm_memory_high_watermark", "absolute", "1")
        yield
    finally:
        # Not cancellable half-way: the broker must get its watermark back.
        await asyncio.shield(rabbitmqctl_async("set_vm_memory_high_watermark", *restore))


def seqs_of(messages: list[Any], session_id: str) -> set[int]:
    return {
        int(m.headers["seq"])  # type: ignore[arg-type]
        for m in messages
        if m.message_id is not None and m.message_id.split(":")[1] == session_id
    }


def missing_seqs(sink: EventSink, session_id: str, last_seq: int, *, besides: set[int]) -> set[int]:
    return set(range(1, last_seq + 1)) - seqs_of(sink.messages, session_id) - besides


def big_message(size: int) -> bytes:
    message = {"id": "1", "channel_id": "2", "guild_id": "3", "content": ""}
    padding = size - len(json.dumps(message))
    message["content"] = "x" * padding
    return json.dumps(message).encode()


def deliver(sim: Simulator, shard_id: int, event: str, data: bytes) -> int:
    """Send one dispatch straight to a shard's session (a test hook); its seq."""
    (session,) = [s for s in sim.hub.sessions.values() if s.shard_id == shard_id]
    sim.hub.deliver(session, event, data)
    return session.seq


@contextlib.asynccontextmanager
async def channel(amqp_url: str) -> AsyncIterator[Any]:
    async with amqp_channel(amqp_url) as ch:
        yield ch


async def oversize_records(amqp_url: str, group: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    async with channel(amqp_url) as ch:
        queue = await ch.declare_queue(f"{group}.oversize", passive=True)
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            records.append(json.loads(message.body))
    return records


# ----------------------------------------------------------------------------------- nacks


async def test_relay_when_reject_publish_queue_full_backs_off_and_loses_nothing(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    """A full `reject-publish` queue nacks: the shard RESUMEs with backoff, not in a loop."""
    full = f"{group}.full"
    window = 30.0
    async with running_simulator() as sim, channel(amqp_url) as ch:
        exchange = await ch.declare_exchange(group, "direct", durable=True)
        queue = await ch.declare_queue(
            full, arguments={"x-max-length": 20, "x-overflow": "reject-publish"}
        )
        try:
            await queue.bind(exchange, routing_key="MESSAGE_CREATE")
            # The production backoff (1 s doubling up to 60 s), not the testkit's fast one.
            config = gateway_config(
                sim, amqp_url, group, gateway={"backoff_base": 1.0, "backoff_max": 60.0}
            )
            async with running_gateway(config, group) as service:
                await wait_ready(service)
                control = Control(http, sim.base_url)
                resumes_before = (await control.stats())["resumes"]
                await control.post("/flood", {"count": 200, "rate": 1000, "wait": True})
                await asyncio.sleep(window)  # the queue stays full for the whole window
                resumes = (await control.stats())["resumes"] - resumes_before
                assert 1 <= resumes <= window / 60 * 10, f"{resumes} RESUMEs in {window:g}s"
                assert service.shards[0].reconnects["broker_refused"] >= 1
                await wait_until(
                    lambda: "reasons" in service.readiness()[1], timeout=20, what="a refusal"
                )
                (reason,) = service.readiness()[1]["reasons"]
                assert reason.startswith("shard 0: broker refused publish: RabbitMQ nacked")
                # Drain the queue: every flooded event arrives in it, none was dropped. (The
                # simulator floods live connections only, so it numbered fewer than 200.)
                flooded = (await control.stats())["flood_sent"]
                assert flooded > 20, "the flood must overflow the queue"
                received: set[str] = set()
                async with asyncio.timeout(120):
                    async with queue.iterator() as messages:
                        async for message in messages:
                            received.add(message.message_id or "")
                            await message.ack()
                            if len(received) == flooded:
                                break
                assert len(received) == flooded
                assert service.shards[0].identifies == 1
        finally:
            await ch.queue_delete(full)


# ----------------------------------------------------------------------------------- 404


async def unrouted_messages(amqp_url: str, group: str) -> list[Any]:
    found: list[Any] = []
    async with channel(amqp_url) as ch:
        queue = await ch.declare_queue(f"{group}.unrouted", passive=True)
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            found.append(message)
    return found


async def test_relay_when_events_exchange_deleted_mid_flood_declares_it_again_and_loses_nothing(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    """404: the exchange is declared again; events no queue is bound for wait in .unrouted."""
    async with (
        running_simulator() as sim,
        event_sink(amqp_url, group, ALL_DISPATCHES) as sink,
        channel(amqp_url) as ch,
    ):
        config = gateway_config(sim, amqp_url, group, events=ALL_DISPATCHES)
        async with running_gateway(config, group) as service:
            await wait_ready(service)
            shard = service.shards[0]
            publisher = service.publisher
            assert publisher is not None
            control = Control(http, sim.base_url)
            flood = asyncio.create_task(
                control.post("/flood", {"count": 5000, "rate": 1000, "wait": True})
            )
            await wait_until(lambda: len(sink.of("MESSAGE_CREATE")) > 500, timeout=30)
            # Deleting it also drops the sink's binding: what follows reaches no queue.
            await ch.exchange_delete(group)
            relayed_before = len(sink.of("MESSAGE_CREATE"))
            await asyncio.wait_for(flood, 60)
            session_id, last_seq = await session_seq(control)
            await wait_until(
                lambda: shard.session is not None and shard.session.seq >= last_seq,
                timeout=60,
                what="every event confirmed",
            )
            assert relayed_before < 5000, "the exchange must go mid-flood"
            assert shard.resumes == 0 and not shard.reconnects, "the shard was bounced"
            await ch.get_exchange(group, ensure=True)  # declared again
            unrouted_count = publisher.unrouted["MESSAGE_CREATE"]
            assert unrouted_count > 0
    kept = await unrouted_messages(amqp_url, group)
    assert len(kept) >= unrouted_count
    assert {m.type for m in kept} <= set(ALL_DISPATCHES)
    received = seqs_of(sink.messages, session_id) | seqs_of(kept, session_id)
    lost = set(range(1, last_seq + 1)) - received
    assert not lost, f"{len(lost)} events lost, e.g. {sorted(lost)[:10]}"


# ----------------------------------------------------------------------------------- oversize


async def test_relay_when_event_over_max_event_size_stores_a_record_and_moves_on(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    async with (
        # Inflating and copying 17 MiB takes a while on a loaded machine: no 1 s heartbeat.
        running_simulator(heartbeat_interval_ms=15000) as sim,
        event_sink(amqp_url, group, ALL_DISPATCHES) as sink,
    ):
        config = gateway_config(sim, amqp_url, group, events=ALL_DISPATCHES)
        with capture_logs() as logs:
            async with running_gateway(config, group) as service:
                await wait_ready(service)
                shard = service.shards[0]
                big_seq = deliver(sim, 0, "MESSAGE_CREATE", big_message(17 * MiB))
                control = Control(http, sim.base_url)
                await control.post("/flood", {"count": 50, "wait": True})
                session_id, last_seq = await session_seq(control)
                await wait_until(
                    lambda: not missing_seqs(sink, session_id, last_seq, besides={big_seq}),
                    timeout=60,
                    what="every event after the oversized one",
                )
                await wait_until(
                    lambda: shard.session is not None and shard.session.seq >= last_seq
                )
                assert shard.resumes == 0 and not shard.reconnects
                assert isinstance(shard.sink, Relay) and shard.sink.oversize == {
                    "MESSAGE_CREATE": 1
                }
    assert big_seq not in seqs_of(sink.messages, session_id)
    (record,) = await oversize_records(amqp_url, group)
    assert record["seq"] == big_seq and record["event"] == "MESSAGE_CREATE"
    assert record["size"] > 17 * MiB - 100 and record["limit"] == 16 * MiB
    assert record["message_id"] == f"0:{session_id}:{big_seq}"
    (line,) = [e for e in logs if e["event"].startswith("event too large")]
    assert (line["shard_id"], line["seq"], line["dispatch"]) == (0, big_seq, "MESSAGE_CREATE")
    assert line["limit"] == 16 * MiB and "gateway.max_event_size" in line["fix"]


async def test_relay_when_broker_refuses_one_shards_event_as_too_large_other_shard_stays_up(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    """The 406 closes the channel both shards publish on; only the offending event is set aside.

    RabbitMQ's answers are held back (a stalled proxy) from before the large event is written
    until the other shard wrote 100 more: those are unconfirmed on the channel the 406 closes.
    """
    target = urlsplit(amqp_url)
    async with (
        TcpProxy(target.hostname or "localhost", target.port or 5672) as proxy,
        running_simulator(shards=2, heartbeat_interval_ms=15000) as sim,
        event_sink(amqp_url, group, ALL_DISPATCHES) as sink,
    ):
        proxied = target._replace(
            netloc=f"{target.netloc.rsplit('@', 1)[0]}@127.0.0.1:{proxy.port}"
        ).geturl()
        # The gateway's own limit is above the broker's, so the broker is the one refusing.
        config = gateway_config(
            sim,
            proxied,
            group,
            events=ALL_DISPATCHES,
            shards={"count": 2},
            gateway={"max_event_size": 64 * MiB, "max_in_flight": 100_000},
        )
        logs = capture_logs()
        captured = logs.__enter__()
        async with broker_size_limit(MiB) as limit:
            service = GatewayService(config, connection_name=group)
            await service.start()
        try:
            await wait_ready(service)
            offender, other = service.shards[0], service.shards[1]
            control = Control(http, sim.base_url)
            flood = asyncio.create_task(
                control.post("/flood", {"count": 8000, "rate": 1000, "wait": True})
            )
            await wait_until(lambda: len(sink.of("MESSAGE_CREATE")) > 500, timeout=30)
            proxy.stall()
            big_seq = deliver(sim, 0, "MESSAGE_CREATE", big_message(limit + MiB))
            await wait_until(lambda: sum(offender.received.values()) >= big_seq, timeout=30)
            after = other.received["MESSAGE_CREATE"] + 100
            await wait_until(lambda: other.received["MESSAGE_CREATE"] >= after, timeout=30)
            proxy.resume()
            await asyncio.wait_for(flood, 60)
            sessions = {i: await session_seq(control, i) for i in (0, 1)}
            for shard_id, (session_id, last_seq) in sessions.items():
                besides = {big_seq} if shard_id == 0 else set()
                await wait_until(
                    lambda s=session_id, n=last_seq, b=besides: (
                        not missing_seqs(sink, s, n, besides=b)
                    ),
                    timeout=60,
                    what=f"every event of shard {shard_id}",
                )
            assert other.resumes == 0 and not other.reconnects, "the healthy shard was bounced"
            assert offender.resumes == 0 and not offender.reconnects
            assert isinstance(offender.sink, Relay)
            assert offender.sink.oversize == {"MESSAGE_CREATE": 1}
        finally:
            await service.stop()
            logs.__exit__(None, None, None)
    (reopened,) = [e for e in captured if e["event"].endswith("channel; reopened it")]
    assert reopened["written_again"] >= 100, "the other shard's publishes were not in flight"
    assert reopened["failed"] == 1
    (record,) = await oversize_records(amqp_url, group)
    assert record["seq"] == big_seq and record["limit"] == limit
    assert record["limited_by"] == "RabbitMQ's max_message_size"


# ----------------------------------------------------------------------------------- blocked


async def test_relay_when_rabbitmq_blocks_publishing_pauses_without_cycling_shards(
    amqp_url: str, group: str, http: aiohttp.ClientSession
) -> None:
    """connection.blocked: stop reading Discord (heartbeats go on) until unblocked; no RESUME."""
    async with (
        running_simulator() as sim,
        event_sink(amqp_url, group, ALL_DISPATCHES) as sink,
    ):
        config = gateway_config(sim, amqp_url, group, events=ALL_DISPATCHES)
        async with running_gateway(config, group) as service:
            await wait_ready(service)
            publisher = service.publisher
            assert publisher is not None
            shard = service.shards[0]
            control = Control(http, sim.base_url)
            await control.post("/flood", {"count": 200, "wait": True})
            async with memory_alarm():
                # RabbitMQ blocks a connection (and tells it) at its next publish.
                flood = asyncio.create_task(
                    control.post("/flood", {"count": 2000, "rate": 500, "wait": True})
                )
                await wait_until(lambda: publisher.blocked_reason is not None, timeout=30)
                heartbeats = (await control.stats())["heartbeats"]
                received: int | None = None
                # Longer than the publish timeout (10 s), after which a publish used to fail.
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 14
                while loop.time() < deadline:
                    ready, details = service.readiness()
                    assert not ready and "RabbitMQ blocked publishing" in details["reasons"][0]
                    assert shard.is_ready, f"the shard cycled: {shard.state}"
                    await asyncio.sleep(0.5)
                    if received is None:
                        received = shard.received["MESSAGE_CREATE"]
                assert (await control.stats())["heartbeats"] > heartbeats, "heartbeats stopped"
                # Backpressure: the shard stopped pulling frames while it could not publish.
                assert shard.received["MESSAGE_CREATE"] == received
            await asyncio.wait_for(flood, 120)
            session_id, last_seq = await session_seq(control)
            await wait_until(
                lambda: not missing_seqs(sink, session_id, last_seq, besides=set()),
                timeout=90,
                what="every event after the unblock",
            )
            assert service.readiness()[0]
            stats = await control.stats()
    assert shard.resumes == 0 and not shard.reconnects
    assert stats["identifies"] == 1 and stats["resumes"] == 0
