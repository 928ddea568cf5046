"""Where a no-op worker's CPU per message goes, without RabbitMQ or a socket in the way.

Pre-built ``basic.deliver`` + content header + body frames (the drain's ~1 KB MESSAGE_CREATE
bodies and headers) are fed to the lean connection's ``data_received`` 16 deliveries at a time,
as RabbitMQ sends them at prefetch 16; the event loop runs the handlers and writes the acks to a
transport that only counts bytes. Three layers, each measured on its own (uvloop, min of
``--repeat`` runs, CPU µs per message):

    connection   frames parsed, deliveries acked from the callback (the null consumer)
    consumer     + ``Consumer``: runner tasks, ``Delivery``, retry headers, batched acks
    worker       + the SDK: typed decode (msgspec), ``Context``, metrics

The drain bench's CPU per message minus ``worker`` here is the socket I/O and the event loop's
polling. Prints ``DONE {...}``.

    uv run python bench/workers/consume_cpu.py [--messages 32000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from common.bodies import synthetic_bodies  # noqa: E402

from spectacles.broker._consume_channel import ConsumeChannel  # noqa: E402
from spectacles.broker._frames import encode_content, encode_properties  # noqa: E402
from spectacles.broker._publish_connection import PublishConnection  # noqa: E402
from spectacles.broker.broker import Broker  # noqa: E402
from spectacles.broker.consumer import Consumer  # noqa: E402
from spectacles.broker.delivery import Delivery  # noqa: E402
from spectacles.broker.settings import BrokerSettings  # noqa: E402

LAYERS = ("connection", "consumer", "worker")
BATCH = 16
CHANNEL = 3


class _Quiet:
    def __getattr__(self, name: str) -> Any:
        return lambda *args: None


class _CountingTransport:
    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return False


def _deliver_frame(tag: int) -> bytes:
    consumer_tag, exchange, key = b"amq.ctag-bench", b"bench", b"MESSAGE_CREATE"
    payload = b"".join(
        (
            struct.pack(">HHB", 60, 60, len(consumer_tag)),
            consumer_tag,
            struct.pack(">QBB", tag, 0, len(exchange)),
            exchange,
            bytes((len(key),)),
            key,
        )
    )
    return struct.pack(">BHI", 1, CHANNEL, len(payload)) + payload + b"\xce"


def _chunks(messages: int) -> list[bytes]:
    bodies = synthetic_bodies(64)
    chunks: list[bytes] = []
    now = time.time()
    for start in range(0, messages, BATCH):
        parts = []
        for tag in range(start + 1, start + BATCH + 1):
            flags, properties = encode_properties(
                "application/json",
                {"shard_id": 0, "seq": tag},
                True,
                f"0:bench:{tag}",
                now,
                "MESSAGE_CREATE",
            )
            body = bodies[tag % len(bodies)]
            parts.append(_deliver_frame(tag))
            parts.append(encode_content(CHANNEL, flags, properties, body, 131_064))
        chunks.append(b"".join(parts))
    return chunks


def _handler(layer: str, consumer_box: list[Consumer]) -> Any:
    if layer == "consumer":

        async def noop(delivery: Delivery) -> None:
            pass

        return noop
    from spectacles.models import MessageCreate
    from spectacles.worker import Context, Worker

    worker = Worker("bench")

    @worker.on("MESSAGE_CREATE")
    async def handle(event: MessageCreate, ctx: Context) -> None:
        pass

    # What start() would set; a no-op handler never touches them.
    worker._rest = object()  # type: ignore[assignment]
    worker._commands = object()  # type: ignore[assignment]
    return worker._on_delivery


async def _one(layer: str, chunks: list[bytes]) -> float:
    connection = PublishConnection(_Quiet(), heartbeat=0)
    transport = _CountingTransport()
    connection._transport = transport  # type: ignore[assignment]
    if layer == "connection":

        def on_delivery(channel: ConsumeChannel, tag: int, *_: object) -> None:
            channel.ack(tag)

        callback: Any = on_delivery
        consumer = None
    else:
        broker = Broker(BrokerSettings(amqp_url="amqp://guest:guest@localhost/", group="bench"))
        consumer = Consumer(
            broker,
            worker="bench",
            events=["MESSAGE_CREATE"],
            handler=_handler(layer, []),
            prefetch=BATCH,
        )
        callback = consumer._on_delivery
    channel = ConsumeChannel(connection, callback)
    channel.number = CHANNEL
    connection._channels[CHANNEL] = channel
    warm = 20

    async def feed(part: list[bytes]) -> None:
        for chunk in part:
            connection.data_received(chunk)
            await asyncio.sleep(0)  # the runners take the deliveries
            await asyncio.sleep(0)  # the acks are written

    await feed(chunks[:warm])
    started = time.process_time()
    await feed(chunks[warm:])
    cpu = time.process_time() - started
    if consumer is not None:
        await consumer._stop_runners()
    if not transport.written:
        raise RuntimeError(f"{layer}: no ack was written")
    return cpu / ((len(chunks) - warm) * BATCH) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=32_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    import uvloop

    chunks = _chunks(args.messages)
    result: dict[str, Any] = {"messages": args.messages, "batch": BATCH}
    for layer in LAYERS:
        runs = [uvloop.run(_one(layer, chunks)) for _ in range(args.repeat)]
        result[layer] = {"us_per_message": min(runs), "runs": [round(r, 2) for r in runs]}
    print("DONE " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
