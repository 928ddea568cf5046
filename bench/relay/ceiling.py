"""The ceiling: a naive aio-pika publisher with confirms, sending the relay's bodies.

What a straightforward relay would do per event: build an ``aio_pika.Message`` with the wire
contract's properties (persistent, content_type, type, message_id, timestamp, headers shard_id /
seq / guild_id) and ``await exchange.publish(...)`` on a confirm channel, with ``--window``
publishes in flight (the gateway's default ``max_in_flight`` is 1024). No decompression, no
websocket: only the publish path, so gateway / ceiling shows what the relay costs on top.

Driven through stdin like the consumer: prints ``READY`` once connected, then for each
``GO <n> [rate]`` line publishes n messages (flat out, or paced) and answers
``DONE {"start", "end", "cpu_s"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
import threading
import time
from pathlib import Path

import aio_pika

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common.bodies import load_bodies  # bench/ is not a package: found via sys.path

GUILD_ID = "175928847299117063"
DISCORD_EPOCH_MS = 1420070400000
NONCE = b'"nonce":"'


async def publish_all(
    exchange: aio_pika.abc.AbstractExchange, bodies: list[bytes], n: int, window: int
) -> None:
    seq_base = int(time.time() * 1000)

    async def worker(start: int) -> None:
        for index in range(start, n, window):
            seq = seq_base + index
            await exchange.publish(
                _message(bodies[index % len(bodies)], seq), routing_key="MESSAGE_CREATE"
            )

    await asyncio.gather(*(worker(start) for start in range(min(window, n))))


def _message(body: bytes, seq: int) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        headers={"shard_id": 0, "seq": seq, "guild_id": GUILD_ID},
        message_id=f"0:ceiling:{seq}",
        type="MESSAGE_CREATE",
        timestamp=datetime.datetime.now(datetime.UTC),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def _split_nonce(body: bytes) -> tuple[bytes, bytes]:
    start = body.index(NONCE) + len(NONCE)
    end = body.index(b'"', start)
    return body[:start], body[end:]


async def publish_paced(
    exchange: aio_pika.abc.AbstractExchange, bodies: list[bytes], n: int, rate: float
) -> None:
    """`rate` messages/s in 10 ms batches (like the simulator's paced flood), nonce = send time.

    The latency baseline: the consumer reads the send time from the nonce snowflake, exactly as
    for the relayed events, so this measures publisher -> RabbitMQ -> consumer alone.
    """
    parts = [_split_nonce(b) for b in bodies]
    batch = max(1, min(512, int(rate / 100)))
    started = time.monotonic()
    pending: set[asyncio.Task[object]] = set()
    sent = 0
    increment = 0
    while sent < n:
        k = min(batch, n - sent)
        ms = int(time.time() * 1000)
        base = (ms - DISCORD_EPOCH_MS) << 22
        for _ in range(k):
            head, tail = parts[sent % len(parts)]
            increment = (increment + 1) & 0xFFF
            body = head + str(base | (31 << 17) | increment).encode() + tail
            task = asyncio.ensure_future(
                exchange.publish(_message(body, sent), routing_key="MESSAGE_CREATE")
            )
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
        delay = started + sent / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    if pending:
        await asyncio.gather(*pending)


async def main_async(args: argparse.Namespace) -> None:
    bodies = load_bodies(args.bodies)
    connection = await aio_pika.connect(args.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(
            args.exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        loop = asyncio.get_running_loop()
        commands: asyncio.Queue[str] = asyncio.Queue()

        def read_stdin() -> None:
            for line in sys.stdin:
                loop.call_soon_threadsafe(commands.put_nowait, line.strip())
            loop.call_soon_threadsafe(commands.put_nowait, "QUIT")

        threading.Thread(target=read_stdin, daemon=True).start()
        print("READY " + json.dumps({"bodies": len(bodies)}), flush=True)
        while True:
            parts = (await commands.get()).split()
            if not parts or parts[0] != "GO":
                break
            n = int(parts[1])
            cpu0 = time.process_time()
            start = time.time()
            if len(parts) > 2:
                await publish_paced(exchange, bodies, n, float(parts[2]))
            else:
                await publish_all(exchange, bodies, n, args.window)
            end = time.time()
            out = {"start": start, "end": end, "cpu_s": time.process_time() - cpu0}
            print("DONE " + json.dumps(out), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--bodies", default=None)
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="asyncio")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main_async(args))
    else:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
