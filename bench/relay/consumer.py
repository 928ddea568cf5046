"""Counting consumer: a lean AMQP consumer in its own process, bound to the events exchange.

It declares a durable classic queue bound to ``--exchange`` for ``--routing-key`` and consumes
with auto-ack. The connection is set up with pamqp; deliveries are then counted straight from the
socket's frames (frame type, size, body) without building a message object per delivery, so the
consumer costs a few microseconds per message and is never what limits a relay's rate (its CPU
per event is reported next to every figure). The harness drives it through stdin, one command
per line, and reads JSON answers on stdout:

    EXPECT <n> <timeout_s> [latency] [sample <path> <k>]
        reset counters, wait for n messages (or the timeout), answer
        ``DONE {"count", "first", "last", "latency_ms": {...}}``

Latency: every flooded MESSAGE_CREATE carries ``nonce`` = its message id, a snowflake whose
timestamp is the simulator's send time in ms; latency = receipt wall-clock ms - that ms (the
floor of the send time, so each value over-states the true latency by 0-1 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pamqp import commands, frame

DISCORD_EPOCH_MS = 1420070400000
NONCE = b'"nonce":"'
FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
CONNECTION_CLOSE = b"\x00\x0a\x00\x32"
CHANNEL_CLOSE = b"\x00\x14\x00\x28"


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


class Counter:
    def __init__(self) -> None:
        self.reset(1 << 62, False, 0)

    def reset(self, expect: int, latency: bool, sample_k: int) -> None:
        self.expect, self.count, self.first, self.last = expect, 0, 0.0, 0.0
        self.latency = latency
        self.latencies: list[float] = []
        self.sample_k = sample_k
        self.samples: list[bytes] = []
        self.done = asyncio.Event()

    def on_message(self, body: bytes) -> None:
        now = time.time()
        if not self.count:
            self.first = now
        self.count += 1
        self.last = now
        if self.latency:
            start = body.find(NONCE)
            if start >= 0:
                start += len(NONCE)
                end = body.find(b'"', start)
                sent_ms = (int(body[start:end]) >> 22) + DISCORD_EPOCH_MS
                self.latencies.append(now * 1000.0 - sent_ms)
        if len(self.samples) < self.sample_k:
            self.samples.append(body)
        if self.count >= self.expect:
            self.done.set()

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"count": self.count, "first": self.first, "last": self.last}
        if self.latency:
            values = sorted(self.latencies)
            out["latency_ms"] = {
                "n": len(values),
                "p50": percentile(values, 0.50),
                "p90": percentile(values, 0.90),
                "p99": percentile(values, 0.99),
                "max": values[-1] if values else float("nan"),
                "mean": sum(values) / len(values) if values else float("nan"),
                "values": [round(v, 3) for v in values],
            }
        return out


class Amqp:
    """Just enough AMQP 0-9-1 to declare, bind and consume with no-ack."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buffer = bytearray()

    async def frame(self) -> Any:
        while True:
            if len(self.buffer) >= 7:
                size = int.from_bytes(self.buffer[3:7], "big")
                if len(self.buffer) >= size + 8:
                    used, _channel, value = frame.unmarshal(bytes(self.buffer[: size + 8]))
                    del self.buffer[:used]
                    return value
            chunk = await self.reader.read(65536)
            if not chunk:
                raise ConnectionError("RabbitMQ closed the connection")
            self.buffer += chunk

    async def call(self, channel: int, method: Any, reply: type) -> Any:
        self.writer.write(frame.marshal(method, channel))
        value = await self.frame()
        if not isinstance(value, reply):
            raise RuntimeError(f"expected {reply.__name__}, got {value!r}")
        return value

    @classmethod
    async def connect(cls, url: str) -> Amqp:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 5672)
        amqp = cls(reader, writer)
        writer.write(b"AMQP\x00\x00\x09\x01")
        start = await amqp.frame()
        if not isinstance(start, commands.Connection.Start):
            raise RuntimeError(f"expected Connection.Start, got {start!r}")
        user, password = unquote(parts.username or "guest"), unquote(parts.password or "guest")
        writer.write(
            frame.marshal(
                commands.Connection.StartOk(
                    client_properties={"product": "spectacles-bench-consumer"},
                    response=f"\0{user}\0{password}",
                ),
                0,
            )
        )
        tune = await amqp.frame()
        writer.write(
            frame.marshal(commands.Connection.TuneOk(tune.channel_max, tune.frame_max, 0), 0)
        )
        vhost = unquote(parts.path[1:]) if parts.path not in ("", "/") else "/"
        await amqp.call(0, commands.Connection.Open(virtual_host=vhost), commands.Connection.OpenOk)
        await amqp.call(1, commands.Channel.Open(), commands.Channel.OpenOk)
        return amqp

    async def consume(self, counter: Counter) -> None:
        """Count deliveries from raw frames until the connection closes."""
        buffer = self.buffer
        read = self.reader.read
        on_message = counter.on_message
        remaining = 0
        parts: list[bytes] = []
        while True:
            n = len(buffer)
            pos = 0
            while n - pos >= 7:
                size = int.from_bytes(buffer[pos + 3 : pos + 7], "big")
                end = pos + size + 8
                if end > n:
                    break
                kind = buffer[pos]
                if kind == FRAME_BODY:
                    body = bytes(buffer[pos + 7 : end - 1])
                    remaining -= len(body)
                    if remaining <= 0 and not parts:
                        on_message(body)
                    else:
                        parts.append(body)
                        if remaining <= 0:
                            on_message(b"".join(parts))
                            parts.clear()
                elif kind == FRAME_HEADER:
                    remaining = int.from_bytes(buffer[pos + 11 : pos + 19], "big")
                    if remaining == 0:
                        on_message(b"")
                elif kind == FRAME_METHOD:
                    method = bytes(buffer[pos + 7 : pos + 11])
                    if method in (CONNECTION_CLOSE, CHANNEL_CLOSE):
                        _, _, value = frame.unmarshal(bytes(buffer[pos:end]))
                        raise ConnectionError(f"RabbitMQ closed: {value!r}")
                pos = end
            del buffer[:pos]
            chunk = await read(1 << 18)
            if not chunk:
                return
            buffer += chunk


async def main_async(args: argparse.Namespace) -> None:
    amqp = await Amqp.connect(args.amqp_url)
    await amqp.call(
        1,
        commands.Exchange.Declare(exchange=args.exchange, exchange_type="direct", durable=True),
        commands.Exchange.DeclareOk,
    )
    await amqp.call(
        1, commands.Queue.Declare(queue=args.queue, durable=True), commands.Queue.DeclareOk
    )
    await amqp.call(
        1,
        commands.Queue.Bind(queue=args.queue, exchange=args.exchange, routing_key=args.routing_key),
        commands.Queue.BindOk,
    )
    await amqp.call(
        1, commands.Basic.Consume(queue=args.queue, no_ack=True), commands.Basic.ConsumeOk
    )
    counter = Counter()
    reader_task = asyncio.create_task(amqp.consume(counter))
    loop = asyncio.get_running_loop()
    commands_in: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands_in.put_nowait, line.strip())
        loop.call_soon_threadsafe(commands_in.put_nowait, "QUIT")

    threading.Thread(target=read_stdin, daemon=True).start()
    print("READY", flush=True)
    try:
        while True:
            command = await commands_in.get()
            parts = command.split()
            if not parts or parts[0] == "QUIT":
                break
            if parts[0] != "EXPECT":
                print("ERROR unknown command " + command, flush=True)
                continue
            expect, timeout = int(parts[1]), float(parts[2])
            latency = "latency" in parts
            sample_k, sample_path = 0, ""
            if "sample" in parts:
                at = parts.index("sample")
                sample_path, sample_k = parts[at + 1], int(parts[at + 2])
            counter.reset(expect, latency, sample_k)
            print("ARMED", flush=True)
            waiter = asyncio.ensure_future(counter.done.wait())
            await asyncio.wait(
                {waiter, reader_task}, timeout=timeout, return_when="FIRST_COMPLETED"
            )
            waiter.cancel()
            if reader_task.done():
                reader_task.result()  # raises why the connection ended
                raise ConnectionError("RabbitMQ closed the connection")
            if sample_path:
                Path(sample_path).write_text(
                    json.dumps([s.decode() for s in counter.samples]), encoding="utf-8"
                )
            print("DONE " + json.dumps(counter.result()), flush=True)
            counter.reset(1 << 62, False, 0)
    finally:
        reader_task.cancel()
        with contextlib.suppress(Exception):
            amqp.writer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--routing-key", default="MESSAGE_CREATE")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main_async(args))
    else:
        uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
