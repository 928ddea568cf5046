"""Request/response between services over RabbitMQ's direct reply-to.

The client consumes the pseudo-queue ``amq.rabbitmq.reply-to`` (no ack, no queue to declare or
clean up), tags each request with a correlation id and maps replies back to waiting futures.
Requests are published ``mandatory`` with a confirm, so a call nobody serves fails at once with
``PublishReturned`` instead of running into its timeout, and they carry ``expiration = timeout``
so a server never works on a request its caller has given up on.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, Final

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from spectacles.observability import get_logger, redact

from ._backoff import Backoff
from ._translate import BROKER_FAILURES, LINK_ERRORS
from .broker import Broker
from .delivery import ERROR_HEADER, ERROR_HEADER_MAX_CHARS
from .errors import (
    BrokerUnavailable,
    ConnectionLost,
    PublishNacked,
    PublishReturned,
    RpcError,
    RpcTimeout,
)

__all__ = ["REPLY_TO", "RpcClient", "RpcHandler", "RpcServer"]

log = get_logger(__name__)

#: RabbitMQ's direct reply-to pseudo-queue.
REPLY_TO: Final = "amq.rabbitmq.reply-to"

RpcHandler = Callable[[bytes, Mapping[str, Any]], Awaitable[bytes]]


class RpcClient:
    """Call RPC servers: ``reply = await client.call("queue-name", body, timeout=2.0)``."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._channel: AbstractChannel | None = None
        self._pending: dict[str, asyncio.Future[aiormq.abc.DeliveredMessage]] = {}
        self._lock = asyncio.Lock()
        self._closed = False

    async def call(
        self,
        routing_key: str,
        body: bytes,
        *,
        exchange: str = "",
        timeout: float = 5.0,
        headers: Mapping[str, Any] | None = None,
        content_type: str | None = "application/json",
    ) -> bytes:
        """Send ``body`` and return the reply body.

        Raises :class:`RpcTimeout` after ``timeout`` seconds, :class:`PublishReturned` when no
        queue takes the request, :class:`RpcError` when the server's handler failed, and
        :class:`ConnectionLost` when the connection dropped before the reply arrived.
        """
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        correlation_id = uuid.uuid4().hex
        future: asyncio.Future[aiormq.abc.DeliveredMessage] = loop.create_future()
        self._pending[correlation_id] = future
        try:
            async with asyncio.timeout_at(deadline):
                channel = await self._ready_channel()
                exchange_obj = (
                    channel.default_exchange
                    if exchange == ""
                    else await channel.get_exchange(exchange, ensure=False)
                )
                request = aio_pika.Message(
                    body,
                    headers=dict(headers) if headers else None,
                    content_type=content_type,
                    correlation_id=correlation_id,
                    reply_to=REPLY_TO,
                    expiration=timeout,
                    delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
                )
                try:
                    await exchange_obj.publish(request, routing_key=routing_key, mandatory=True)
                except aiormq.exceptions.PublishError:
                    raise PublishReturned(
                        f"no queue takes RPC requests for {routing_key!r} on exchange "
                        f"{exchange!r} (is the server running?)",
                        exchange=exchange,
                        routing_key=routing_key,
                    ) from None
                except aiormq.exceptions.DeliveryError:
                    raise PublishNacked(
                        f"RabbitMQ refused the RPC request for {routing_key!r}",
                        exchange=exchange,
                        routing_key=routing_key,
                    ) from None
                except LINK_ERRORS as exc:
                    raise ConnectionLost(
                        f"connection lost while sending RPC request for {routing_key!r}: {exc}",
                        host=self._broker.settings.host,
                    ) from None
                reply = await future
        except TimeoutError:
            raise RpcTimeout(
                f"no reply to RPC {routing_key!r} within {timeout}s",
                routing_key=routing_key,
                timeout=timeout,
            ) from None
        finally:
            self._pending.pop(correlation_id, None)
        reply_headers = reply.header.properties.headers or {}
        error = reply_headers.get(ERROR_HEADER)
        if error is not None:
            text = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
            raise RpcError(
                f"RPC {routing_key!r} failed on the server: {text}",
                remote_error=text,
                routing_key=routing_key,
            )
        return bytes(reply.body)

    async def close(self) -> None:
        """Fail pending calls and close the channel."""
        self._closed = True
        channel, self._channel = self._channel, None
        self._fail_pending(channel)
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(*BROKER_FAILURES):
                await channel.close()

    async def _ready_channel(self) -> AbstractChannel:
        channel = self._channel
        if channel is not None and not channel.is_closed:
            return channel
        async with self._lock:
            if self._closed:
                raise BrokerUnavailable("RPC client was closed", host=self._broker.settings.host)
            channel = self._channel
            if channel is None or channel.is_closed:
                channel = await self._broker.channel(publisher_confirms=True, on_return_raises=True)
                underlay = await channel.get_underlay_channel()
                await underlay.basic_consume(REPLY_TO, self._on_reply, no_ack=True)
                channel.close_callbacks.add(self._fail_pending)
                self._channel = channel
            return channel

    async def _on_reply(self, message: aiormq.abc.DeliveredMessage) -> None:
        correlation_id = message.header.properties.correlation_id
        future = self._pending.get(correlation_id or "")
        if future is not None and not future.done():
            future.set_result(message)

    def _fail_pending(self, sender: object, exc: BaseException | None = None) -> None:
        # Replies to the old channel's reply-to address can never arrive on a new channel.
        for future in self._pending.values():
            if not future.done():
                future.set_exception(
                    ConnectionLost(
                        "connection lost while waiting for an RPC reply",
                        host=self._broker.settings.host,
                    )
                )


class RpcServer:
    """Serve RPC requests from ``queue`` with ``handler(body, headers) -> reply body``.

    The queue is classic, non-durable and auto-deleted with its last consumer, so calls fail
    fast (``PublishReturned``) while no server runs. A handler exception is answered with an
    empty body and the ``x-error`` header, which the client raises as :class:`RpcError`.
    """

    def __init__(
        self,
        broker: Broker,
        queue: str,
        handler: RpcHandler,
        *,
        prefetch: int = 16,
        stop_timeout: float = 10.0,
    ) -> None:
        if not queue:
            raise ValueError("RPC queue name must not be empty")
        self._broker = broker
        self.queue_name = queue
        self._handler = handler
        self._prefetch = prefetch
        self._stop_timeout = stop_timeout
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._stopping = False

    async def start(self) -> None:
        """Declare the queue and start serving (raises if the first attempt fails)."""
        if self._supervisor is not None:
            return
        self._stopping = False
        await self._subscribe()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"rpc:{self.queue_name}")

    async def stop(self) -> None:
        """Stop taking requests, answer the ones in flight (bounded), close the channel."""
        self._stopping = True
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        channel, queue, tag = self._channel, self._queue, self._consumer_tag
        self._channel = self._queue = self._consumer_tag = None
        alive = channel is not None and not channel.is_closed
        if alive and queue is not None and tag is not None:
            with contextlib.suppress(*BROKER_FAILURES):
                await asyncio.wait_for(queue.cancel(tag), 5.0)
        if self._in_flight:
            _, pending = await asyncio.wait(set(self._in_flight), timeout=self._stop_timeout)
            for task in pending:
                task.cancel()
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(*BROKER_FAILURES):
                await asyncio.wait_for(channel.close(), 5.0)

    async def _subscribe(self) -> None:
        channel = await self._broker.channel()
        await channel.set_qos(prefetch_count=self._prefetch)
        queue = await channel.declare_queue(self.queue_name, durable=False, auto_delete=True)
        self._consumer_tag = await queue.consume(partial(self._on_request, channel))
        self._channel, self._queue = channel, queue

    async def _supervise(self) -> None:
        while not self._stopping:
            channel = self._channel
            if channel is not None:
                await channel.closed()
                if self._stopping:
                    return
                log.warning("rpc_server.channel_closed", queue=self.queue_name)
            self._channel = None
            backoff = Backoff(0.2, 10.0)
            while not self._stopping:
                try:
                    await self._broker.wait_connected()
                    await self._subscribe()
                    break
                except BrokerUnavailable:
                    if self._broker.is_closed:
                        return
                except Exception as exc:
                    log.warning(
                        "rpc_server.resubscribe_failed", queue=self.queue_name, error=repr(exc)
                    )
                await backoff.sleep()

    async def _on_request(self, channel: AbstractChannel, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            await self._answer(channel, message)
        finally:
            if task is not None:
                self._in_flight.discard(task)

    async def _answer(self, channel: AbstractChannel, message: AbstractIncomingMessage) -> None:
        headers: dict[str, Any] = {}
        try:
            body = await self._handler(message.body, dict(message.headers or {}))
        except Exception as exc:
            log.warning("rpc_server.handler_failed", queue=self.queue_name, error=repr(exc))
            body = b""
            # The caller may log or store it: scrub registered secrets (the token, whose HTTP
            # errors quote it) and URL passwords, as the consumer does for dead letters.
            error = redact(f"{type(exc).__name__}: {exc}")
            headers[ERROR_HEADER] = error[:ERROR_HEADER_MAX_CHARS]
        try:
            if message.reply_to:
                reply = aio_pika.Message(
                    body,
                    headers=headers or None,
                    correlation_id=message.correlation_id,
                    content_type=message.content_type,
                    delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
                )
                await channel.default_exchange.publish(reply, routing_key=message.reply_to)
            else:
                log.warning("rpc_server.no_reply_to", queue=self.queue_name)
            await message.ack()
        except LINK_ERRORS:
            pass  # the request was not acked; RabbitMQ redelivers it to another server
