"""A RabbitMQ queue that holds one value: the newest message published to it.

Declared durable with `x-max-length = 1` and `x-overflow = drop-head`, so each write replaces
the previous value; reading is `basic.get` plus a requeueing `nack`, which leaves the value in
place. A per-message `expiration` lets RabbitMQ drop a value that must not outlive a deadline,
and `x-expires` removes a queue nobody declares any more. Used for the shared IDENTIFY quota
and the fatal-close block (the session store keeps its own queues the same way).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue

from spectacles.broker import BROKER_FAILURES
from spectacles.broker.broker import Broker

__all__ = ["LastValueQueue"]

TIMEOUT: Final = 5.0
DEFAULT_EXPIRES_MS: Final = 2 * 24 * 3600 * 1000


class LastValueQueue:
    """Read, replace and clear the one value of queue `name` (one operation at a time)."""

    def __init__(self, broker: Broker, name: str, *, expires_ms: int = DEFAULT_EXPIRES_MS) -> None:
        self._broker = broker
        self.name = name
        self._expires_ms = expires_ms
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._lock = asyncio.Lock()

    async def _open(self) -> AbstractQueue:
        channel = self._channel
        if channel is None or channel.is_closed or self._queue is None:
            channel = await self._broker.channel(publisher_confirms=True, timeout=TIMEOUT)
            self._channel = channel
            self._queue = await channel.declare_queue(
                self.name,
                durable=True,
                arguments={
                    "x-queue-type": "classic",
                    "x-max-length": 1,
                    "x-overflow": "drop-head",
                    "x-expires": self._expires_ms,
                },
                timeout=TIMEOUT,
            )
        return self._queue

    async def read(self) -> bytes | None:
        """The current value, left in place; None when there is none."""
        async with self._lock:
            queue = await self._open()
            message = await queue.get(no_ack=False, fail=False, timeout=TIMEOUT)
            if message is None:
                return None
            await message.nack(requeue=True)
            return message.body

    async def write(self, body: bytes, *, ttl: float | None = None) -> None:
        """Replace the value (confirmed by RabbitMQ); it vanishes after `ttl` seconds if given."""
        async with self._lock:
            await self._open()
            assert self._channel is not None
            message = aio_pika.Message(
                body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                expiration=ttl,
            )
            await self._channel.default_exchange.publish(
                message, routing_key=self.name, timeout=TIMEOUT
            )

    async def clear(self) -> None:
        """Remove the value."""
        async with self._lock:
            queue = await self._open()
            await queue.purge(timeout=TIMEOUT)

    async def close(self) -> None:
        """Close the channel (the connection belongs to the broker)."""
        channel, self._channel, self._queue = self._channel, None, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(*BROKER_FAILURES):
                await channel.close()
