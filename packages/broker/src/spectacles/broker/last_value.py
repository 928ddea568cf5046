"""A RabbitMQ queue that holds one value: the newest message written to it.

Declared durable with `x-max-length = 1` and `x-overflow = drop-head`, so each write replaces the
previous value; reading is `basic.get` plus a requeueing `nack`, which leaves the value in place.
A per-write `ttl` (message `expiration`) lets RabbitMQ drop a value that must not outlive a
deadline, and `x-expires` removes a queue nobody declares any more. Writes are confirmed.

`quorum` queues (replicated on a cluster; last-value, per-message TTL and `x-expires` from
RabbitMQ 3.10) get the highest `x-delivery-limit`: each read's requeue counts as a delivery, and
RabbitMQ 4 would drop the value after 20 reads by default (-1, "no limit" on 4, drops at once on
3.x). A queue that exists with the other type keeps it (see `queue_type.declarable_type`).

Errors are `spectacles.broker.errors` types: `BrokerUnavailable` (`ConnectionLost`) when RabbitMQ
cannot be reached or the connection died, `BrokerError` when RabbitMQ refused the operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractQueue

from .broker import CONNECTION_ERRORS, Broker
from .errors import BrokerError, ConnectionLost
from .queue_type import declarable_type
from .topology import QueueType

__all__ = ["DEFAULT_EXPIRES_MS", "LastValueStore", "last_value_arguments"]

TIMEOUT: Final = 5.0
DEFAULT_EXPIRES_MS: Final = 2 * 24 * 3600 * 1000
# Publishing does not count as use for `x-expires`: a queue only ever written to is declared
# again this often (seconds), long before it could expire.
REDECLARE_AFTER: Final = 3600.0
_NO_DELIVERY_LIMIT: Final = 2**31 - 1


def last_value_arguments(queue_type: QueueType, expires_ms: int) -> dict[str, Any]:
    """The queue arguments of a last-value queue of `queue_type`."""
    arguments: dict[str, Any] = {
        "x-queue-type": queue_type,
        "x-max-length": 1,
        "x-overflow": "drop-head",
        "x-expires": expires_ms,
    }
    if queue_type == "quorum":
        arguments["x-delivery-limit"] = _NO_DELIVERY_LIMIT
    return arguments


class LastValueStore:
    """Read, replace and clear the one value of queue `name` (one operation at a time).

    The queue is declared once per channel (and again every `REDECLARE_AFTER` seconds); the
    channel is reopened after a reconnect of `broker`.
    """

    def __init__(
        self,
        broker: Broker,
        name: str,
        *,
        queue_type: QueueType = "classic",
        expires_ms: int = DEFAULT_EXPIRES_MS,
        timeout: float = TIMEOUT,
    ) -> None:
        self._broker = broker
        self.name = name
        self._wanted: QueueType = queue_type
        self._type: QueueType | None = None  # what the queue has, once known
        self._expires_ms = expires_ms
        self._timeout = timeout
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._declared_at = 0.0
        self._lock = asyncio.Lock()

    async def read(self) -> bytes | None:
        """The current value, left in place; None when there is none."""
        async with self._operation() as queue:
            message = await queue.get(no_ack=False, fail=False, timeout=self._timeout)
            if message is None:
                return None
            await message.nack(requeue=True)
            return message.body

    async def write(
        self, body: bytes, *, ttl: float | None = None, message_id: str | None = None
    ) -> None:
        """Replace the value (confirmed by RabbitMQ); it vanishes after `ttl` seconds if given."""
        async with self._operation():
            assert self._channel is not None
            message = aio_pika.Message(
                body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                expiration=ttl or None,
                message_id=message_id,
            )
            await self._channel.default_exchange.publish(
                message, routing_key=self.name, timeout=self._timeout
            )

    async def clear(self) -> None:
        """Remove the value."""
        async with self._operation() as queue:
            await queue.purge(timeout=self._timeout)

    async def close(self) -> None:
        """Close the channel (the connection belongs to the broker)."""
        channel, self._channel, self._queue = self._channel, None, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(*CONNECTION_ERRORS, aiormq.exceptions.AMQPError):
                await channel.close()

    @contextlib.asynccontextmanager
    async def _operation(self) -> AsyncIterator[AbstractQueue]:
        """One operation at a time, on a declared queue, its errors as broker errors."""
        async with self._lock:
            try:
                yield await self._open()
            except BrokerError:
                raise
            except CONNECTION_ERRORS as exc:
                raise ConnectionLost(
                    f"{self.name}: {type(exc).__name__}: {exc}", host=self._broker.settings.host
                ) from None
            except (aiormq.exceptions.AMQPError, RuntimeError) as exc:
                # A refusal closes the channel: the next operation opens a new one.
                raise BrokerError(f"{self.name}: {type(exc).__name__}: {exc}") from None

    async def _open(self) -> AbstractQueue:
        channel = self._channel
        if channel is None or channel.is_closed:
            channel = await self._broker.channel(publisher_confirms=True, timeout=self._timeout)
            self._channel, self._queue = channel, None
        now = time.monotonic()
        if self._queue is None or now - self._declared_at >= REDECLARE_AFTER:
            if self._type is None:
                self._type = await self._declarable_type()
            self._queue = await channel.declare_queue(
                self.name,
                durable=True,
                arguments=last_value_arguments(self._type, self._expires_ms),
                timeout=self._timeout,
            )
            self._declared_at = now
        return self._queue

    async def _declarable_type(self) -> QueueType:
        if self._wanted == "classic":
            return "classic"
        arguments = last_value_arguments(self._wanted, self._expires_ms)
        return await declarable_type(self._broker, self.name, self._wanted, arguments)
