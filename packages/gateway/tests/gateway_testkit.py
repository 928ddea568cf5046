"""Helpers for gateway tests: a simulator with fast timings, a gateway config, an event sink.

Imported by the test modules (conftest.py puts this folder on sys.path) and, for the fixtures,
re-exported by conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from spectacles.broker.broker import Broker
from spectacles.broker.publisher import Publisher
from spectacles.broker.settings import BrokerSettings
from spectacles.gateway import (
    GatewayConfig,
    GatewayService,
    IdentifyQueue,
    Shard,
    parse_config,
)
from spectacles.gateway.config import GatewaySettings
from spectacles.gateway.fatal_block import fatal_block_queue_name, token_fingerprint
from spectacles.gateway.identify_lock import quota_queue_name
from spectacles.gateway.session_store import session_queue_name
from spectacles.models import Intents
from spectacles.simulator import Simulator, SimulatorConfig

TOKEN = "sim-token-Zq9xV3pL7"
INTENTS = ["GUILDS", "GUILD_MEMBERS", "GUILD_MESSAGES", "MESSAGE_CONTENT"]
EVENTS = ["READY", "GUILD_CREATE", "MESSAGE_CREATE", "GUILD_MEMBERS_CHUNK"]

#: How to run rabbitmqctl; e.g. RABBITMQCTL="docker compose exec -T rabbit rabbitmqctl" when the
#: broker under test runs in a container.
RABBITMQCTL = shlex.split(os.environ.get("RABBITMQCTL", "rabbitmqctl"))


def sim_config(**overrides: Any) -> SimulatorConfig:
    base = SimulatorConfig(
        token=TOKEN,
        guilds=2,
        members_per_guild=5,
        shards=1,
        identify_interval=0.2,
        heartbeat_interval_ms=1000,
        session_ttl=60.0,
    )
    return replace(base, **overrides)


@contextlib.asynccontextmanager
async def running_simulator(**overrides: Any) -> AsyncIterator[Simulator]:
    async with Simulator(sim_config(**overrides), host="127.0.0.1", port=0) as sim:
        yield sim


def gateway_config(
    sim: Simulator, amqp_url: str, group: str, *, env: dict[str, str] | None = None, **tables: Any
) -> GatewayConfig:
    data: dict[str, Any] = {
        "token": TOKEN,
        "events": EVENTS,
        "intents": INTENTS,
        "broker": {"group": group},
        "amqp": {"url": amqp_url},
        "gateway": {
            "api_url": sim.api_url,
            "identify_interval": 0.2,
            "invalid_session_delay": [0.05, 0.1],
            "backoff_base": 0.05,
            "backoff_max": 0.5,
        },
        "metrics": {"address": "127.0.0.1:0"},
        "session_store": {"type": "none"},
    }
    for table, values in tables.items():
        if isinstance(values, dict):
            data[table] = {**data.get(table, {}), **values}
        else:
            data[table] = values
    return parse_config(data, env or {})


@contextlib.asynccontextmanager
async def running_gateway(config: GatewayConfig, name: str) -> AsyncIterator[GatewayService]:
    service = GatewayService(config, connection_name=name)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def wait_until(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        await asyncio.sleep(0.02)


async def wait_ready(service: GatewayService, timeout: float = 10.0) -> None:
    await asyncio.gather(*(s.wait_ready(timeout) for s in service.shards.values()))


class Control:
    """The simulator's control API."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._http = session
        self._base = base_url + "/_sim"

    async def get(self, path: str) -> Any:
        async with self._http.get(self._base + path) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self._http.post(self._base + path, json=body or {}) as response:
            assert response.status < 300, await response.text()
            return await response.json()

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.get("/stats")
        return result


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@contextlib.asynccontextmanager
async def amqp_channel(amqp_url: str, name: str = "gateway-tests") -> AsyncIterator[Any]:
    """A channel on a `spectacles.broker.Broker` connection of its own, to look into RabbitMQ."""
    broker = await Broker.connect(
        BrokerSettings(amqp_url=amqp_url, group="gateway-tests"), connection_name=name
    )
    try:
        yield await broker.channel()
    finally:
        await broker.close()


def refused(error: BaseException, reply: str) -> bool:
    """Whether `error` is RabbitMQ closing the channel with `reply` (NOT_FOUND, ...)."""
    return reply in str(error)


async def queue_state(amqp_url: str, name: str) -> str:
    """`missing`, `exists`, or `locked` (exclusive to another connection)."""
    async with amqp_channel(amqp_url) as channel:
        try:
            await channel.declare_queue(name, passive=True)
        except Exception as exc:
            for reply, state in (("NOT_FOUND", "missing"), ("RESOURCE_LOCKED", "locked")):
                if refused(exc, reply):
                    return state
            raise
        return "exists"


async def publish_to(amqp_url: str, exchange: str, routing_key: str, body: bytes) -> None:
    """Publish one message (confirmed) with the broker's publisher."""
    settings = BrokerSettings(amqp_url=amqp_url, group="gateway-tests")
    async with await Publisher.connect(settings) as publisher:
        await publisher.publish(routing_key, body, exchange=exchange)


class EventSink:
    """A test consumer: one exclusive queue bound to the events exchange for `events`."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        # The highest seq received per session id, kept as messages come: `wait_all_relayed`
        # polls it, and a scan of 100,000 messages every 20 ms would starve this very consumer.
        self.max_seq: dict[str, int] = {}

    async def _on_message(self, message: Any) -> None:
        self.messages.append(message)
        if message.message_id is not None and "seq" in message.headers:
            session_id = message.message_id.split(":")[1]
            seq = message.headers["seq"]
            if seq > self.max_seq.get(session_id, 0):
                self.max_seq[session_id] = seq
        await message.ack()

    def of(self, event: str) -> list[Any]:
        return [m for m in self.messages if m.routing_key == event]

    def ids(self, event: str) -> set[str]:
        return {m.message_id for m in self.of(event) if m.message_id is not None}


@contextlib.asynccontextmanager
async def event_sink(amqp_url: str, group: str, events: list[str]) -> AsyncIterator[EventSink]:
    async with amqp_channel(amqp_url, f"test-sink:{group}") as channel:
        await channel.set_qos(prefetch_count=2000)
        exchange = await channel.declare_exchange(group, "direct", durable=True)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for event in events:
            await queue.bind(exchange, routing_key=event)
        sink = EventSink()
        await queue.consume(sink._on_message)
        yield sink


async def cleanup_broker(amqp_url: str, group: str, shards: int = 4) -> None:
    async with amqp_channel(amqp_url) as channel:
        for shard_id in range(shards):
            for queue in (
                f"{group}.commands.shard.{shard_id}",
                f"{group}.commands.shard.{shard_id}.dead",
                session_queue_name(group, shard_id),
            ):
                await channel.queue_delete(queue)
        await channel.queue_delete(f"{group}.oversize")
        await channel.queue_delete(f"{group}.unrouted")
        # Every gateway start reads the token's fatal-close block and spends from its quota.
        for queue in (
            fatal_block_queue_name(group, token_fingerprint(TOKEN)),
            quota_queue_name(group, token_fingerprint(TOKEN)),
        ):
            await channel.queue_delete(queue)
        for exchange in (group, f"{group}.commands", f"{group}.dlx"):
            await channel.exchange_delete(exchange)


@pytest.fixture
async def group(amqp_url: str, unique_name: str) -> AsyncIterator[str]:
    name = re.sub(r"[^A-Za-z0-9_.:-]", "-", unique_name)
    yield name
    await cleanup_broker(amqp_url, name)


def connections_named(prefix: str) -> list[str]:
    """Pids of the RabbitMQ connections whose client-given name starts with `prefix`."""
    listing = subprocess.run(
        [*RABBITMQCTL, "list_connections", "-q", "--no-table-headers", "pid", "client_properties"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return [
        line.split("\t", 1)[0]
        for line in listing.splitlines()
        if f'{{"connection_name","{prefix}' in line
    ]


def close_connections(pids: list[str]) -> None:
    """Close those connections server side, as a RabbitMQ restart or a network cut would.

    Only this test's connections: `rabbitmqctl close_all_connections` would hit other tests
    running on the same broker. All of them in one `rabbitmqctl eval` (no management plugin
    needed): each rabbitmqctl call starts an Erlang VM (seconds through `docker exec` on a busy
    machine), so one `close_connection` per pid spread the outage over seconds, one connection
    after the other. Fails, as `close_connection` does, when one of them is already gone.
    """
    if not pids:
        return
    listed = ",".join(f'"{pid}"' for pid in pids)
    close = 'rabbit_networking:close_connection(rabbit_misc:string_to_pid(P), "test: outage")'
    result = subprocess.run(
        [*RABBITMQCTL, "-q", "eval", f"[{close} || P <- [{listed}]]."],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.strip() == "[" + ",".join(["ok"] * len(pids)) + "]", result


class TcpProxy:
    """A TCP proxy in front of RabbitMQ whose connections a test can cut and refuse at will."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.refusing = False
        self.port = 0
        self._downstream = asyncio.Event()  # set: RabbitMQ -> client bytes flow
        self._downstream.set()

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def stall(self) -> None:
        """Stop passing RabbitMQ's bytes (confirms) to the client; its publishes pile up."""
        self._downstream.clear()

    def resume(self) -> None:
        """Pass RabbitMQ's bytes again after `stall`."""
        self._downstream.set()

    def cut(self) -> None:
        """Drop every proxied connection at once (no AMQP close: like a network failure)."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        self._downstream.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for source, sink, gate in ((reader, up_writer, None), (up_reader, writer, True)):
            task = asyncio.create_task(self._pump(source, sink, gate is not None))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, gated: bool
    ) -> None:
        try:
            while data := await source.read(65536):
                if gated:
                    await self._downstream.wait()
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sink.transport.abort()
            self._writers.discard(sink)


ALL_DISPATCHES = ["READY", "RESUMED", "GUILD_CREATE", "MESSAGE_CREATE"]


async def session_seq(control: Control, shard_id: int = 0) -> tuple[str, int]:
    sessions = await control.get("/sessions")
    (session,) = [s for s in sessions if s["shard"][0] == shard_id]
    return session["session_id"], session["seq"]


def max_seq(sink: EventSink, session_id: str) -> int:
    return sink.max_seq.get(session_id, 0)


async def wait_all_relayed(control: Control, sink: EventSink) -> tuple[str, int]:
    """Once the flood is over: wait until the session's last seq reached the sink."""
    session_id, last_seq = await session_seq(control)
    await wait_until(
        lambda: max_seq(sink, session_id) >= last_seq, timeout=60, what=f"seq {last_seq}"
    )
    return session_id, last_seq


def assert_every_seq_received(sink: EventSink, session_id: str, last_seq: int) -> None:
    """Every dispatch the simulator numbered in this session reached RabbitMQ (dups allowed)."""
    seqs = {
        m.headers["seq"]
        for m in sink.messages
        if m.message_id is not None and m.message_id.split(":")[1] == session_id
    }
    missing = set(range(1, last_seq + 1)) - seqs
    assert not missing, f"{len(missing)} events lost, e.g. seqs {sorted(missing)[:10]}"
    # Duplicates (replays) must carry the same message_id as the original.
    by_id: dict[str, bytes] = {}
    for m in sink.messages:
        assert by_id.setdefault(m.message_id or "", m.body) == m.body


@pytest.fixture
async def publisher(amqp_url: str, group: str) -> AsyncIterator[Publisher]:
    """A real confirm publisher on the test's group, for shards driven directly by a test."""
    publisher = await Publisher.connect(BrokerSettings(amqp_url=amqp_url, group=group))
    try:
        yield publisher
    finally:
        await publisher.close()


def make_shard(url: str, publisher: Publisher) -> Shard:
    """Shard 0 of 1 against ``url`` with fast backoff and no compression, for lifecycle tests."""
    return Shard(
        0,
        1,
        token="sim-token-Zq9xV3pL7",
        intents=Intents.GUILDS,
        gateway_url=url,
        publisher=publisher,
        events=frozenset({"READY"}),
        identify_queue=IdentifyQueue(interval=0.0),
        settings=GatewaySettings(backoff_base=0.05, backoff_max=0.1, compress="none"),
    )
