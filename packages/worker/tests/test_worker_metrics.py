"""The per-message metrics are plain numbers read on scrape: exact, same names, types, buckets."""

from __future__ import annotations

import asyncio
import json

import pytest
from prometheus_client import REGISTRY

from spectacles.broker.delivery import Delivery
from spectacles.worker import Context, Worker

BODY = json.dumps(
    {
        "id": "1",
        "channel_id": "2",
        "guild_id": "3",
        "author": {"id": "4", "username": "a", "discriminator": "0", "global_name": None},
        "content": "hi",
        "timestamp": "2024-01-01T00:00:00+00:00",
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": False,
        "type": 0,
    }
).encode()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def delivery(seq: int) -> Delivery:
    return Delivery(
        BODY, "MESSAGE_CREATE", {"shard_id": "1", "seq": seq}, f"1:s:{seq}", "MESSAGE_CREATE"
    )


async def test_handled_failed_seconds_and_in_flight_are_exact_when_scraped() -> None:
    worker = Worker("metrics-unit")
    worker._rest = object()  # type: ignore[assignment]  # what start() sets
    worker._commands = object()  # type: ignore[assignment]
    release = asyncio.Event()
    seen: list[Context] = []

    @worker.on("MESSAGE_CREATE")
    async def handle(event: object, ctx: Context) -> None:
        seen.append(ctx)
        if ctx.message_id == "1:s:2":
            raise RuntimeError("boom")
        if ctx.message_id == "1:s:3":
            await release.wait()

    labels = {"worker": "metrics-unit", "event": "MESSAGE_CREATE"}
    await worker._on_delivery(delivery(1))
    with pytest.raises(RuntimeError):
        await worker._on_delivery(delivery(2))
    running = asyncio.create_task(worker._on_delivery(delivery(3)))
    await asyncio.sleep(0)
    assert sample("spectacles_worker_handlers_in_flight", worker="metrics-unit") == 1
    assert sample("spectacles_worker_events_handled_total", **labels) == 1
    assert sample("spectacles_worker_events_failed_total", **labels) == 1
    assert sample("spectacles_worker_handler_seconds_count", **labels) == 2
    release.set()
    await running
    assert sample("spectacles_worker_handlers_in_flight", worker="metrics-unit") == 0
    assert sample("spectacles_worker_events_handled_total", **labels) == 2
    assert sample("spectacles_worker_handler_seconds_count", **labels) == 3
    assert sample("spectacles_worker_handler_seconds_bucket", le="+Inf", **labels) == 3
    fast = sample("spectacles_worker_handler_seconds_bucket", le="0.001", **labels)
    assert 1 <= fast <= 3  # the no-op run at least (the failed one logs a traceback): cumulative
    assert sample("spectacles_worker_handler_seconds_bucket", le="10.0", **labels) == 3
    assert 0 < sample("spectacles_worker_handler_seconds_sum", **labels) < 1
    assert sample("spectacles_worker_events_handled_created", **labels) > 0
    # the context: shard id parsed from the header, read-only, logger bound lazily
    ctx = seen[0]
    assert (ctx.shard_id, ctx.message_id, ctx.attempt, ctx.event) == (
        1,
        "1:s:1",
        1,
        "MESSAGE_CREATE",
    )
    with pytest.raises(AttributeError, match="read-only"):
        ctx.shard_id = 2
    assert ctx.log is ctx.log


async def test_two_worker_objects_of_one_name_share_their_counts() -> None:
    labels = {"worker": "metrics-shared", "event": "MESSAGE_CREATE"}
    for _ in range(2):
        worker = Worker("metrics-shared")
        worker._rest = object()  # type: ignore[assignment]
        worker._commands = object()  # type: ignore[assignment]

        @worker.on("MESSAGE_CREATE")
        async def handle(event: object, ctx: Context) -> None:
            pass

        await worker._on_delivery(delivery(1))
    assert sample("spectacles_worker_events_handled_total", **labels) == 2
