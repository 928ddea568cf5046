"""Delayed delivery without plugins: ``publish_later`` parks a message in a holding queue.

RabbitMQ 3.10/4.0 have no delayed publish of their own. A *holding queue* does it: nobody consumes
it, its ``x-message-ttl`` is the delay, and its dead-letter exchange and routing key are the
target, so RabbitMQ moves each message to the target once it has waited that long. The message is
durable and confirmed before ``publish_later`` returns: the publisher may exit the next instant.

- **One queue per target and delay (a bucket)**, never per-message TTL on a shared queue: RabbitMQ
  expires messages only at the head of a queue, so a short delay would wait behind a long one. In
  a bucket every message has the same TTL and they expire in publish order. Delays are rounded up
  to two significant digits (at most 10 % later, never earlier) so callers with varying delays
  share a bounded set of buckets.
- **Cleaned up by RabbitMQ**: each publish re-declares its bucket, and ``x-expires`` deletes a
  bucket nobody published to for twice its delay (at least its delay plus ten minutes), by when
  its last message has long been delivered.
- **Quorum by default**, so a delayed message survives the loss of a node. Dead-lettering from a
  quorum queue is at-most-once unless the queue has ``x-dead-letter-strategy=at-least-once``, which
  RabbitMQ honours only with ``x-overflow=reject-publish``: then a message is kept until the target
  queue has confirmed it (a target that is down or not bound yet delays it, never loses it).
  ``x-delivery-limit`` is at its maximum because each :func:`scheduled` look returns the messages
  and counts as a delivery (RabbitMQ 4 would otherwise dead-letter, i.e. deliver early, after 20).
  ``queue_type="classic"`` is for a single-node broker; its dead-lettering is at-most-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel

from ._translate import BROKER_FAILURES, translate
from .broker import Broker
from .errors import TopologyMismatch
from .publisher import Publisher
from .topology import QueueType

__all__ = ["Scheduled", "delay_queue_arguments", "delay_queue_name", "publish_later", "scheduled"]

_NO_DELIVERY_LIMIT: Final = 2**31 - 1
_MIN_EXPIRES_MARGIN_MS: Final = 600_000
_MAX_NAME: Final = 255


@dataclass(frozen=True, slots=True)
class Scheduled:
    """A message waiting in a holding queue (seen by :func:`scheduled`, left in place)."""

    body: bytes
    message_id: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)


def bucket_ms(delay: float) -> int:
    """The delay in ms a message of ``delay`` seconds waits: rounded up to 2 significant digits."""
    if not math.isfinite(delay) or delay <= 0:
        raise ValueError(f"delay must be a finite number of seconds > 0, got {delay}")
    ms = max(1, math.ceil(delay * 1000 - 1e-6))
    step = 10 ** max(0, len(str(ms)) - 2)
    return int(-(-ms // step) * step)


def delay_queue_name(exchange: str, routing_key: str, delay: float) -> str:
    """``{exchange}.delayed.{routing_key}.{ms}ms``: the holding queue of that target and delay."""
    name = f"{exchange or 'default'}.delayed.{routing_key}.{bucket_ms(delay)}ms"
    if len(name.encode()) > _MAX_NAME:
        raise ValueError(f"holding queue name {name!r} is over {_MAX_NAME} bytes")
    return name


def delay_queue_arguments(
    exchange: str, routing_key: str, delay: float, queue_type: QueueType = "quorum"
) -> dict[str, Any]:
    """Arguments of the holding queue: the TTL, the target, its own expiry (see the module doc)."""
    ms = bucket_ms(delay)
    arguments: dict[str, Any] = {
        "x-queue-type": queue_type,
        "x-message-ttl": ms,
        "x-expires": max(2 * ms, ms + _MIN_EXPIRES_MARGIN_MS),
        "x-dead-letter-exchange": exchange,
        "x-dead-letter-routing-key": routing_key,
    }
    if queue_type == "quorum":
        arguments["x-dead-letter-strategy"] = "at-least-once"
        arguments["x-overflow"] = "reject-publish"
        arguments["x-delivery-limit"] = _NO_DELIVERY_LIMIT
    return arguments


async def publish_later(
    target: Broker | Publisher,
    exchange: str,
    routing_key: str,
    body: bytes,
    *,
    delay: float,
    headers: Mapping[str, Any] | None = None,
    message_id: str | None = None,
    content_type: str | None = "application/json",
    queue_type: QueueType = "quorum",
    timeout: float = 10.0,
) -> str:
    """Deliver ``body`` to ``exchange``/``routing_key`` after ``delay`` seconds (up to 10 % later).

    Returns the holding queue's name once RabbitMQ confirmed the message. Raises
    ``BrokerUnavailable`` / ``ConnectionLost`` (not parked: treat as not sent), ``PublishNacked``,
    ``PublishReturned`` or ``TopologyMismatch`` (the bucket exists with other arguments, e.g.
    another ``queue_type``). Delivery is at least once: de-duplicate on ``message_id``.
    """
    name = delay_queue_name(exchange, routing_key, delay)
    arguments = delay_queue_arguments(exchange, routing_key, delay, queue_type)
    if isinstance(target, Publisher):
        # Declared again on each publish: that renews x-expires (a publish alone does not).
        await target.declare_queue(name, arguments)
        await target.publish(
            name,
            body,
            exchange="",
            headers=headers,
            message_id=message_id,
            content_type=content_type,
            mandatory=True,
        )
        return name
    message = aio_pika.Message(
        body,
        headers=dict(headers or {}),
        message_id=message_id,
        content_type=content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    async with _channel(target, timeout, name, confirms=True) as channel:
        await channel.declare_queue(name, durable=True, arguments=arguments)
        await channel.default_exchange.publish(
            message, routing_key=name, mandatory=True, timeout=timeout
        )
    return name


async def scheduled(
    broker: Broker,
    exchange: str,
    routing_key: str,
    *,
    delay: float,
    limit: int = 1000,
    timeout: float = 5.0,
) -> list[Scheduled]:
    """The messages waiting in that target's holding queue for ``delay`` (at most ``limit``).

    They stay where they are: they are got without ack and return, in order and with their
    remaining time, when the channel closes. (On a quorum queue returned messages go behind
    those not looked at: when the bucket holds more than ``limit``, the ones seen may come up to
    one delay late.) A bucket that does not exist holds nothing.
    Raises ``BrokerUnavailable`` (or its ``ConnectionLost``) when RabbitMQ cannot answer within
    ``timeout``.
    """
    name = delay_queue_name(exchange, routing_key, delay)
    found: list[Scheduled] = []
    async with _channel(broker, timeout, name) as channel, asyncio.timeout(timeout):
        try:
            queue = await channel.declare_queue(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return []
        # Not bounded by declare-ok's message count: a quorum queue may report it late.
        while len(found) < limit and (message := await queue.get(no_ack=False, fail=False)):
            found.append(Scheduled(message.body, message.message_id, message.headers))
    return found


@contextlib.asynccontextmanager
async def _channel(
    broker: Broker, timeout: float, name: str, *, confirms: bool = False
) -> AsyncIterator[AbstractChannel]:
    """A channel for one operation, closed after it; AMQP errors become broker errors."""
    channel = await broker.channel(
        publisher_confirms=confirms, on_return_raises=confirms, timeout=timeout
    )
    try:
        yield channel
    except BROKER_FAILURES as exc:
        error = translate(exc, what=f"holding queue {name!r}", host=broker.settings.host)
        if isinstance(error, TopologyMismatch):
            error.queue = name
        raise error from None
    finally:
        if not channel.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.close(), timeout)
