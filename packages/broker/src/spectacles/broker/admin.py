"""Topology and inspection for tools, operators' scripts and tests, in the broker's own types.

Services declare what they need through their own classes (``Consumer``, ``Publisher``,
``LastValueStore``...); this is for everything around them: a test that deletes its queues,
counts what reached one, or reads a message back; a script that purges a queue. Each operation
runs on a channel of its own, so a refusal (which closes a channel in AMQP) never spoils the next
one, and every failure comes out as a :mod:`spectacles.broker.errors` type, never an AMQP
library's.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Final, Literal, Self

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from ._translate import BROKER_FAILURES, translate
from .broker import Broker
from .delivery import Delivery
from .errors import BrokerError
from .settings import BrokerSettings

__all__ = ["BrokerAdmin", "EntityLocked", "ExchangeKind", "NoSuchEntity"]

ExchangeKind = Literal["direct", "fanout", "topic", "headers", "x-consistent-hash"]

TIMEOUT: Final = 10.0


class BrokerAdmin:
    """Declare, delete, count, read and publish on one supervised connection (``Broker``)."""

    def __init__(self, broker: Broker, *, owned: bool = False) -> None:
        self.broker = broker
        self._owned = owned

    @classmethod
    async def connect(cls, target: str | BrokerSettings) -> Self:
        """Connect to ``target`` (an AMQP URL or settings); closing the admin closes it."""
        settings = BrokerSettings(amqp_url=target) if isinstance(target, str) else target
        return cls(await Broker.connect(settings), owned=True)

    async def close(self) -> None:
        """Close the connection when this admin opened it."""
        if self._owned:
            await self.broker.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- topology -------------------------------------------------------------------------------

    async def declare_exchange(
        self, name: str, kind: ExchangeKind = "topic", *, durable: bool = True
    ) -> None:
        """Declare exchange ``name`` (idempotent; other arguments -> ``TopologyMismatch``)."""
        async with self._channel(f"cannot declare exchange {name!r}") as channel:
            await channel.declare_exchange(name, kind, durable=durable, timeout=TIMEOUT)

    async def declare_queue(
        self,
        name: str,
        *,
        durable: bool = True,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: Mapping[str, Any] | None = None,
        bind: tuple[str, str] | None = None,
    ) -> int:
        """Declare queue ``name`` (bound to ``(exchange, routing_key)`` if given); its depth."""
        async with self._channel(f"cannot declare queue {name!r}") as channel:
            queue = await channel.declare_queue(
                name,
                durable=durable,
                exclusive=exclusive,
                auto_delete=auto_delete,
                arguments=dict(arguments or {}),
                timeout=TIMEOUT,
            )
            if bind is not None:
                await queue.bind(bind[0], bind[1], timeout=TIMEOUT)
            return queue.declaration_result.message_count or 0

    async def bind(self, queue: str, exchange: str, routing_key: str) -> None:
        """Bind ``queue`` to ``exchange`` with ``routing_key``."""
        async with self._channel(f"cannot bind {queue!r} to {exchange!r}") as channel:
            bound = await channel.get_queue(queue, ensure=False)
            await bound.bind(exchange, routing_key, timeout=TIMEOUT)

    async def delete_queue(self, name: str) -> None:
        """Delete queue ``name`` with whatever it holds; a queue that does not exist is fine."""
        async with self._channel(f"cannot delete queue {name!r}") as channel:
            await channel.queue_delete(name, timeout=TIMEOUT)

    async def delete_exchange(self, name: str) -> None:
        """Delete exchange ``name``; one that does not exist is fine."""
        async with self._channel(f"cannot delete exchange {name!r}") as channel:
            await channel.exchange_delete(name, timeout=TIMEOUT)

    async def cleanup(
        self, *, queues: tuple[str, ...] = (), exchanges: tuple[str, ...] = ()
    ) -> None:
        """Delete every queue, then every exchange named, ignoring the ones already gone."""
        for queue in queues:
            await self.delete_queue(queue)
        for exchange in exchanges:
            await self.delete_exchange(exchange)

    # -- inspection -----------------------------------------------------------------------------

    async def depth(self, name: str) -> int | None:
        """How many messages queue ``name`` holds ready; None when it does not exist."""
        try:
            async with self._channel(f"cannot inspect queue {name!r}") as channel:
                queue = await channel.declare_queue(name, passive=True, timeout=TIMEOUT)
                return queue.declaration_result.message_count or 0
        except NoSuchEntity:
            return None

    async def exists(self, name: str) -> bool:
        """Does queue ``name`` exist (whoever declared it, exclusive ones included)?"""
        try:
            async with self._channel(f"cannot inspect queue {name!r}") as channel:
                await channel.declare_queue(name, passive=True, timeout=TIMEOUT)
        except NoSuchEntity:
            return False
        except EntityLocked:
            return True  # another connection's exclusive queue
        return True

    async def purge(self, name: str) -> int:
        """Drop every ready message of queue ``name``; how many there were."""
        async with self._channel(f"cannot purge queue {name!r}") as channel:
            queue = await channel.get_queue(name, ensure=False)
            result = await queue.purge(timeout=TIMEOUT)
            return int(getattr(result, "message_count", 0) or 0)

    async def get(self, name: str, *, ack: bool = True) -> Delivery | None:
        """Take one message from queue ``name`` (or None when it is empty).

        ``ack=False`` leaves it in the queue (it returns when this call's channel closes).
        """
        async with self._channel(f"cannot read queue {name!r}") as channel:
            queue = await channel.declare_queue(name, passive=True, timeout=TIMEOUT)
            message = await queue.get(no_ack=ack, fail=False, timeout=TIMEOUT)
            return None if message is None else _delivery(message)

    async def drain(self, name: str, *, limit: int = 100_000) -> list[Delivery]:
        """Take every message queue ``name`` holds now (at most ``limit``), in order."""
        taken: list[Delivery] = []
        async with self._channel(f"cannot read queue {name!r}") as channel:
            queue = await channel.declare_queue(name, passive=True, timeout=TIMEOUT)
            while len(taken) < limit:
                message = await queue.get(no_ack=True, fail=False, timeout=TIMEOUT)
                if message is None:
                    break
                taken.append(_delivery(message))
        return taken

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        headers: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        content_type: str | None = None,
        expiration: float | None = None,
        persistent: bool = True,
        mandatory: bool = False,
    ) -> None:
        """Publish one message and wait for RabbitMQ's confirm (``""`` is the default exchange).

        A nack raises ``PublishNacked``; with ``mandatory``, an unroutable message raises
        ``PublishReturned``.
        """
        message = aio_pika.Message(
            body,
            headers=dict(headers or {}),
            message_id=message_id,
            content_type=content_type,
            expiration=expiration,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT if persistent else None,
        )
        what = f"cannot publish to {exchange or '(default)'!r} / {routing_key!r}"
        async with self._channel(what, confirms=True) as channel:
            target = await channel.get_exchange(exchange, ensure=False) if exchange else None
            publish_to = target if target is not None else channel.default_exchange
            await publish_to.publish(
                message, routing_key=routing_key, mandatory=mandatory, timeout=TIMEOUT
            )

    # -- plumbing -------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _channel(
        self, what: str, *, confirms: bool = False
    ) -> AsyncIterator[AbstractChannel]:
        try:
            channel = await self.broker.channel(
                publisher_confirms=confirms, on_return_raises=confirms, timeout=TIMEOUT
            )
        except BROKER_FAILURES as exc:
            raise translate(exc, what=what, host=self.broker.settings.host) from None
        try:
            yield channel
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            raise NoSuchEntity(f"{what}: {exc}") from None
        except aiormq.exceptions.ChannelLockedResource as exc:
            raise EntityLocked(f"{what}: {exc}") from None
        except BROKER_FAILURES as exc:
            raise translate(exc, what=what, host=self.broker.settings.host) from None
        finally:
            if not channel.is_closed:
                with contextlib.suppress(*BROKER_FAILURES):
                    await channel.close()


class NoSuchEntity(BrokerError):
    """RabbitMQ answered 404: the queue (or exchange) does not exist."""


class EntityLocked(BrokerError):
    """RabbitMQ answered 405: the queue is another connection's exclusive queue."""


def _delivery(message: AbstractIncomingMessage) -> Delivery:
    return Delivery(
        body=message.body,
        routing_key=message.routing_key or "",
        headers=dict(message.headers or {}),
        message_id=message.message_id,
        type=message.type,
        timestamp=message.timestamp,
        redelivered=bool(message.redelivered),
        exchange=message.exchange or "",
        content_type=message.content_type,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
    )
