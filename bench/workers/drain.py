"""Drain a pre-filled queue with one consumer variant and time it (one process per variant).

    --variant worker     the SDK: `Worker` with one no-op `@worker.on("MESSAGE_CREATE")` handler
                         (typed decode, context, metrics, ack after the handler; uvloop, as
                         `Worker.run()` uses it)
    --variant worker-1ms the same SDK worker whose handler awaits `asyncio.sleep(0.001)` (a 1 ms
                         async handler: an HTTP call, a cache lookup), run at --prefetch 64
    --variant aio-pika   a plain aio-pika consumer: same queue type and prefetch, `message.ack()`
                         after a no-op, default asyncio loop: what one writes without the SDK
    --variant null       the bound: the broker's lean connection with no handler at all, each
                         delivery acked from the frame callback (no Delivery, no decode, no task;
                         uvloop): what the connection alone costs, and roughly what RabbitMQ
                         delivers on this machine to a consumer costing next to nothing.

Both drain the same N ~1 KB MESSAGE_CREATE bodies from a quorum queue bound to the group's
exchange, pre-filled (with confirms) before the clock starts. Rate = (N - 1) / (last handled -
first handled); CPU = this process's CPU seconds between those two moments. Prints ``DONE {...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import aio_pika  # noqa: E402
from common.bodies import synthetic_bodies  # noqa: E402

from spectacles.broker import BrokerSettings, Publisher  # noqa: E402

WORKER_NAME = "bench"
VARIANTS = ("worker", "worker-1ms", "aio-pika", "null")


class Clock:
    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.cpu_first = 0.0
        self.cpu_last = 0.0
        self.done = asyncio.Event()

    def tick(self) -> None:
        now = time.perf_counter()
        if not self.count:
            self.first = now
            self.cpu_first = time.process_time()
        self.count += 1
        self.last = now
        if self.count >= self.n:
            self.cpu_last = time.process_time()
            self.done.set()

    def result(self) -> dict[str, Any]:
        seconds = self.last - self.first
        cpu = self.cpu_last - self.cpu_first
        return {
            "n": self.n,
            "handled": self.count,
            "seconds": seconds,
            "rate": (self.count - 1) / seconds if seconds > 0 else 0.0,
            "cpu_s": cpu,
            "cpu_s_per_100k": cpu / max(self.count, 1) * 100_000,
        }


async def prefill(amqp_url: str, group: str, n: int) -> None:
    bodies = synthetic_bodies(64)
    publisher = await Publisher.connect(BrokerSettings(amqp_url=amqp_url, group=group))
    try:
        confirms = [
            await publisher.submit(
                "MESSAGE_CREATE",
                bodies[i % len(bodies)],
                headers={"shard_id": 0, "seq": i},
                message_id=f"0:bench:{i}",
                type="MESSAGE_CREATE",
            )
            for i in range(n)
        ]
        await asyncio.gather(*confirms)
    finally:
        await publisher.close()


async def drain_worker(args: argparse.Namespace, *, sleep: float = 0.0) -> dict[str, Any]:
    from spectacles.models import MessageCreate
    from spectacles.worker import Context, Worker, WorkerSettings

    settings = WorkerSettings(
        discord_token="sim-token",
        amqp_url=args.amqp_url,
        group=args.group,
        discord_api_url="http://127.0.0.1:9/api/v10",
        concurrency=args.prefetch,
        queue_type="quorum",
        log_level="WARNING",
        metrics_address="127.0.0.1:0",
    )
    clock = Clock(args.n)

    def make() -> Worker:
        worker = Worker(WORKER_NAME, settings=settings)

        if sleep:

            @worker.on("MESSAGE_CREATE")
            async def io_bound(event: MessageCreate, ctx: Context) -> None:
                await asyncio.sleep(sleep)
                clock.tick()

        else:

            @worker.on("MESSAGE_CREATE")
            async def noop(event: MessageCreate, ctx: Context) -> None:
                clock.tick()

        return worker

    # Declare the queue and its bindings, fill it, then time a fresh worker draining it.
    async with make().running(settings):
        pass
    await prefill(args.amqp_url, args.group, args.n)
    async with make().running(settings):
        await asyncio.wait_for(clock.done.wait(), args.timeout)
    return clock.result()


async def declare_plain(
    channel: aio_pika.abc.AbstractChannel, group: str
) -> aio_pika.abc.AbstractQueue:
    """The quorum queue ``{group}.bench`` bound to the group's exchange, as the SDK declares it."""
    exchange = await channel.declare_exchange(group, aio_pika.ExchangeType.DIRECT, durable=True)
    queue = await channel.declare_queue(
        f"{group}.{WORKER_NAME}", durable=True, arguments={"x-queue-type": "quorum"}
    )
    await queue.bind(exchange, "MESSAGE_CREATE")
    return queue


class _Listener:
    """The null consumer ignores what its connection reports."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args: None


async def drain_null(args: argparse.Namespace) -> dict[str, Any]:
    from spectacles.broker._consume_channel import ConsumeChannel
    from spectacles.broker._publish_connection import AmqpEndpoint, PublishConnection

    clock = Clock(args.n)
    setup = await aio_pika.connect(args.amqp_url)
    async with setup:
        queue = await declare_plain(await setup.channel(), args.group)
    await prefill(args.amqp_url, args.group, args.n)
    connection = await PublishConnection.open(
        AmqpEndpoint(args.amqp_url),
        _Listener(),  # type: ignore[arg-type]
        heartbeat=30,
        timeout=10,
        client_properties={"connection_name": "bench-null-consumer"},
    )
    tick = clock.tick

    def on_delivery(channel: ConsumeChannel, tag: int, *_: object) -> None:
        tick()
        channel.ack(tag)

    try:
        channel = await ConsumeChannel.open(connection, on_delivery, prefetch=args.prefetch)
        await channel.consume(queue.name)
        await asyncio.wait_for(clock.done.wait(), args.timeout)
    finally:
        await connection.close(5.0)
    return clock.result()


async def drain_aio_pika(args: argparse.Namespace) -> dict[str, Any]:
    clock = Clock(args.n)
    connection = await aio_pika.connect(args.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=args.prefetch)
        queue = await declare_plain(channel, args.group)
        await prefill(args.amqp_url, args.group, args.n)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            clock.tick()
            await message.ack()

        await queue.consume(on_message)
        await asyncio.wait_for(clock.done.wait(), args.timeout)
    return clock.result()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--prefetch", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    if args.variant == "aio-pika":
        result = asyncio.run(drain_aio_pika(args))
    else:
        import uvloop

        if args.variant == "worker":
            result = uvloop.run(drain_worker(args))
        elif args.variant == "worker-1ms":
            result = uvloop.run(drain_worker(args, sleep=0.001))
        else:
            result = uvloop.run(drain_null(args))
    print("DONE " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
