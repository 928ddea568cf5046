"""Interactions waiting for a worker's answer, reachable through RabbitMQ by their id.

The ingress owns one exclusive queue bound to ``{group}.interactions``; while an interaction
waits, the queue is bound with its id as routing key, so the REST proxy's offer of the worker's
callback reaches this process (and only this one). Unbound again once answered or given up, an
offer for it is unroutable and the proxy sends it to Discord instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from typing import Final

import aio_pika
import aiormq
import msgspec
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from spectacles.broker import Broker
from spectacles.broker.errors import BrokerUnavailable
from spectacles.observability import get_logger
from spectacles.rest.proxy import TOKEN_HEADER, OfferReply, interactions_exchange

__all__ = ["PendingAnswers"]

_log = get_logger("spectacles.interactions.pending")
_TAKEN: Final = msgspec.json.encode(OfferReply(taken=True))
_NOT_TAKEN: Final = msgspec.json.encode(OfferReply(taken=False))


class _Waiter:
    __slots__ = ("future", "token")

    def __init__(self, token: str) -> None:
        self.token = token
        self.future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()


class PendingAnswers:
    """``expect`` an interaction's answer, ``wait`` for it, ``forget`` it."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self.exchange = interactions_exchange(broker.settings.group)
        self.queue_name = f"{self.exchange}.ingress.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self._waiters: dict[str, _Waiter] = {}
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """Whether answers can reach this process now."""
        return self._channel is not None and not self._channel.is_closed

    async def start(self) -> None:
        """Declare the exchange and this process's queue, and consume offers."""
        await self._subscribe()
        self._supervisor = asyncio.create_task(self._supervise(), name="interactions-pending")

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

    async def expect(self, interaction_id: str, token: str) -> asyncio.Future[bytes]:
        """Route offers for ``interaction_id`` here (before the event is published)."""
        waiter = self._waiters[interaction_id] = _Waiter(token)
        queue = self._queue
        if queue is None:
            raise BrokerUnavailable("not subscribed to interaction answers", host="")
        try:
            await queue.bind(self.exchange, routing_key=interaction_id)
        except BaseException:
            self._waiters.pop(interaction_id, None)
            raise
        return waiter.future

    async def forget(self, interaction_id: str) -> None:
        """Stop waiting: from now on an offer is answered "not taken" (then unroutable)."""
        self._waiters.pop(interaction_id, None)
        queue = self._queue
        if queue is not None:
            with contextlib.suppress(Exception):
                await queue.unbind(self.exchange, routing_key=interaction_id)

    async def _subscribe(self) -> None:
        channel = await self._broker.channel()
        await channel.set_qos(prefetch_count=64)
        await channel.declare_exchange(self.exchange, aio_pika.ExchangeType.DIRECT, durable=True)
        queue = await channel.declare_queue(self.queue_name, exclusive=True, auto_delete=True)
        for interaction_id in list(self._waiters):
            await queue.bind(self.exchange, routing_key=interaction_id)
        await queue.consume(self._on_offer)
        self._channel, self._queue = channel, queue

    async def _supervise(self) -> None:
        while True:
            channel = self._channel
            if channel is not None:
                await channel.closed()
                _log.warning("interactions.answers_channel_closed")
            self._channel = self._queue = None
            delay = 0.2
            while True:
                try:
                    await self._broker.wait_connected()
                    await self._subscribe()
                    break
                except Exception as exc:
                    if self._broker.is_closed:
                        return
                    _log.warning("interactions.resubscribe_failed", error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _on_offer(self, message: AbstractIncomingMessage) -> None:
        interaction_id = message.routing_key or ""
        waiter = self._waiters.get(interaction_id)
        token = (message.headers or {}).get(TOKEN_HEADER)
        if isinstance(token, bytes):
            token = token.decode()
        taken = waiter is not None and token == waiter.token and not waiter.future.done()
        if taken:
            assert waiter is not None
            waiter.future.set_result(bytes(message.body))
            self._waiters.pop(interaction_id, None)
        if message.reply_to and self._channel is not None:
            reply = aio_pika.Message(
                _TAKEN if taken else _NOT_TAKEN,
                correlation_id=message.correlation_id,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
            )
            with contextlib.suppress(aiormq.exceptions.AMQPError, ConnectionError):
                await self._channel.default_exchange.publish(reply, routing_key=message.reply_to)
        with contextlib.suppress(aiormq.exceptions.AMQPError, ConnectionError):
            await message.ack()
