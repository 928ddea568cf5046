"""Confirmed-publish throughput: naive aio-pika vs aiormq vs spectacles' Publisher.

Every variant sends the same N persistent messages (``body_size`` bytes, the relay's properties:
headers shard_id/seq/guild_id, message_id, type, timestamp, content_type) with publisher confirms
to a durable direct exchange bound to a durable queue, and counts a message as done only when
RabbitMQ confirmed it. Reported: messages/s (wall) and this process's CPU seconds.

    uv run python bench/publish/publish_bench.py            # N=50000, asyncio and uvloop
    uv run python bench/publish/publish_bench.py -n 20000 --loop uvloop --repeat 1

``bench/run_all.py`` imports ``run(amqp_url, n, body_size)`` and runs it in its own loop.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import aiormq
from pamqp import commands as spec

from spectacles.broker.publisher import Publisher
from spectacles.broker.settings import BrokerSettings

WINDOW = 1024  # concurrent unconfirmed publishes, the same for every variant
ROUTING_KEY = "MESSAGE_CREATE"

Variant = Callable[[str, str, int, bytes], Awaitable[None]]


def _properties(index: int) -> dict[str, Any]:
    return {
        "headers": {"shard_id": 0, "seq": index, "guild_id": "175928847299117063"},
        "message_id": f"0:bench:{index}",
        "type": ROUTING_KEY,
    }


async def _in_window(n: int, publish_one: Callable[[int], Awaitable[Any]]) -> None:
    """WINDOW tasks, each awaiting its publishes one by one: the fair naive baseline."""

    async def worker(start: int) -> None:
        for index in range(start, n, WINDOW):
            await publish_one(index)

    await asyncio.gather(*(worker(start) for start in range(min(WINDOW, n))))


async def naive_aio_pika(url: str, exchange_name: str, n: int, body: bytes) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(exchange_name)

        async def one(index: int) -> None:
            props = _properties(index)
            await exchange.publish(
                aio_pika.Message(
                    body,
                    headers=props["headers"],
                    message_id=props["message_id"],
                    type=props["type"],
                    timestamp=datetime.datetime.now(datetime.UTC),
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=ROUTING_KEY,
            )

        await _in_window(n, one)


async def plain_aiormq(url: str, exchange_name: str, n: int, body: bytes) -> None:
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)

        async def one(index: int) -> None:
            props = _properties(index)
            await channel.basic_publish(
                body,
                exchange=exchange_name,
                routing_key=ROUTING_KEY,
                properties=spec.Basic.Properties(
                    headers=props["headers"],
                    message_id=props["message_id"],
                    message_type=props["type"],
                    timestamp=datetime.datetime.now(datetime.UTC),
                    content_type="application/json",
                    delivery_mode=2,
                ),
            )

        await _in_window(n, one)
    finally:
        await connection.close()


async def publisher_submit(url: str, exchange_name: str, n: int, body: bytes) -> None:
    """One producer loop, submit() with the window as backpressure: how the gateway relays."""
    publisher = await Publisher.connect(
        BrokerSettings(amqp_url=url, group=exchange_name), max_in_flight=WINDOW
    )
    try:
        confirmed = asyncio.get_running_loop().create_future()
        remaining = n
        failures: list[BaseException] = []

        def done(future: asyncio.Future[None]) -> None:
            nonlocal remaining
            if future.exception() is not None:
                failures.append(future.exception())  # type: ignore[arg-type]
            remaining -= 1
            if not remaining:
                confirmed.set_result(None)

        for index in range(n):
            props = _properties(index)
            future = await publisher.submit(
                ROUTING_KEY,
                body,
                headers=props["headers"],
                message_id=props["message_id"],
                type=props["type"],
                timestamp=time.time(),
            )
            future.add_done_callback(done)
        await confirmed
        if failures:
            raise failures[0]
    finally:
        await publisher.close()


async def publisher_publish(url: str, exchange_name: str, n: int, body: bytes) -> None:
    """publish() awaited in WINDOW concurrent tasks: the same shape as the aio-pika baseline."""
    publisher = await Publisher.connect(
        BrokerSettings(amqp_url=url, group=exchange_name), max_in_flight=WINDOW
    )
    try:

        async def one(index: int) -> None:
            props = _properties(index)
            await publisher.publish(
                ROUTING_KEY,
                body,
                headers=props["headers"],
                message_id=props["message_id"],
                type=props["type"],
                timestamp=time.time(),
            )

        await _in_window(n, one)
    finally:
        await publisher.close()


VARIANTS: dict[str, Variant] = {
    "aio-pika (naive, 1024 tasks)": naive_aio_pika,
    "aiormq (1024 tasks)": plain_aiormq,
    "Publisher.publish (1024 tasks)": publisher_publish,
    "Publisher.submit (window 1024)": publisher_submit,
}
BASELINE = "aio-pika (naive, 1024 tasks)"


def _broker_cpu() -> float | None:
    """CPU seconds used so far by a local RabbitMQ (beam.smp), when one runs on this machine."""
    try:
        import psutil  # type: ignore[import-untyped]
    except ImportError:
        return None
    total = None
    for process in psutil.process_iter(["name"]):
        if process.info["name"] and process.info["name"].startswith("beam"):
            times = process.cpu_times()
            total = (total or 0.0) + times.user + times.system
    return total


async def _measure(variant: Variant, url: str, n: int, body_size: int) -> dict[str, float]:
    """One run against a fresh exchange + durable queue, deleted afterwards."""
    name = f"bench-publish-{uuid.uuid4().hex[:8]}"
    admin = await aio_pika.connect(url)
    async with admin:
        channel = await admin.channel()
        exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.DIRECT, durable=True)
        queue = await channel.declare_queue(name, durable=True)
        await queue.bind(exchange, ROUTING_KEY)
        try:
            body = b"x" * body_size
            broker_cpu = _broker_cpu()
            cpu, wall = time.process_time(), time.perf_counter()
            await variant(url, name, n, body)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            broker_after = _broker_cpu()
            declared = await channel.declare_queue(name, durable=True, passive=True)
            queued = declared.declaration_result.message_count
        finally:
            await queue.delete(if_unused=False, if_empty=False)
            await exchange.delete()
    if queued != n:
        raise RuntimeError(f"{n} confirmed but {queued} queued")
    result = {"msgs_per_s": n / wall, "cpu_s": cpu, "cpu_us_per_msg": cpu / n * 1e6}
    if broker_cpu is not None and broker_after is not None:
        result["broker_cpu_us_per_msg"] = (broker_after - broker_cpu) / n * 1e6
    return result


async def run(amqp_url: str, n: int, body_size: int = 1024, repeat: int = 1) -> dict[str, Any]:
    """Run every variant ``repeat`` times (interleaved) in the current loop; medians."""
    samples: dict[str, list[dict[str, float]]] = {label: [] for label in VARIANTS}
    for _ in range(repeat):
        for label, variant in VARIANTS.items():
            samples[label].append(await _measure(variant, amqp_url, n, body_size))
    results: dict[str, Any] = {}
    for label, runs in samples.items():
        results[label] = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    baseline = results[BASELINE]["msgs_per_s"]
    for label in VARIANTS:
        results[label]["vs_aio_pika"] = results[label]["msgs_per_s"] / baseline
    return {"n": n, "body_size": body_size, "repeat": repeat, "variants": results}


def _run_in_loop(loop_name: str, url: str, n: int, body_size: int, repeat: int) -> dict[str, Any]:
    if loop_name == "uvloop":
        import uvloop

        return uvloop.run(run(url, n, body_size, repeat))
    return asyncio.run(run(url, n, body_size, repeat))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _table(loop_name: str, result: dict[str, Any]) -> str:
    lines = [
        f"Event loop: **{loop_name}**",
        "",
        "| variant | msgs/s | vs naive aio-pika | client CPU s | client CPU us/msg "
        "| RabbitMQ CPU us/msg |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, row in result["variants"].items():
        broker = row.get("broker_cpu_us_per_msg")
        lines.append(
            f"| {label} | {row['msgs_per_s']:,.0f} | {row['vs_aio_pika']:.2f}x | "
            f"{row['cpu_s']:.2f} | {row['cpu_us_per_msg']:.1f} | "
            f"{'n/a' if broker is None else f'{broker:.0f}'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50_000, help="messages per variant")
    parser.add_argument("--body-size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant (median kept)")
    parser.add_argument("--loop", choices=["asyncio", "uvloop", "both"], default="both")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument(
        "--url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/")
    )
    args = parser.parse_args()
    loops = ["asyncio", "uvloop"] if args.loop == "both" else [args.loop]
    results = {
        loop_name: _run_in_loop(loop_name, args.url, args.n, args.body_size, args.repeat)
        for loop_name in loops
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"machine: {os.cpu_count()} CPUs, {_cpu_model()}, Python {platform.python_version()}; "
        f"N={args.n}, body {args.body_size} B, persistent, confirms, median of {args.repeat}"
    )
    for loop_name, result in results.items():
        print()
        print(_table(loop_name, result))


if __name__ == "__main__":
    main()
