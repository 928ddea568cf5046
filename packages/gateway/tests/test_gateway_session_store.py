"""The session stores: RabbitMQ against the real broker, the file store on a real disk."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from gateway_testkit import close_connections, connections_named, refused, wait_until

from spectacles.broker.broker import Broker
from spectacles.broker.settings import BrokerSettings
from spectacles.gateway import AmqpSessionStore, FileSessionStore, SessionState, session_queue_name

# Also run against RabbitMQ 4 (scripts/rabbit4.sh).
pytestmark = pytest.mark.rmq4


def state(shard_id: int, seq: int, *, saved_at: float | None = None) -> SessionState:
    return SessionState(
        shard_id=shard_id,
        shard_count=2,
        session_id=f"s{shard_id}",
        seq=seq,
        resume_gateway_url="ws://127.0.0.1:1/gateway",
        saved_at=time.time() if saved_at is None else saved_at,
    )


async def test_amqp_session_store_keeps_only_the_newest(amqp_url: str, unique_name: str) -> None:
    broker = await Broker.connect(BrokerSettings(amqp_url=amqp_url, group=unique_name))
    store = AmqpSessionStore(broker, ttl=60)
    try:
        assert await store.load(0, 2) is None
        for seq in (5, 9, 12):
            await store.save(state(0, seq))
        loaded = await store.load(0, 2)
        assert loaded is not None and loaded.seq == 12
        # Loading leaves the session in place (another host may need it after us).
        again = await store.load(0, 2)
        assert again == loaded
        assert await store.load(0, 3) is None  # another shard count
        # A second store (another host) sees the same session.
        other = AmqpSessionStore(broker, ttl=60)
        assert await other.load(0, 2) == loaded
        await other.close()
        await store.save(state(1, 3, saved_at=time.time() - 3600))
        assert await store.load(1, 2) is None  # older than the TTL
    finally:
        await store.close()
        channel = await broker.channel()
        for shard_id in (0, 1):
            await channel.queue_delete(session_queue_name(unique_name, shard_id))
        await channel.close()
        await broker.close()


async def test_amqp_session_store_message_expires(amqp_url: str, unique_name: str) -> None:
    broker = await Broker.connect(BrokerSettings(amqp_url=amqp_url, group=unique_name))
    store = AmqpSessionStore(broker, ttl=0.2)
    try:
        await store.save(state(0, 1))
        channel = await broker.channel()
        queue = await channel.get_queue(session_queue_name(unique_name, 0), ensure=False)
        await _wait_empty(queue)
        assert await store.load(0, 2) is None
        await channel.close()
    finally:
        await store.close()
        channel = await broker.channel()
        await channel.queue_delete(session_queue_name(unique_name, 0))
        await channel.close()
        await broker.close()


async def _wait_empty(queue: Any) -> None:
    for _ in range(50):
        declared = await queue.declare()
        if declared.message_count == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("session message did not expire")


async def _queue_exists(broker: Broker, name: str) -> bool:
    channel = await broker.channel()
    try:
        await channel.declare_queue(name, passive=True)
    except Exception as exc:  # 404: the passive declare closes the channel
        if refused(exc, "NOT_FOUND"):
            return False
        raise
    await channel.close()
    return True


async def test_amqp_session_store_declares_once_per_connection(amqp_url: str, group: str) -> None:
    broker = await Broker.connect(
        BrokerSettings(amqp_url=amqp_url, group=group),
        connection_name=f"{group}-store",
        reconnect_delay=0.05,
    )
    store = AmqpSessionStore(broker, ttl=60)
    name = session_queue_name(group, 0)
    try:
        await store.save(state(0, 1))
        assert await _queue_exists(broker, name)
        channel = await broker.channel()
        await channel.queue_delete(name)
        await channel.close()
        # Declared already on this connection: the next save only publishes (to nowhere now).
        await store.save(state(0, 2))
        assert not await _queue_exists(broker, name)

        pids = await asyncio.to_thread(connections_named, f"{group}-store")
        assert len(pids) == 1
        await asyncio.to_thread(close_connections, pids)
        await wait_until(lambda: broker.reconnects >= 1, timeout=15, what="broker reconnect")
        # A new connection: the queue is declared again before the save.
        await store.save(state(0, 3))
        loaded = await store.load(0, 2)
        assert loaded is not None and loaded.seq == 3
    finally:
        await store.close()
        await broker.close()


async def test_file_session_store_writes_atomically(tmp_path: Path) -> None:
    path = tmp_path / "sessions" / "s.json"
    store = FileSessionStore(path, ttl=60)
    await asyncio.gather(*(store.save(state(shard_id, seq=7)) for shard_id in range(4)))
    on_disk = msgspec.json.decode(path.read_bytes(), type=dict[str, SessionState])
    assert sorted(on_disk) == ["0", "1", "2", "3"]
    assert os.listdir(path.parent) == ["s.json"]  # no temporary file left behind
    loaded = await store.load(2, 2)
    assert loaded is not None and loaded.seq == 7


async def test_file_session_store_reads_off_the_event_loop(tmp_path: Path) -> None:
    # Opening a FIFO blocks until a writer comes. A read done on the event loop would block
    # the loop, and the writer below (a coroutine on that loop) could never run.
    path = tmp_path / "s.json"
    os.mkfifo(path)
    store = FileSessionStore(path, ttl=60)
    expected = state(0, 42)
    loading = asyncio.create_task(store.load(0, 2))

    def unblock_a_blocked_loop() -> None:  # so that a failing test fails instead of hanging
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError as exc:
            assert exc.errno == errno.ENXIO  # no reader waiting: the read already finished

    watchdog = threading.Timer(10.0, unblock_a_blocked_loop)
    watchdog.start()
    try:
        writer = await _open_fifo_writer(path)
        with os.fdopen(writer, "wb") as fh:
            fh.write(msgspec.json.encode({"0": expected}))
        loaded = await asyncio.wait_for(loading, 10)
    finally:
        watchdog.cancel()
        loading.cancel()
    assert loaded == expected


async def _open_fifo_writer(path: Path) -> int:
    for _ in range(250):
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO until a reader opened it
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
        await asyncio.sleep(0.02)
    pytest.fail("the store never opened the session file")
