"""The null relay: the cheapest relay possible here, so the bound for any relay is measured.

It holds one shard like a relay (HELLO, IDENTIFY, heartbeats) and publishes one persistent,
confirmed message per event, but does no per-event work besides that: no inflate, no JSON
decode, no message object. Websocket frame headers are parsed from raw bytes in an
``asyncio.Protocol`` (server frames are unmasked); each complete data frame becomes a pre-built
``basic.publish`` + content header + body, built once at start from ``--bodies`` (the bodies
the gateway relayed, cycled) with our gateway's properties (persistent, application/json, type,
message_id, timestamp, headers shard_id/seq/guild_id; constant per body: the consumer only
counts). Publishes are written once per socket read; confirms are tracked by delivery tag
(no future per message); with ``--window`` (1024) unconfirmed the websocket is not read (the
same backpressure as our gateway).

Which frames are events, exactly, without decoding them:

- Until READY and a GUILD_CREATE for every guild READY lists (sent together by the simulator
  right after IDENTIFY), frames are inflated and decoded; after that, never again (so the zlib
  stream cannot be read any more, and is not).
- From then on the simulator sends this session only heartbeat ACKs (one per heartbeat, sent at
  once) and the floods the harness starts. The harness floods only after ``ARM n`` was answered
  with ``ARMED``; before answering, the relay sends a heartbeat and waits until every heartbeat
  it sent was answered by a frame, and while armed it sends none. So every data frame received
  while armed is a flooded event, and the relay disarms after exactly n of them. Frames arriving
  while disarmed with no heartbeat outstanding are counted as ``stray`` (expected 0: reported).
- The simulator closes a session after 1.5 heartbeat intervals (61.9 s) without a heartbeat;
  heartbeats go out every half interval while disarmed and right before arming, so an armed
  pass may last ~60 s, far more than a pass takes (100k events in a few seconds).

Driven through stdin: prints ``READY {...}`` once the shard is ready, answers ``ARM <n>`` with
``ARMED`` and, once n frames were published and confirmed, ``DONE {"frames", "published",
"nacked", "stray", "stalls", "heartbeats", "cpu_s"}`` (this pass's counts; ``stray`` and
``heartbeats`` since start; ``stalls``: reads stopped by a full window).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import hashlib
import json
import os
import sys
import threading
import time
import urllib.request
import zlib
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from consumer import Amqp
from pamqp import body as amqp_body
from pamqp import commands, frame, header

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common.bodies import load_bodies  # bench/ is not a package: found via sys.path

INTENTS = (1 << 0) | (1 << 9) | (1 << 15)  # GUILDS, GUILD_MESSAGES, MESSAGE_CONTENT
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA
BASIC_ACK, BASIC_NACK = b"\x00\x3c\x00\x50", b"\x00\x3c\x00\x78"
CONNECTION_CLOSE, CHANNEL_CLOSE = b"\x00\x0a\x00\x32", b"\x00\x14\x00\x28"
HANDSHAKE, SETUP, IDLE, ARMED = "handshake", "setup", "idle", "armed"


def prebuilt_messages(
    exchange: str, routing_key: str, shard: int, bodies: list[bytes]
) -> list[bytes]:
    """One publish + header + body frame string per body, with our gateway's properties."""
    stamp = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    out = []
    for index, raw in enumerate(bodies):
        guild_id = json.loads(raw).get("guild_id")
        headers: dict[str, Any] = {"shard_id": shard, "seq": index + 1}
        if guild_id is not None:
            headers["guild_id"] = guild_id
        properties = commands.Basic.Properties(
            content_type="application/json",
            delivery_mode=2,
            headers=headers,
            message_id=f"{shard}:null:{index + 1}",
            timestamp=stamp,
            message_type=routing_key,
        )
        out.append(
            frame.marshal(commands.Basic.Publish(exchange=exchange, routing_key=routing_key), 1)
            + frame.marshal(header.ContentHeader(0, len(raw), properties), 1)
            + frame.marshal(amqp_body.ContentBody(raw), 1)
        )
    return out


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked, final websocket frame (clients must mask)."""
    key = os.urandom(4)
    n = len(payload)
    mask = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + key + masked


class NullRelay(asyncio.Protocol):
    """The shard's websocket: setup with inflate, then frame counting and pre-built publishes."""

    def __init__(self, args: argparse.Namespace, url: str, amqp: Amqp, messages: list[bytes]):
        self.args = args
        self.url = urlsplit(url)
        self.amqp_write = amqp.writer.write
        self.messages = messages
        self.window: int = args.window
        self.state = HANDSHAKE
        self.transport: asyncio.Transport | None = None
        self.closing = False
        self.buffer = bytearray()
        self.key = base64.b64encode(os.urandom(16))
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.failed: asyncio.Future[None] = loop.create_future()
        # setup
        self.inflate = zlib.decompressobj()
        self.fragments: list[bytes] = []
        self.heartbeat_interval = 41.25
        self.guilds_pending: set[str] | None = None
        # heartbeats (after setup every frame received while disarmed answers one)
        self.outstanding = 0
        self.heartbeats = 0
        self.last_heartbeat = 0.0
        self.settled = asyncio.Event()
        self.settled.set()
        self.stray = 0
        # armed pass
        self.target = self.count = 0
        self.cpu0 = 0.0
        self.published0 = self.nacked0 = 0
        self.stalls = 0
        self.blocked = False
        self.paused = False
        self.pass_done = asyncio.Event()
        self.pass_done.set()
        # publisher confirms: every tag <= acked_through is confirmed, plus the tags in singles
        self.published = 0
        self.acked_through = 0
        self.singles: set[int] = set()
        self.confirmed = 0
        self.nacked = 0

    # -- connection --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        path = (self.url.path or "/") + "?v=10&encoding=json&compress=zlib-stream"
        self.transport.write(
            f"GET {path} HTTP/1.1\r\nHost: {self.url.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {self.key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self._fail(ConnectionError(f"the gateway connection closed ({exc!r})"))

    def _fail(self, exc: BaseException) -> None:
        for future in (self.ready, self.failed):
            if not future.done():
                future.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            if self.state == HANDSHAKE and not self._handshake():
                return
            self._parse()
        except Exception as exc:
            self._fail(exc)

    def _handshake(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buffer[:end]).decode("latin-1")
        del self.buffer[: end + 4]
        accept = base64.b64encode(hashlib.sha1(self.key + WS_GUID).digest()).decode()
        if not head.startswith("HTTP/1.1 101") or accept not in head:
            raise ConnectionError(f"websocket upgrade refused: {head.splitlines()[0]!r}")
        self.state = SETUP
        return True

    def send(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(client_frame(opcode, payload))

    # -- frames ------------------------------------------------------------------------------

    def _parse(self) -> None:
        if self.state == ARMED:
            self._parse_armed()
        if self.state != ARMED:
            self._parse_slow()

    def _parse_armed(self) -> None:
        """The hot path: one pre-built publish per complete data frame, nothing decoded."""
        buf = self.buffer
        n = len(buf)
        pos = 0
        messages = self.messages
        k = len(messages)
        published = self.published
        limit = self.confirmed + self.window
        left = self.target - self.count
        out: list[bytes] = []
        append = out.append
        while n - pos >= 2:
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            if length == 126:
                if n - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                start = pos + 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            else:
                start = pos + 2
            end = start + length
            if end > n:
                break
            b0 = buf[pos]
            if b1 & 0x80 or b0 & 0x0F >= 8 or not b0 & 0x80:
                self._other_frame(b0, b1, bytes(buf[start:end]))  # control frame or fragment
                pos = end
                continue
            if published >= limit:
                self.blocked = True
                self.stalls += 1
                break
            append(messages[published % k])
            published += 1
            pos = end
            left -= 1
            if not left:
                break
        del buf[:pos]
        if out:
            self.amqp_write(b"".join(out))
            self.count += len(out)
            self.published = published
        if self.count == self.target:
            self.state = IDLE
            self._maybe_done()
        elif self.blocked and not self.paused:
            assert self.transport is not None
            self.transport.pause_reading()
            self.paused = True

    def _other_frame(self, b0: int, b1: int, payload: bytes) -> None:
        if b1 & 0x80:
            raise ConnectionError("the server sent a masked frame")
        opcode = b0 & 0x0F
        if opcode == PING:
            self.send(PONG, payload)
        elif opcode == CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            reason = payload[2:].decode(errors="replace")
            raise ConnectionError(f"the gateway closed the websocket: {code} {reason}")
        elif opcode < 8 and not b0 & 0x80 and self.state != ARMED:
            self.fragments.append(payload)  # armed: the final fragment alone counts the event

    def _parse_slow(self) -> None:
        """Setup and idle: whole messages, decoded during setup, counted as ACKs after."""
        buf = self.buffer
        pos = 0
        while len(buf) - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, start = b1 & 0x7F, pos + 2
            if length == 126:
                length, start = int.from_bytes(buf[pos + 2 : pos + 4], "big"), pos + 4
            elif length == 127:
                length, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            end = start + length
            if start > len(buf) or end > len(buf):
                break
            payload = bytes(buf[start:end])
            pos = end
            if b1 & 0x80 or b0 & 0x0F >= 8 or not b0 & 0x80:
                self._other_frame(b0, b1, payload)
                continue
            if self.fragments:
                payload = b"".join(self.fragments) + payload
                self.fragments.clear()
            if self.state == SETUP:
                self._setup_message(payload)
            elif self.outstanding:
                self.outstanding -= 1
                if not self.outstanding:
                    self.settled.set()
            else:
                self.stray += 1
                print(f"stray frame while disarmed ({len(payload)} bytes)", file=sys.stderr)
        del buf[:pos]

    def _setup_message(self, payload: bytes) -> None:
        message = json.loads(self.inflate.decompress(payload))
        op, event = message.get("op"), message.get("t")
        if op == 10:
            self.heartbeat_interval = message["d"]["heartbeat_interval"] / 1000
            self._identify()
        elif op == 9:  # identified too early (the simulator's identify interval): again soon
            asyncio.get_running_loop().call_later(1.0, self._identify)
        elif op == 0 and event == "READY":
            self.guilds_pending = {g["id"] for g in message["d"]["guilds"]}
        elif op == 0 and event == "GUILD_CREATE" and self.guilds_pending is not None:
            self.guilds_pending.discard(message["d"]["id"])
        elif op not in (0, 11):
            raise ConnectionError(f"unexpected op {op} during setup")
        if self.guilds_pending is not None and not self.guilds_pending:
            self.state = IDLE
            self.inflate = zlib.decompressobj()  # never used again: the stream is not read
            self.ready.set_result({"shard": self.args.shard, "bodies": len(self.messages)})

    def _identify(self) -> None:
        identify = {
            "op": 2,
            "d": {
                "token": self.args.token,
                "intents": INTENTS,
                "properties": {"os": "linux", "browser": "null-relay", "device": "null-relay"},
                "shard": [self.args.shard, self.args.shards],
            },
        }
        self.send(TEXT, json.dumps(identify).encode())

    # -- heartbeats and arming ---------------------------------------------------------------

    def heartbeat(self) -> None:
        """Only while disarmed: its ACK is the next frame that is not a flooded event."""
        assert self.state == IDLE and self.pass_done.is_set()
        self.outstanding += 1
        self.heartbeats += 1
        self.settled.clear()
        self.last_heartbeat = time.monotonic()
        self.send(TEXT, b'{"op":1,"d":null}')

    async def heartbeats_forever(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval / 4)
            due = time.monotonic() - self.last_heartbeat >= self.heartbeat_interval / 2
            if due and self.state == IDLE and self.pass_done.is_set():
                self.heartbeat()

    async def arm(self, n: int) -> None:
        """Heartbeat, wait for every ACK, then count the next n data frames as events."""
        await self.pass_done.wait()
        self.heartbeat()
        await asyncio.wait_for(self.settled.wait(), 10)
        self.target, self.count, self.stalls = n, 0, 0
        self.published0, self.nacked0 = self.published, self.nacked
        self.cpu0 = time.process_time()
        self.pass_done.clear()
        self.state = ARMED
        self._parse()  # a frame may already be buffered

    # -- confirms ----------------------------------------------------------------------------

    def on_confirm(self, tag: int, multiple: bool, nack: bool) -> None:
        if multiple:
            if tag > self.acked_through:
                done = sum(1 for t in self.singles if t <= tag)
                if nack:
                    self.nacked += tag - self.acked_through - done
                self.singles = {t for t in self.singles if t > tag}
                self.acked_through = tag
        elif tag > self.acked_through and tag not in self.singles:
            self.nacked += nack
            self.singles.add(tag)
            while self.acked_through + 1 in self.singles:
                self.acked_through += 1
                self.singles.discard(self.acked_through)
        self.confirmed = self.acked_through + len(self.singles)

    def after_confirms(self) -> None:
        if self.blocked and self.published - self.confirmed < self.window:
            self.blocked = False
            if self.state == ARMED:
                self._parse()
            if not self.blocked and self.paused and self.transport is not None:
                self.paused = False
                self.transport.resume_reading()
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self.state == IDLE and not self.pass_done.is_set() and self.confirmed == self.published:
            self.pass_done.set()
            result = {
                "frames": self.count,
                "published": self.published - self.published0,
                "nacked": self.nacked - self.nacked0,
                "stray": self.stray,
                "stalls": self.stalls,
                "heartbeats": self.heartbeats,
                "cpu_s": round(time.process_time() - self.cpu0, 4),
            }
            print("DONE " + json.dumps(result), flush=True)


async def read_confirms(amqp: Amqp, relay: NullRelay) -> None:
    """basic.ack / basic.nack straight from the socket's bytes; raises when the broker closes."""
    buffer = amqp.buffer
    read = amqp.reader.read
    on_confirm = relay.on_confirm
    while True:
        n = len(buffer)
        pos = 0
        while n - pos >= 7:
            end = pos + int.from_bytes(buffer[pos + 3 : pos + 7], "big") + 8
            if end > n:
                break
            if buffer[pos] == 1:  # method frame
                method = bytes(buffer[pos + 7 : pos + 11])
                if method in (BASIC_ACK, BASIC_NACK):
                    tag = int.from_bytes(buffer[pos + 11 : pos + 19], "big")
                    on_confirm(tag, bool(buffer[pos + 19] & 1), method == BASIC_NACK)
                elif method in (CONNECTION_CLOSE, CHANNEL_CLOSE):
                    _, _, value = frame.unmarshal(bytes(buffer[pos:end]))
                    raise ConnectionError(f"RabbitMQ closed: {value!r}")
            pos = end
        del buffer[:pos]
        if pos:
            relay.after_confirms()
        chunk = await read(1 << 16)
        if not chunk:
            raise ConnectionError("RabbitMQ closed the connection")
        buffer += chunk


def gateway_url(api_url: str, token: str) -> str:
    request = urllib.request.Request(
        api_url + "/gateway/bot", headers={"Authorization": f"Bot {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        url: str = json.loads(response.read())["url"]
    return url


async def main_async(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    messages = prebuilt_messages(
        args.exchange, args.routing_key, args.shard, load_bodies(args.bodies)
    )
    amqp = await Amqp.connect(args.amqp_url)
    await amqp.call(
        1,
        commands.Exchange.Declare(exchange=args.exchange, exchange_type="direct", durable=True),
        commands.Exchange.DeclareOk,
    )
    await amqp.call(1, commands.Confirm.Select(), commands.Confirm.SelectOk)
    url = await loop.run_in_executor(None, gateway_url, args.api_url, args.token)
    relay = NullRelay(args, url, amqp, messages)
    parts = urlsplit(url)
    await loop.create_connection(lambda: relay, parts.hostname or "127.0.0.1", parts.port or 80)
    info = await asyncio.wait_for(relay.ready, 60)
    confirms = asyncio.create_task(read_confirms(amqp, relay))
    beats = asyncio.create_task(relay.heartbeats_forever())
    commands_in: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands_in.put_nowait, line.strip())
        loop.call_soon_threadsafe(commands_in.put_nowait, "QUIT")

    threading.Thread(target=read_stdin, daemon=True).start()
    print("READY " + json.dumps(info), flush=True)
    try:
        while True:
            get = asyncio.ensure_future(commands_in.get())
            waiting: set[asyncio.Future[Any]] = {get, confirms, relay.failed}
            await asyncio.wait(waiting, return_when="FIRST_COMPLETED")
            for task in (confirms, relay.failed):
                if task.done():
                    get.cancel()
                    task.result()  # raises why the relay cannot go on
            parts_in = get.result().split()
            if not parts_in or parts_in[0] == "QUIT":
                break
            if parts_in[0] != "ARM" or len(parts_in) != 2:
                print("ERROR unknown command " + " ".join(parts_in), flush=True)
                continue
            await relay.arm(int(parts_in[1]))
            print("ARMED", flush=True)
    finally:
        confirms.cancel()
        beats.cancel()
        relay.closing = True
        if relay.transport is not None:
            relay.transport.close()
        with contextlib.suppress(Exception):
            amqp.writer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--token", default=os.environ.get("DISCORD_TOKEN", "sim-token"))
    parser.add_argument("--shard", type=int, default=0)
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--routing-key", default="MESSAGE_CREATE")
    parser.add_argument("--bodies", default=None)
    parser.add_argument("--window", type=int, default=1024)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main_async(args))
    else:
        uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
