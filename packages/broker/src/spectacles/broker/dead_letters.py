"""Inspect, replay and purge a worker's dead letters: the operator's half of "loses nothing".

A message lands in ``{group}.{worker}.dead`` when its handler kept failing or its body could not be
decoded. Once the cause is fixed (a bug deployed, a permission granted) the operator replays it
into that worker's queue only (other workers handled the event already), through the default
exchange, like a retry: the ``x-original-*`` headers keep the event name for the handler. Replay is
confirmed before the dead copy is acked, so a crash in between leaves a duplicate, never a loss.

Listing cannot avoid returning what it read: measured on RabbitMQ 3.10 and 4.0, every return to a
quorum queue (nack/reject with requeue, channel or connection close) counts as a delivery attempt,
and no AMQP 0-9-1 "peek" exists. So ``.dead`` queues carry no delivery limit (see
:func:`~spectacles.broker.topology.dead_queue_arguments`) and looking at them is harmless; a
delivery-limit *policy* matching ``.dead`` queues would undo that, docs/operations.md says why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from .broker import Broker
from .delivery import (
    ATTEMPTS_HEADER,
    DELIVERY_COUNT_HEADER,
    ERROR_HEADER,
    INTERRUPTIONS_HEADER,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
)

__all__ = ["DeadMessage", "list_dead", "purge_dead", "replay_dead"]

#: Headers describing the failed attempts; a replayed message starts afresh without them.
_FAILURE_HEADERS: Final = frozenset(
    {
        ATTEMPTS_HEADER,
        ERROR_HEADER,
        INTERRUPTIONS_HEADER,
        DELIVERY_COUNT_HEADER,
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
    }
)
_PREVIEW_BYTES: Final = 200


@dataclass(frozen=True, slots=True)
class DeadMessage:
    """One dead letter as an operator needs to see it."""

    message_id: str | None
    exchange: str
    routing_key: str
    error: str | None
    attempts: int
    size: int
    preview: str


def _origin(message: AbstractIncomingMessage) -> tuple[str, str]:
    """Where the message was first published: our headers, else RabbitMQ's ``x-death``."""
    headers: Mapping[str, Any] = message.headers or {}
    exchange = headers.get(ORIGINAL_EXCHANGE_HEADER)
    routing_key = headers.get(ORIGINAL_ROUTING_KEY_HEADER)
    if exchange is None or routing_key is None:
        deaths = headers.get("x-death")
        if isinstance(deaths, list) and deaths and isinstance(deaths[-1], Mapping):
            first = deaths[-1]  # RabbitMQ lists the most recent death first
            exchange = first.get("exchange", exchange)
            keys = first.get("routing-keys") or []
            routing_key = keys[0] if keys else routing_key
    return str(exchange or message.exchange or ""), str(routing_key or message.routing_key or "")


def _describe(message: AbstractIncomingMessage) -> DeadMessage:
    headers: Mapping[str, Any] = message.headers or {}
    exchange, routing_key = _origin(message)
    error = headers.get(ERROR_HEADER)
    attempts = headers.get(ATTEMPTS_HEADER)
    return DeadMessage(
        message_id=message.message_id,
        exchange=exchange,
        routing_key=routing_key,
        error=str(error) if error is not None else None,
        attempts=int(attempts) if isinstance(attempts, int) else 0,
        size=len(message.body),
        preview=message.body[:_PREVIEW_BYTES].decode("utf-8", "replace"),
    )


async def _dead_queue(channel: AbstractChannel, broker: Broker, worker: str) -> AbstractQueue:
    # passive: an operator typo must not create an empty queue that hides the mistake
    return await channel.declare_queue(broker.topology.dead_queue(worker), passive=True)


async def list_dead(broker: Broker, worker: str, *, limit: int = 20) -> list[DeadMessage]:
    """Peek at up to ``limit`` dead letters; they stay in the queue, in order."""
    channel = await broker.channel()
    try:
        queue = await _dead_queue(channel, broker, worker)
        seen: list[AbstractIncomingMessage] = []
        while len(seen) < limit:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            seen.append(message)
        if seen:
            # Hand them back explicitly, all at once, in their order (also what a close does).
            await seen[-1].nack(multiple=True, requeue=True)
        return [_describe(m) for m in seen]
    finally:
        await channel.close()


async def replay_dead(broker: Broker, worker: str, *, limit: int | None = None) -> int:
    """Put dead letters back into ``worker``'s own queue for a fresh set of attempts."""
    channel = await broker.channel(publisher_confirms=True, on_return_raises=True)
    replayed = 0
    try:
        queue = await _dead_queue(channel, broker, worker)
        queue_name = broker.topology.worker_queue(worker)
        while limit is None or replayed < limit:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            exchange_name, routing_key = _origin(message)
            headers = {
                k: v for k, v in (message.headers or {}).items() if k not in _FAILURE_HEADERS
            }
            headers[ORIGINAL_EXCHANGE_HEADER] = exchange_name
            headers[ORIGINAL_ROUTING_KEY_HEADER] = routing_key
            copy = aio_pika.Message(
                body=message.body,
                headers=headers,
                content_type=message.content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message.message_id,
                type=message.type,
                timestamp=message.timestamp,
                correlation_id=message.correlation_id,
            )
            # mandatory: if the worker's queue is gone the dead letter stays, it is not dropped
            await channel.default_exchange.publish(copy, routing_key=queue_name, mandatory=True)
            await message.ack()
            replayed += 1
    finally:
        await channel.close()
    return replayed


async def purge_dead(broker: Broker, worker: str) -> int:
    """Delete every dead letter of ``worker``; returns how many there were."""
    channel = await broker.channel()
    try:
        queue = await _dead_queue(channel, broker, worker)
        result = await asyncio.wait_for(queue.purge(), timeout=30)
        return int(result.message_count or 0)
    finally:
        await channel.close()
