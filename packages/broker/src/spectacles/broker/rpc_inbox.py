"""An RPC queue of this process alone, bound by key at run time: ``RpcInbox``.

An ``RpcServer`` serves a fixed, shared queue. Some requests are meant for exactly the process
holding some state (the HTTP interactions ingress holding Discord's request for one interaction).
An ``RpcInbox`` is an exclusive queue bound to a direct exchange with one key per such thing:
``bind(key)`` while the process holds it, ``unbind(key)`` after. A caller's mandatory request
(:class:`~spectacles.broker.rpc.RpcClient`'s ``call(key, body, exchange=...)``) reaches that
process only, and fails at once with ``PublishReturned`` once nobody holds the key. After a
reconnect the queue is declared again with every key still held.

Both sides declare the exchange (direct, durable) with :func:`declare_inbox_exchange`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from spectacles.observability import get_logger, redact

from ._backoff import Backoff
from ._translate import BROKER_FAILURES, translate
from .broker import Broker
from .delivery import ERROR_HEADER, ERROR_HEADER_MAX_CHARS
from .errors import BrokerError, BrokerUnavailable

__all__ = ["InboxHandler", "RpcInbox", "declare_inbox_exchange"]

log = get_logger(__name__)

#: ``handler(key, body, headers) -> reply body``; a raise is answered with ``x-error``.
InboxHandler = Callable[[str, bytes, Mapping[str, Any]], Awaitable[bytes]]

#: What a failed bind/unbind/declare raises underneath; translated by ``_translate``.
_TRANSPORT_ERRORS = BROKER_FAILURES


def _translate(what: str, exc: BaseException, host: str) -> BrokerError:
    """406 (exchange of another kind): ``TopologyMismatch``; lost link: ``ConnectionLost``."""
    return translate(exc, what=what, host=host)


async def declare_inbox_exchange(broker: Broker, exchange: str, *, timeout: float = 5.0) -> None:
    """Declare the direct, durable exchange that inboxes bind to (idempotent)."""
    channel = await broker.channel(timeout=timeout)
    try:
        await channel.declare_exchange(exchange, aio_pika.ExchangeType.DIRECT, durable=True)
    except _TRANSPORT_ERRORS as exc:
        raise _translate(
            f"cannot declare exchange {exchange!r}", exc, broker.settings.host
        ) from None
    finally:
        with contextlib.suppress(*_TRANSPORT_ERRORS):
            await channel.close()


class RpcInbox:
    """Serve requests routed to this process by key: ``await inbox.bind(key)``."""

    def __init__(
        self,
        broker: Broker,
        *,
        exchange: str,
        queue: str,
        handler: InboxHandler,
        prefetch: int = 64,
    ) -> None:
        if not exchange or not queue:
            raise ValueError("RpcInbox needs an exchange and a queue name")
        self._broker = broker
        self.exchange = exchange
        self.queue_name = queue
        self._handler = handler
        self._prefetch = prefetch
        self._keys: set[str] = set()
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """Whether requests can reach this process now."""
        return self._channel is not None and not self._channel.is_closed

    @property
    def keys(self) -> frozenset[str]:
        """The keys this inbox is bound with (kept across reconnects)."""
        return frozenset(self._keys)

    async def start(self) -> None:
        """Declare the exchange and the queue and consume (raises if the first attempt fails)."""
        if self._supervisor is not None:
            return
        try:
            await self._subscribe()
        except _TRANSPORT_ERRORS as exc:
            raise self._lost("subscribe", exc) from None
        self._supervisor = asyncio.create_task(self._supervise(), name=f"inbox:{self.queue_name}")

    async def stop(self) -> None:
        """Stop consuming; the exclusive queue goes away with the channel."""
        task, self._supervisor = self._supervisor, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        channel, self._channel, self._queue = self._channel, None, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.close(), 5.0)

    async def bind(self, key: str) -> None:
        """Route requests for ``key`` here; raises ``BrokerUnavailable`` while disconnected."""
        queue = self._queue
        if queue is None:
            raise BrokerUnavailable(
                f"inbox {self.queue_name!r} is not subscribed", host=self._broker.settings.host
            )
        self._keys.add(key)
        try:
            await queue.bind(self.exchange, routing_key=key)
        except BaseException as exc:
            self._keys.discard(key)
            if isinstance(exc, _TRANSPORT_ERRORS):
                raise self._lost(f"bind {key!r}", exc) from None
            raise

    async def unbind(self, key: str) -> None:
        """Stop routing ``key`` here (requests for it become unroutable)."""
        self._keys.discard(key)
        queue = self._queue
        if queue is None:
            return  # the queue went with its channel; the next one is bound without the key
        try:
            await queue.unbind(self.exchange, routing_key=key)
        except _TRANSPORT_ERRORS as exc:
            raise self._lost(f"unbind {key!r}", exc) from None

    def _lost(self, what: str, exc: BaseException) -> BrokerError:
        return _translate(
            f"inbox {self.queue_name!r}: cannot {what}", exc, self._broker.settings.host
        )

    async def _subscribe(self) -> None:
        channel = await self._broker.channel()
        await channel.set_qos(prefetch_count=self._prefetch)
        await channel.declare_exchange(self.exchange, aio_pika.ExchangeType.DIRECT, durable=True)
        queue = await channel.declare_queue(self.queue_name, exclusive=True, auto_delete=True)
        for key in list(self._keys):
            await queue.bind(self.exchange, routing_key=key)
        await queue.consume(self._on_request)
        self._channel, self._queue = channel, queue

    async def _supervise(self) -> None:
        while True:
            channel = self._channel
            if channel is not None:
                await channel.closed()
                log.warning("rpc_inbox.channel_closed", queue=self.queue_name)
            self._channel = self._queue = None
            backoff = Backoff(0.2, 10.0)
            while True:
                try:
                    await self._broker.wait_connected()
                    await self._subscribe()
                    break
                except Exception as exc:
                    if self._broker.is_closed:
                        return
                    log.warning(
                        "rpc_inbox.resubscribe_failed", queue=self.queue_name, error=repr(exc)
                    )
                await backoff.sleep()

    async def _on_request(self, message: AbstractIncomingMessage) -> None:
        headers: dict[str, Any] = {}
        try:
            body = await self._handler(
                message.routing_key or "", bytes(message.body), dict(message.headers or {})
            )
        except Exception as exc:
            log.warning("rpc_inbox.handler_failed", queue=self.queue_name, error=repr(exc))
            body = b""
            headers[ERROR_HEADER] = redact(f"{type(exc).__name__}: {exc}")[:ERROR_HEADER_MAX_CHARS]
        channel = self._channel
        if message.reply_to and channel is not None:
            reply = aio_pika.Message(
                body,
                headers=headers or None,
                correlation_id=message.correlation_id,
                content_type=message.content_type,
                delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
            )
            with contextlib.suppress(*_TRANSPORT_ERRORS):
                await channel.default_exchange.publish(reply, routing_key=message.reply_to)
        with contextlib.suppress(*_TRANSPORT_ERRORS):
            await message.ack()
