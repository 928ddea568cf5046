"""RabbitMQ names and clean-up for benchmark runs.

Every run uses its own group (`bench-<run id>-<figure>`); `cleanup()` deletes the exchanges and
queues a figure declared (directly, and everything the gateway's topology derives from the group),
so repeated runs leave nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterable

import aio_pika


def derived_names(
    group: str, *, shards: int = 64, workers: Iterable[str] = ()
) -> tuple[list[str], list[str]]:
    """(exchanges, queues) the gateway / worker topology creates for `group`."""
    exchanges = [group, f"{group}.dlx", f"{group}.commands"]
    queues = []
    for i in range(shards):
        queues += [f"{group}.commands.shard.{i}", f"{group}.commands.shard.{i}.dead"]
    for worker in workers:
        queues += [f"{group}.{worker}", f"{group}.{worker}.dead"]
    return exchanges, queues


async def _delete(url: str, exchanges: Iterable[str], queues: Iterable[str]) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        for queue in queues:
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.queue_delete(queue)
            with contextlib.suppress(Exception):
                await channel.close()
        for exchange in exchanges:
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.exchange_delete(exchange)
            with contextlib.suppress(Exception):
                await channel.close()


def cleanup(url: str, exchanges: Iterable[str], queues: Iterable[str]) -> None:
    """Delete the named exchanges and queues (missing ones are fine).

    Best effort: a failure is reported on stderr, never raised, so it cannot hide the error of
    the figure being cleaned up (the end-of-run sweep retries whatever is left).
    """
    try:
        asyncio.run(_delete(url, list(exchanges), list(queues)))
    except Exception as exc:
        print(f"[bench] clean-up failed: {exc!r}", file=sys.stderr)


def leftovers(prefix: str) -> tuple[list[str], list[str]]:
    """Queues and exchanges whose name starts with `prefix` (via rabbitmqctl; empty if absent)."""
    found: list[list[str]] = []
    for what in ("list_queues", "list_exchanges"):
        try:
            out = subprocess.run(
                ["rabbitmqctl", "-q", what, "name"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        found.append([n.strip() for n in out.splitlines() if n.strip().startswith(prefix)])
    return found[0], found[1]


def sweep(url: str, prefix: str) -> int:
    """Delete anything left with `prefix` (the run's safety net); how many names it removed."""
    queues, exchanges = leftovers(prefix)
    if queues or exchanges:
        cleanup(url, exchanges, queues)
    return len(queues) + len(exchanges)
