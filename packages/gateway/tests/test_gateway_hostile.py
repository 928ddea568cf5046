"""Hostile or malformed input from the network: size bounds, undecodable payloads, headers.

The simulator only speaks well-formed Discord, so these tests run the shard against a small
aiohttp websocket server that speaks just enough of the gateway protocol (HELLO, READY or
RESUMED, then a script of payloads) to deliver what Discord never should: decompression bombs,
nesting past the recursion limit, lone surrogate escapes, hostile header values. Events go to
the real RabbitMQ; commands come from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import zstandard
from aiohttp import WSMsgType, web
from gateway_testkit import event_sink, wait_until
from structlog.testing import capture_logs

from spectacles.broker import Broker, BrokerSettings
from spectacles.broker.publisher import Publisher
from spectacles.gateway import IdentifyQueue, Shard
from spectacles.gateway import shard as shard_module
from spectacles.gateway.commands import CommandRelay
from spectacles.gateway.config import Compression, GatewaySettings
from spectacles.models import Intents

pytestmark = pytest.mark.rmq4  # also run against RabbitMQ 4 (make test-rmq4)

MiB = 1024 * 1024
PRESENCE = {"since": None, "activities": [], "status": "idle", "afk": True}


@dataclass(frozen=True)
class Bomb:
    """A MESSAGE_CREATE inflating to `size` bytes, compressed piece by piece (never held)."""

    seq: int
    size: int


@dataclass(frozen=True)
class Close:
    """Close the connection with `code`."""

    code: int


Item = bytes | Bomb | Close


def dispatch(seq: int, name: str, d: bytes) -> bytes:
    return b'{"op":0,"s":%d,"t":"%s","d":%s}' % (seq, name.encode(), d)


def ready(url: str) -> bytes:
    return dispatch(
        1, "READY", json.dumps({"session_id": "hostile-1", "resume_gateway_url": url}).encode()
    )


@dataclass
class HostileGateway:
    """Connection `i` sends HELLO, reads IDENTIFY/RESUME, then plays `scripts[i]`."""

    scripts: list[list[Item]]
    openings: list[dict[str, Any]] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)  # client frames after the opening
    url: str = ""

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        compress = request.query.get("compress", "none")
        pack = _packer(compress)
        await ws.send_bytes(pack(b'{"op":10,"d":{"heartbeat_interval":45000}}'))
        opening = await ws.receive()
        self.openings.append(json.loads(opening.data))
        index = len(self.openings) - 1
        for item in self.scripts[index] if index < len(self.scripts) else []:
            if isinstance(item, Close):
                await ws.close(code=item.code)
                return ws
            if isinstance(item, Bomb):
                await ws.send_bytes(_bomb(compress, pack, item))
            else:
                await ws.send_bytes(pack(item))
        async for message in ws:
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                data = message.data if isinstance(message.data, bytes) else message.data.encode()
                if json.loads(data).get("op") == 1:
                    await ws.send_bytes(pack(b'{"op":11}'))
                else:
                    self.received.append(data)
        return ws


class _Packer:
    """One connection's transport compression context (Discord keeps one per connection)."""

    def __init__(self, compress: str) -> None:
        self.compress = compress
        self.zlib = zlib.compressobj()
        self.zstd = zstandard.ZstdCompressor().compressobj()

    def piece(self, data: bytes) -> bytes:
        if self.compress == "zlib-stream":
            return self.zlib.compress(data)
        if self.compress == "zstd-stream":
            return self.zstd.compress(data)
        return data

    def flush(self) -> bytes:
        if self.compress == "zlib-stream":
            return self.zlib.flush(zlib.Z_SYNC_FLUSH)
        if self.compress == "zstd-stream":
            return self.zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        return b""

    def __call__(self, payload: bytes) -> bytes:
        return self.piece(payload) + self.flush()


def _packer(compress: str) -> _Packer:
    return _Packer(compress)


def _bomb(compress: str, pack: _Packer, bomb: Bomb) -> bytes:
    assert compress != "none", "a bomb needs transport compression"
    filler = b"A" * MiB
    parts = [pack.piece(b'{"op":0,"s":%d,"t":"MESSAGE_CREATE","d":{"content":"' % bomb.seq)]
    parts += [pack.piece(filler) for _ in range(bomb.size // MiB)]
    parts += [pack.piece(b'"}}'), pack.flush()]
    return b"".join(parts)


@contextlib.asynccontextmanager
async def hostile_gateway(*scripts: list[Item]) -> AsyncIterator[HostileGateway]:
    gateway = HostileGateway(list(scripts))
    app = web.Application()
    app.router.add_get("/", gateway.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    gateway.url = f"ws://127.0.0.1:{port}/"
    try:
        yield gateway
    finally:
        await runner.cleanup()


def hostile_shard(gateway: HostileGateway, publisher: Publisher, **settings: Any) -> Shard:
    return Shard(
        0,
        1,
        token="hostile-token-Zq9xV3pL7",
        intents=Intents.GUILDS,
        gateway_url=gateway.url,
        publisher=publisher,
        events=frozenset({"READY", "MESSAGE_CREATE"}),
        identify_queue=IdentifyQueue(interval=0.0),
        settings=GatewaySettings(backoff_base=0.05, backoff_max=0.1, **settings),
    )


@contextlib.asynccontextmanager
async def running(shard: Shard) -> AsyncIterator[Shard]:
    await shard.start()
    try:
        yield shard
    finally:
        await asyncio.wait_for(shard.close(), 20)


@contextlib.contextmanager
def traced_peak() -> Iterator[list[int]]:
    """The peak of Python allocations while the block runs (appended on exit)."""
    peak: list[int] = []
    tracemalloc.start()
    try:
        yield peak
    finally:
        peak.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


def _seq(message: Any) -> int:
    return int(message.headers["seq"])  # type: ignore[arg-type]


# ----------------------------------------------------------------- size bounds


@pytest.mark.parametrize("compress", ["zlib-stream", "zstd-stream"])
async def test_decompression_bomb_closes_the_connection_and_resumes_within_the_bound(
    amqp_url: str, group: str, publisher: Publisher, compress: Compression
) -> None:
    async with hostile_gateway([], []) as gateway:
        gateway.scripts[:] = [
            [ready(gateway.url), Bomb(seq=2, size=128 * MiB)],
            [dispatch(2, "RESUMED", b"{}"), dispatch(3, "MESSAGE_CREATE", b'{"content":"after"}')],
        ]
        shard = hostile_shard(gateway, publisher, compress=compress, max_payload_size=MiB)
        async with event_sink(amqp_url, group, ["MESSAGE_CREATE"]) as sink:
            with traced_peak() as peak, capture_logs() as logs:
                async with running(shard):
                    await wait_until(lambda: bool(sink.messages), timeout=30, what="next event")
                    assert shard.is_alive
    # The bomb inflated 1 MiB (+ one 256 KiB zstd chunk) at most, never its 128 MiB.
    assert peak[0] < 24 * MiB, f"peak {peak[0] / MiB:.1f} MiB"
    assert [(_seq(m), m.body) for m in sink.messages] == [(3, b'{"content":"after"}')]
    assert [o["op"] for o in gateway.openings] == [2, 6]
    assert gateway.openings[1]["d"]["seq"] == 1  # the bomb's seq 2 was never confirmed
    assert shard.reconnects["transport"] == 1 and shard.resumes == 1
    (refusal,) = [e for e in logs if e["log_level"] == "error"]
    assert refusal["event"] == "gateway payload over the size limit; closing the connection"
    assert refusal["shard_id"] == 0 and "gateway.max_payload_size" in refusal["error"]


async def test_websocket_message_over_the_bound_is_refused_and_the_shard_resumes(
    amqp_url: str, group: str, publisher: Publisher
) -> None:
    big = b'{"content":"' + b"B" * (2 * MiB) + b'"}'
    async with hostile_gateway([], []) as gateway:
        gateway.scripts[:] = [
            [ready(gateway.url), dispatch(2, "MESSAGE_CREATE", big)],
            [dispatch(2, "RESUMED", b"{}"), dispatch(3, "MESSAGE_CREATE", b'{"content":"after"}')],
        ]
        shard = hostile_shard(gateway, publisher, compress="none", max_message_size=MiB)
        async with event_sink(amqp_url, group, ["MESSAGE_CREATE"]) as sink, running(shard):
            await wait_until(lambda: bool(sink.messages), timeout=30, what="next event")
    assert [_seq(m) for m in sink.messages] == [3]
    assert [o["op"] for o in gateway.openings] == [2, 6]
    assert gateway.openings[1]["d"]["seq"] == 1
    assert shard.reconnects["transport"] == 1


# ----------------------------------------------------------------- undecodable payloads


async def test_malformed_payloads_are_relayed_or_skipped_without_reconnect_or_wrong_resume_point(
    amqp_url: str, group: str, publisher: Publisher
) -> None:
    nested = b'{"guild_id":"7","x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    surrogate = b'{"guild_id":"8","content":"lone \\ud800 half"}'
    long_id = b'{"guild_id":"' + b"9" * 100_000 + b'"}'
    huge_id = b'{"guild_id":' + b"1" * 30 + b"}"
    normal = b'{"guild_id":"42","content":"normal"}'
    async with hostile_gateway([], []) as gateway:
        gateway.scripts[:] = [
            [
                ready(gateway.url),
                dispatch(2, "MESSAGE_CREATE", nested),
                dispatch(3, "MESSAGE_CREATE", surrogate),
                b'{"op":0,"s":4,"t":"MESSAGE_CR',  # cannot be read at all: skipped
                b'{"op":0,"s":18446744073709551616,"t":"MESSAGE_CREATE","d":{}}',  # seq > int64
                dispatch(4, "MESSAGE_CREATE", long_id),
                dispatch(5, "MESSAGE_CREATE", huge_id),
                dispatch(6, "MESSAGE_CREATE", normal),
                Close(4000),  # resumable: the RESUME must carry the last confirmed seq
            ],
            [dispatch(7, "RESUMED", b"{}")],
        ]
        shard = hostile_shard(gateway, publisher, compress="zlib-stream")
        async with event_sink(amqp_url, group, ["MESSAGE_CREATE"]) as sink, running(shard):
            await wait_until(lambda: len(sink.messages) >= 5, timeout=30, what="5 events")
            await wait_until(lambda: shard.resumes == 1 and shard.is_ready, timeout=30)
    relayed = {_seq(m): (m.body, m.headers.get("guild_id")) for m in sink.messages}
    assert relayed == {
        2: (nested, "7"),
        3: (surrogate, "8"),
        4: (long_id, None),
        5: (huge_id, None),
        6: (normal, "42"),
    }
    assert shard.malformed == {"relayed": 2, "skipped": 2}
    assert [o["op"] for o in gateway.openings] == [2, 6]
    assert gateway.openings[1]["d"]["seq"] == 6  # past every relayed event, nothing skipped
    # Nothing looped: the only reconnect is the server's close, none for a payload.
    assert dict(shard.reconnects) == {"close_4000": 1}


# ----------------------------------------------------------------- commands


def _first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a parser that keeps the first of duplicate keys reads it."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        result.setdefault(key, value)
    return result


async def test_commands_reach_discord_as_validated_never_as_received(
    amqp_url: str, group: str, publisher: Publisher
) -> None:
    presence = json.dumps(PRESENCE).encode()
    smuggled = b'{"op": 6, "d": %s, "op": 3}' % presence  # validated as op 3; op 6 read first
    plain_resume = b'{"op": 3, "d": %s, "op": 6}' % presence  # an op 6: refused
    duplicate_d = b'{"op": 3, "d": {"token": "x"}, "d": %s}' % presence
    oversize = json.dumps({"op": 3, "d": {**PRESENCE, "pad": "x" * 5000}}).encode()
    async with hostile_gateway([]) as gateway:
        gateway.scripts[:] = [[ready(gateway.url)]]
        shard = hostile_shard(gateway, publisher, compress="none")
        await publisher.declare_events_exchange()  # READY is relayed
        broker = await Broker.connect(BrokerSettings(amqp_url=amqp_url, group=group))
        relay = CommandRelay(broker, {0: shard})
        try:
            async with running(shard):
                await shard.wait_ready(20)
                await relay.start()
                for body in (smuggled, plain_resume, oversize, duplicate_d):
                    await publisher.publish("shard.0", body, exchange=f"{group}.commands")
                inspect = await broker.channel()
                dead = await inspect.declare_queue(
                    f"{group}.commands.shard.0.dead", durable=True, passive=True
                )
                errors: list[str] = []

                async def dead_lettered() -> None:
                    while len(errors) < 2:
                        message = await dead.get(no_ack=True, fail=False)
                        if message is None:
                            await asyncio.sleep(0.05)
                        else:
                            errors.append(str(message.headers.get("x-error")))

                await asyncio.wait_for(dead_lettered(), 20)
                await wait_until(lambda: len(gateway.received) >= 2, timeout=20, what="2 sent")
        finally:
            await relay.stop()
            await broker.close()
    expected = {"op": 3, "d": PRESENCE}
    assert len(gateway.received) == 2
    for sent in gateway.received:
        assert json.loads(sent) == expected
        assert json.loads(sent, object_pairs_hook=_first_wins) == expected
    assert any("opcode 6 (RESUME)" in e for e in errors), errors
    assert any("4096" in e for e in errors), errors


async def test_ready_with_an_unusable_session_id_is_a_failed_connection_not_a_crash(
    amqp_url: str, group: str, publisher: Publisher
) -> None:
    async with hostile_gateway([], []) as gateway:
        bad_ready = dispatch(
            1,
            "READY",
            json.dumps({"session_id": "s" * 300, "resume_gateway_url": gateway.url}).encode(),
        )
        gateway.scripts[:] = [
            [bad_ready, dispatch(2, "MESSAGE_CREATE", b'{"content":"lost with the session"}')],
            [ready(gateway.url), dispatch(2, "MESSAGE_CREATE", b'{"content":"after"}')],
        ]
        shard = hostile_shard(gateway, publisher, compress="none")
        async with event_sink(amqp_url, group, ["MESSAGE_CREATE"]) as sink, running(shard):
            await wait_until(lambda: bool(sink.messages), timeout=30, what="next event")
            assert shard.is_alive
    assert [(m.message_id, m.body) for m in sink.messages] == [
        ("0:hostile-1:2", b'{"content":"after"}')
    ]
    assert [o["op"] for o in gateway.openings] == [2, 2]  # no session to resume: IDENTIFY
    assert shard.reconnects["transport"] == 1


async def test_endless_distinct_event_names_do_not_grow_the_event_counters(
    amqp_url: str, group: str, publisher: Publisher
) -> None:
    names = [f"HOSTILE_{i}" for i in range(600)] + ["X" * 100_000]
    async with hostile_gateway([]) as gateway:
        script: list[Item] = [ready(gateway.url)]
        script += [dispatch(seq, name, b"{}") for seq, name in enumerate(names, start=2)]
        script.append(dispatch(len(names) + 2, "MESSAGE_CREATE", b'{"content":"after"}'))
        gateway.scripts[:] = [script]
        shard = hostile_shard(gateway, publisher, compress="zstd-stream")
        async with event_sink(amqp_url, group, ["MESSAGE_CREATE"]) as sink, running(shard):
            await wait_until(lambda: bool(sink.messages), timeout=30, what="next event")
    # READY and 511 hostile names fill the table; the relayed MESSAGE_CREATE is always counted.
    assert len(shard.received) == shard_module.MAX_EVENT_NAMES + 2
    assert shard.received[shard_module.OTHER_EVENTS] == len(names) - 511
    assert shard.received["READY"] == shard.received["MESSAGE_CREATE"] == 1
    assert not shard.reconnects
