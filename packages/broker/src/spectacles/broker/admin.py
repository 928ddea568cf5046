"""Topology and inspection for tools, operators' scripts and tests, in the broker's own types.

Services declare what they need through their own classes (``Consumer``, ``Publisher``,
``LastValueStore``...); this is for everything around them: a test that deletes its queues,
counts what reached one, or reads a message back; a script that purges a queue. Each operation
runs on a channel of its own, so a refusal (which closes a channel in AMQP) never spoils the next
one, and every failure comes out as a :mod:`spectacles.broker.errors` type, never an AMQP
library's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, Self

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from ._translate import BROKER_FAILURES, translate
from .broker import Broker
from .delivery import Delivery
from .errors import BrokerError, ConnectionLost
from .settings import BrokerSettings
from .topology import DeclaredQueue, QueueSpec, declare_queue

__all__ = [
    "AccessRefused",
    "BrokerAdmin",
    "EntityLocked",
    "ExchangeKind",
    "NoSuchEntity",
    "Received",
]

ExchangeKind = Literal["direct", "fanout", "topic", "headers", "x-consistent-hash"]

TIMEOUT: Final = 10.0


class BrokerAdmin:
    """Declare, delete, count, read and publish on one supervised connection (``Broker``)."""

    def __init__(self, broker: Broker, *, owned: bool = False) -> None:
        self.broker = broker
        self._owned = owned

    @classmethod
    async def connect(
        cls, target: str | BrokerSettings, *, connection_name: str | None = None
    ) -> Self:
        """Connect to ``target`` (an AMQP URL or settings); closing the admin closes it."""
        settings = BrokerSettings(amqp_url=target) if isinstance(target, str) else target
        return cls(await Broker.connect(settings, connection_name=connection_name), owned=True)

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

    async def declare_spec(self, spec: QueueSpec) -> DeclaredQueue:
        """Declare ``spec``'s queue as a ``Consumer`` does: its ``.dead`` queue, the DLX, bindings.

        The dead-letter exchange is the one of this admin's group (``BrokerSettings.group``).
        """
        with self._translated(f"cannot declare queue {spec.name!r}"):
            return await declare_queue(self.broker.channel, self.broker.topology, spec)

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
        counts = await self._counts(name)
        return None if counts is None else counts[0]

    async def consumers(self, name: str) -> int | None:
        """How many consumers queue ``name`` has; None when it does not exist."""
        counts = await self._counts(name)
        return None if counts is None else counts[1]

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

    async def get(self, name: str, *, ack: bool = True) -> Received | None:
        """Take one message from queue ``name`` (or None when it is empty).

        ``ack=False`` leaves it in the queue (it returns when this call's channel closes).
        """
        async with self._channel(f"cannot read queue {name!r}") as channel:
            queue = await channel.declare_queue(name, passive=True, timeout=TIMEOUT)
            message = await queue.get(no_ack=ack, fail=False, timeout=TIMEOUT)
            return None if message is None else _received(message)

    async def drain(self, name: str, *, limit: int = 100_000) -> list[Received]:
        """Take every message queue ``name`` holds now (at most ``limit``), in order."""
        taken: list[Received] = []
        async with self._channel(f"cannot read queue {name!r}") as channel:
            queue = await channel.declare_queue(name, passive=True, timeout=TIMEOUT)
            while len(taken) < limit:
                message = await queue.get(no_ack=True, fail=False, timeout=TIMEOUT)
                if message is None:
                    break
                taken.append(_received(message))
        return taken

    @contextlib.asynccontextmanager
    async def consume(self, name: str) -> AsyncIterator[AsyncIterator[Received]]:
        """Queue ``name``'s messages as they arrive, each taken (acked) as it is handed out.

        The subscription starts on entering (a refusal raises there); what was not handed out
        when the block ends stays in the queue. Iteration ends if RabbitMQ cancels the
        subscription (the queue was deleted); a lost connection raises ``ConnectionLost``.
        """
        what = f"cannot consume queue {name!r}"
        with self._translated(what):
            channel = await self.broker.channel(timeout=TIMEOUT)
        try:
            inbox: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
            with self._translated(what):
                await channel.set_qos(prefetch_count=1, timeout=TIMEOUT)
                underlay = await channel.get_underlay_channel()
                queue = await channel.get_queue(name, ensure=False)
                tag = await queue.consume(inbox.put, timeout=TIMEOUT)

            def cancelled(frame: Any) -> None:
                if getattr(frame, "consumer_tag", None) == tag:
                    inbox.put_nowait(None)

            underlay.on_consumer_cancel_callbacks.add(cancelled)
            channel.close_callbacks.add(lambda *_: inbox.put_nowait(None))
            stream = self._stream(inbox, channel, what)
            async with contextlib.aclosing(stream):
                yield stream
        finally:
            if not channel.is_closed:
                with contextlib.suppress(*BROKER_FAILURES):
                    await channel.close()

    async def take(self, name: str, count: int = 1, *, timeout: float = 10.0) -> list[Received]:
        """Wait for ``count`` messages of queue ``name`` and take them, in order.

        ``TimeoutError`` (saying how many came) when fewer arrive within ``timeout`` seconds.
        """
        taken: list[Received] = []
        try:
            async with asyncio.timeout(timeout), self.consume(name) as messages:
                async for message in messages:
                    taken.append(message)
                    if len(taken) >= count:
                        return taken
        except TimeoutError:
            raise TimeoutError(
                f"{len(taken)} of {count} messages arrived in queue {name!r} within {timeout}s"
            ) from None
        raise NoSuchEntity(f"queue {name!r} went away after {len(taken)} of {count} messages")

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        headers: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        content_type: str | None = None,
        type: str | None = None,
        expiration: float | None = None,
        persistent: bool = True,
        mandatory: bool = False,
    ) -> None:
        """Publish one message and wait for RabbitMQ's confirm (``""`` is the default exchange).

        A nack raises ``PublishNacked``; with ``mandatory``, an unroutable message raises
        ``PublishReturned``. ``expiration`` is the message's TTL in seconds.
        """
        message = aio_pika.Message(
            body,
            headers=dict(headers or {}),
            message_id=message_id,
            content_type=content_type,
            type=type,
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

    async def _stream(
        self,
        inbox: asyncio.Queue[AbstractIncomingMessage | None],
        channel: AbstractChannel,
        what: str,
    ) -> AsyncGenerator[Received, None]:
        with self._translated(what):
            while (message := await inbox.get()) is not None:
                await message.ack()
                yield _received(message)
            if channel.is_closed:
                raise ConnectionLost(f"{what}: the channel closed", host=self.broker.settings.host)

    async def _counts(self, name: str) -> tuple[int, int] | None:
        """(ready messages, consumers) of queue ``name``; None when it does not exist."""
        try:
            async with self._channel(f"cannot inspect queue {name!r}") as channel:
                queue = await channel.declare_queue(name, passive=True, timeout=TIMEOUT)
                result = queue.declaration_result
                return result.message_count or 0, result.consumer_count or 0
        except NoSuchEntity:
            return None

    @contextlib.asynccontextmanager
    async def _channel(
        self, what: str, *, confirms: bool = False
    ) -> AsyncIterator[AbstractChannel]:
        with self._translated(what):
            channel = await self.broker.channel(
                publisher_confirms=confirms, on_return_raises=confirms, timeout=TIMEOUT
            )
        try:
            with self._translated(what):
                yield channel
        finally:
            if not channel.is_closed:
                with contextlib.suppress(*BROKER_FAILURES):
                    await channel.close()

    @contextlib.contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        """Raise what fails inside as a broker error whose message starts with ``what``."""
        try:
            yield
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            raise NoSuchEntity(f"{what}: {exc}") from None
        except aiormq.exceptions.ChannelLockedResource as exc:
            raise EntityLocked(f"{what}: {exc}") from None
        except aiormq.exceptions.ChannelAccessRefused as exc:
            raise AccessRefused(f"{what}: {exc}") from None
        except BROKER_FAILURES as exc:
            raise translate(exc, what=what, host=self.broker.settings.host) from None


class NoSuchEntity(BrokerError):
    """RabbitMQ answered 404: the queue (or exchange) does not exist."""


class EntityLocked(BrokerError):
    """RabbitMQ answered 405: the queue is another connection's exclusive queue."""


class AccessRefused(BrokerError):
    """RabbitMQ answered 403: the user has no permission for that (configure, write or read)."""


@dataclass(frozen=True, slots=True)
class Received(Delivery):
    """A message read back by the admin: a ``Delivery``, and whether it was published persistent."""

    persistent: bool = False


def _received(message: AbstractIncomingMessage) -> Received:
    return Received(
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
        persistent=message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT,
    )
