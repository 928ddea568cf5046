"""Consume a worker queue: ack after the handler, bounded retries, dead-lettering with the error.

Retry bookkeeping lives in the message, not in the consumer, so it survives crashes and works on
classic and quorum queues alike. A failed attempt is recorded by publishing a copy of the message
(same properties, ``x-attempts`` + 1) to the back of the queue with a publisher confirm, and
only then acking the original; after ``max_attempts`` the copy goes to the dead-letter exchange
instead, with ``x-error``.

A message that comes back *redelivered* was interrupted, not failed: the connection blipped or
the consumer died, and every prefetched message comes back with it, handled or not. Quorum queues
count every such return in ``x-delivery-count`` (RabbitMQ 3.10 and 4.0 alike); on classic queues
the consumer records it as ``x-interruptions`` on a copy. Interruptions have their own budget,
``max_interruptions`` (RabbitMQ 4's default of 20; also the quorum ``x-delivery-limit``), so a few
blips never dead-letter a message whose handler never failed, while a message that keeps crashing
consumers is still dead-lettered, never redelivered forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue
from aiormq.abc import DeliveredMessage

from spectacles.observability import get_logger, redact

from ._acks import AckBatcher
from ._backoff import Backoff
from ._translate import BROKER_FAILURES, LINK_ERRORS
from .broker import Broker
from .delivery import (
    ATTEMPTS_HEADER,
    DELIVERY_COUNT_HEADER,
    ERROR_HEADER,
    ERROR_HEADER_MAX_CHARS,
    INTERRUPTIONS_HEADER,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    Delivery,
)
from .errors import BrokerUnavailable, DeadLetter, TopologyMismatch
from .topology import (
    DEFAULT_MAX_INTERRUPTIONS,
    QueueSpec,
    QueueType,
    declare_dead_letter_exchange,
    declare_queue,
)

__all__ = ["Consumer", "Handler", "Outcome", "OutcomeListener"]

log = get_logger(__name__)

Handler = Callable[[Delivery], Awaitable[None]]


class Outcome(enum.Enum):
    """What became of one delivery (reported to ``on_outcome``, e.g. for metrics)."""

    ACKED = "acked"
    RETRIED = "retried"
    DEAD_LETTERED = "dead_lettered"


OutcomeListener = Callable[[Delivery, Outcome, BaseException | None], None]

# Headers that describe one particular delivery and must not be copied onto a new message.
_PER_DELIVERY_HEADERS: Final = frozenset({DELIVERY_COUNT_HEADER})
_RESUBSCRIBE_MAX_DELAY: Final = 10.0
# A publish the broker refused (nack/return) is retried later rather than hot-looping.
_REFUSED_PUBLISH_PAUSE: Final = 1.0


@dataclass(slots=True)
class _Subscription:
    """Everything bound to one channel; replaced wholesale after the channel dies."""

    channel: AbstractChannel
    queue: AbstractQueue
    dlx: AbstractExchange
    consumer_tag: str
    acks: AckBatcher


class Consumer:
    """Competing consumer on the queue ``{group}.{worker}`` bound to ``events``.

    ``exchange`` / ``queue`` / ``routing_keys`` override the defaults (events exchange, worker
    queue, the event names), e.g. for the gateway's per-shard commands queue. ``prefetch`` bounds
    the handlers running at once. ``max_attempts`` counts the first try and bounds handler
    failures; ``max_interruptions`` bounds returns without an ack (blips, crashed consumers) and
    is the quorum queue's ``x-delivery-limit``. ``single_active_consumer`` lets one replica at a
    time consume (the others stand by) for handlers that keep state.
    """

    def __init__(
        self,
        broker: Broker,
        *,
        worker: str,
        events: Sequence[str],
        handler: Handler,
        prefetch: int = 32,
        max_attempts: int = 3,
        max_interruptions: int = DEFAULT_MAX_INTERRUPTIONS,
        queue_type: QueueType = "quorum",
        single_active_consumer: bool = False,
        exchange: str | None = None,
        queue: str | None = None,
        routing_keys: Sequence[str] | None = None,
        stop_timeout: float = 30.0,
        on_outcome: OutcomeListener | None = None,
    ) -> None:
        if prefetch < 1:
            raise ValueError(f"prefetch must be >= 1, got {prefetch}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        if max_interruptions < 1:
            raise ValueError(f"max_interruptions must be >= 1, got {max_interruptions}")
        topology = broker.topology
        keys = tuple(routing_keys) if routing_keys is not None else tuple(events)
        self._broker = broker
        self._handler = handler
        self._prefetch = prefetch
        self._max_attempts = max_attempts
        self._max_interruptions = max_interruptions
        self._stop_timeout = stop_timeout
        self._on_outcome = on_outcome
        self.worker = worker
        self.spec = QueueSpec(
            name=queue or topology.worker_queue(worker),
            exchange=exchange if exchange is not None else topology.events_exchange,
            routing_keys=keys,
            queue_type=queue_type,
            single_active_consumer=single_active_consumer,
            delivery_limit=max_interruptions if queue_type == "quorum" else None,
            # releases before 0.2 set the limit to max_attempts: keep such queues working
            legacy_delivery_limit=max_attempts if queue_type == "quorum" else None,
        )
        self._subscription: _Subscription | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._subscribed = asyncio.Event()

    # -- public ---------------------------------------------------------------------------------

    @property
    def queue_name(self) -> str:
        """The queue consumed."""
        return self.spec.name

    @property
    def dead_queue_name(self) -> str:
        """Where dead letters of this queue end up."""
        return self.spec.dead_queue

    @property
    def in_flight(self) -> int:
        """Handlers running right now."""
        return len(self._in_flight)

    @property
    def is_consuming(self) -> bool:
        """True while subscribed on a live channel."""
        sub = self._subscription
        return sub is not None and not sub.channel.is_closed and not self._stopping

    async def wait_consuming(self, timeout: float | None = None) -> None:
        """Wait until (re)subscribed, e.g. after a connection drop."""
        await asyncio.wait_for(self._subscribed.wait(), timeout)

    async def start(self) -> None:
        """Declare the topology and start consuming; raise if that fails the first time."""
        if self._supervisor is not None:
            return
        self._stopping = False
        self._subscription = await self._subscribe()
        self._supervisor = asyncio.create_task(
            self._supervise(), name=f"consumer:{self.queue_name}"
        )

    async def stop(self, timeout: float | None = None) -> None:
        """Stop taking messages, let in-flight handlers finish (bounded) and ack, close the channel.

        Handlers still running after ``timeout`` are cancelled; their messages are not acked and
        RabbitMQ redelivers them to another consumer.
        """
        self._stopping = True
        self._subscribed.clear()
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        sub, self._subscription = self._subscription, None
        if sub is not None and not sub.channel.is_closed:
            with contextlib.suppress(*BROKER_FAILURES):
                await asyncio.wait_for(sub.acks.channel.basic_cancel(sub.consumer_tag), 5.0)
        await self._drain(self._stop_timeout if timeout is None else timeout)
        if sub is not None and not sub.channel.is_closed:
            with contextlib.suppress(*BROKER_FAILURES):
                await asyncio.wait_for(sub.channel.close(), timeout=5.0)

    # -- subscription lifecycle -----------------------------------------------------------------

    async def _subscribe(self) -> _Subscription:
        channel = await self._broker.channel(publisher_confirms=True, on_return_raises=True)
        try:
            await channel.set_qos(prefetch_count=self._prefetch)
            try:
                declared = await declare_queue(
                    self._broker.channel, self._broker.topology, self.spec
                )
            except aiormq.exceptions.ChannelPreconditionFailed as exc:
                raise TopologyMismatch(
                    f"queue {self.queue_name!r} already exists with other arguments ({exc}); "
                    "every replica must use the same queue_type, max_interruptions and "
                    "single_active_consumer — delete the queue or align the settings",
                    queue=self.queue_name,
                ) from None
            for hint in declared.hints:
                log.warning("consumer.queue_needs_migration", queue=self.queue_name, hint=hint)
            queue = await channel.get_queue(declared.name, ensure=False)
            dlx = await declare_dead_letter_exchange(channel, self._broker.topology)
            underlay = await channel.get_underlay_channel()
            sub = _Subscription(
                channel=channel, queue=queue, dlx=dlx, consumer_tag="", acks=AckBatcher(underlay)
            )
            # Consume on aiormq's channel, not through aio-pika's Queue.consume: that builds an
            # IncomingMessage and a second task per delivery, most of a no-op worker's cost.
            consume_ok = await underlay.basic_consume(queue.name, partial(self._on_message, sub))
            sub.consumer_tag = consume_ok.consumer_tag or ""
            underlay.on_consumer_cancel_callbacks.add(partial(self._on_server_cancel, sub))
        except BaseException:
            if not channel.is_closed:
                with contextlib.suppress(Exception):
                    await channel.close()
            raise
        self._subscribed.set()
        log.debug("consumer.subscribed", queue=self.queue_name, prefetch=self._prefetch)
        return sub

    def _on_server_cancel(self, sub: _Subscription, frame: object) -> None:
        # RabbitMQ cancels consumers when their queue is deleted or a quorum leader moves; close
        # the channel so the supervisor subscribes again instead of silently idling. aiormq
        # passes the Basic.Cancel frame (older versions passed the tag).
        tag = getattr(frame, "consumer_tag", frame)
        if tag != sub.consumer_tag or self._stopping:
            return
        log.warning("consumer.cancelled_by_server", queue=self.queue_name)
        task = asyncio.get_running_loop().create_task(_close_quietly(sub.channel))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _supervise(self) -> None:
        while not self._stopping:
            sub = self._subscription
            if sub is not None:
                await sub.channel.closed()
                if self._stopping:
                    return
                log.warning("consumer.channel_closed", queue=self.queue_name)
            self._subscription = None
            self._subscribed.clear()
            self._subscription = await self._resubscribe()
            if self._subscription is None:
                return  # the broker was closed under us: nothing left to consume from

    async def _resubscribe(self) -> _Subscription | None:
        backoff = Backoff(0.2, _RESUBSCRIBE_MAX_DELAY)
        while True:
            attempt = backoff.attempts + 1
            try:
                await self._broker.wait_connected()
                sub = await self._subscribe()
            except BrokerUnavailable:
                if self._broker.is_closed:
                    return None
                await backoff.sleep()
            except Exception as exc:
                log.warning(
                    "consumer.resubscribe_failed",
                    queue=self.queue_name,
                    attempt=attempt,
                    error=f"{type(exc).__name__}: {exc}",
                )
                await backoff.sleep()
            else:
                log.info("consumer.resumed", queue=self.queue_name, attempt=attempt)
                return sub

    async def _drain(self, timeout: float) -> None:
        tasks = set(self._in_flight)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("consumer.stop_timeout", queue=self.queue_name, cancelled=len(pending))
            await asyncio.wait(pending, timeout=1.0)

    # -- one message ----------------------------------------------------------------------------

    async def _on_message(self, sub: _Subscription, message: DeliveredMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            await self._process(sub, message)
        finally:
            if task is not None:
                self._in_flight.discard(task)

    async def _process(self, sub: _Subscription, message: DeliveredMessage) -> None:
        raw_headers = message.header.properties.headers
        headers: dict[str, Any] = dict(raw_headers) if raw_headers else {}
        failures = _as_int(headers.get(ATTEMPTS_HEADER))
        interruptions = _as_int(headers.get(INTERRUPTIONS_HEADER))
        delivery_count = headers.get(DELIVERY_COUNT_HEADER)
        if delivery_count is not None:
            interruptions += _as_int(delivery_count)
        elif message.redelivered:
            # Classic queue: returned without an ack (blip or dead consumer). Record it in a copy
            # now, or a message that crashes every consumer would loop forever.
            await self._record_interrupted(sub, message, headers, failures, interruptions + 1)
            return
        attempt = failures + interruptions + 1
        delivery = _delivery(message, headers, attempt, interruptions)
        if interruptions >= self._max_interruptions:
            reason = (
                f"Interrupted: returned {interruptions} times without an ack "
                "(connection lost or consumer died while holding it)"
            )
            await self._dead_letter(
                sub, message, headers, failures + interruptions, reason, delivery, None
            )
            return
        try:
            await self._handler(delivery)
        except DeadLetter as exc:
            reason = f"DeadLetter: {exc.reason}"
            await self._dead_letter(sub, message, headers, attempt, reason, delivery, exc)
        except Exception as exc:
            if failures + 1 >= self._max_attempts:
                reason = f"{type(exc).__name__}: {exc}"
                await self._dead_letter(sub, message, headers, attempt, reason, delivery, exc)
            else:
                log.warning(
                    "consumer.handler_failed",
                    queue=self.queue_name,
                    routing_key=delivery.routing_key,
                    message_id=delivery.message_id,
                    attempt=attempt,
                    max_attempts=self._max_attempts,
                    error=f"{type(exc).__name__}: {exc}",
                )
                counts = {ATTEMPTS_HEADER: failures + 1, INTERRUPTIONS_HEADER: interruptions}
                if await self._republish(sub, message, headers, counts):
                    self._report(delivery, Outcome.RETRIED, exc)
        else:
            if await _ack(sub, message):
                self._report(delivery, Outcome.ACKED, None)

    async def _record_interrupted(
        self,
        sub: _Subscription,
        message: DeliveredMessage,
        headers: dict[str, Any],
        failures: int,
        interruptions: int,
    ) -> None:
        if interruptions >= self._max_interruptions:
            reason = f"Interrupted: redelivered after {interruptions} unfinished deliveries"
            delivery = _delivery(message, headers, failures + interruptions, interruptions)
            attempts = failures + interruptions
            await self._dead_letter(sub, message, headers, attempts, reason, delivery, None)
        else:
            await self._republish(sub, message, headers, {INTERRUPTIONS_HEADER: interruptions})

    async def _republish(
        self,
        sub: _Subscription,
        message: DeliveredMessage,
        headers: dict[str, Any],
        counts: dict[str, int],
    ) -> bool:
        copy = _copy(message, headers, counts, keep_expiration=True)
        return await self._publish_then_ack(
            sub, message, sub.channel.default_exchange, copy, self.queue_name
        )

    async def _dead_letter(
        self,
        sub: _Subscription,
        message: DeliveredMessage,
        headers: dict[str, Any],
        attempts: int,
        reason: str,
        delivery: Delivery,
        exc: BaseException | None,
    ) -> None:
        # The header outlives the process and is read by whoever can read the dead queue:
        # scrub registered secrets and URL passwords from the error text (the log is scrubbed
        # anyway).
        error = redact(reason)[:ERROR_HEADER_MAX_CHARS]
        log.error(
            "consumer.dead_lettered",
            queue=self.queue_name,
            dead_queue=self.dead_queue_name,
            routing_key=delivery.routing_key,
            message_id=delivery.message_id,
            attempts=attempts,
            error=error,
        )
        copy = _copy(
            message,
            headers,
            {ATTEMPTS_HEADER: attempts, ERROR_HEADER: error},
            keep_expiration=False,
        )
        if await self._publish_then_ack(sub, message, sub.dlx, copy, self.queue_name):
            self._report(delivery, Outcome.DEAD_LETTERED, exc)

    async def _publish_then_ack(
        self,
        sub: _Subscription,
        message: DeliveredMessage,
        exchange: AbstractExchange,
        copy: aio_pika.Message,
        routing_key: str,
    ) -> bool:
        """Publish ``copy`` (confirmed), then ack ``message``; if that fails, RabbitMQ keeps it."""
        try:
            await exchange.publish(copy, routing_key=routing_key, mandatory=True)
        except LINK_ERRORS:
            # The channel is gone: the original was not acked and comes back redelivered.
            return False
        except aiormq.exceptions.DeliveryError as exc:
            log.error(
                "consumer.republish_refused",
                queue=self.queue_name,
                exchange=exchange.name,
                routing_key=routing_key,
                error=f"{type(exc).__name__}: {exc}",
            )
            await asyncio.sleep(_REFUSED_PUBLISH_PAUSE)
            with contextlib.suppress(*BROKER_FAILURES):
                if message.delivery_tag is not None:
                    await message.channel.basic_nack(message.delivery_tag, requeue=True)
                    _settled_alone(sub, message)
            return False
        if await _settle(message):
            _settled_alone(sub, message)
            return True
        return False

    def _report(self, delivery: Delivery, outcome: Outcome, exc: BaseException | None) -> None:
        if self._on_outcome is None:
            return
        try:
            self._on_outcome(delivery, outcome, exc)
        except Exception:
            log.exception("consumer.on_outcome_failed", queue=self.queue_name)


async def _close_quietly(channel: AbstractChannel) -> None:
    with contextlib.suppress(*BROKER_FAILURES):
        await channel.close()


async def _settle(message: DeliveredMessage) -> bool:
    """Ack ``message`` on its own (after a republish): True once written."""
    tag = message.delivery_tag
    if tag is None:
        return False
    try:
        await message.channel.basic_ack(tag)
    except LINK_ERRORS:
        return False  # channel died: RabbitMQ redelivers the message
    return True


async def _ack(sub: _Subscription, message: DeliveredMessage) -> bool:
    """Ack after a handler returned: batched with the tick's other acks on the same channel."""
    tag = message.delivery_tag
    if tag is None or message.channel is not sub.acks.channel:
        return await _settle(message)
    return await sub.acks.ack(tag)


def _settled_alone(sub: _Subscription, message: DeliveredMessage) -> None:
    # Acked or nacked on its own: a later batched ``multiple`` ack may now reach past it.
    tag = message.delivery_tag
    if tag is not None and message.channel is sub.acks.channel:
        sub.acks.settled(tag)


def _delivery(
    message: DeliveredMessage, headers: dict[str, Any], attempt: int, interruptions: int
) -> Delivery:
    original_key = headers.get(ORIGINAL_ROUTING_KEY_HEADER)
    original_exchange = headers.get(ORIGINAL_EXCHANGE_HEADER)
    properties = message.header.properties
    return Delivery(
        body=message.body,
        routing_key=str(original_key) if original_key is not None else message.routing_key or "",
        headers=headers,
        message_id=properties.message_id,
        type=properties.message_type,
        timestamp=properties.timestamp,
        attempt=attempt,
        redelivered=bool(message.redelivered),
        exchange=(
            str(original_exchange) if original_exchange is not None else message.exchange or ""
        ),
        content_type=properties.content_type,
        correlation_id=properties.correlation_id,
        reply_to=properties.reply_to,
        interruptions=interruptions,
    )


def _copy(
    message: DeliveredMessage,
    headers: dict[str, Any],
    extra: dict[str, Any],
    *,
    keep_expiration: bool,
) -> aio_pika.Message:
    new_headers = {k: v for k, v in headers.items() if k not in _PER_DELIVERY_HEADERS}
    new_headers.setdefault(ORIGINAL_EXCHANGE_HEADER, message.exchange or "")
    new_headers.setdefault(ORIGINAL_ROUTING_KEY_HEADER, message.routing_key or "")
    new_headers.update(extra)
    properties = message.header.properties
    # AMQP carries the expiration as milliseconds in a string; aio-pika takes seconds.
    expiration = float(properties.expiration) / 1000 if properties.expiration else None
    return aio_pika.Message(
        message.body,
        headers=new_headers,
        content_type=properties.content_type,
        content_encoding=properties.content_encoding,
        delivery_mode=properties.delivery_mode or aio_pika.DeliveryMode.PERSISTENT,
        priority=properties.priority,
        correlation_id=properties.correlation_id,
        reply_to=properties.reply_to,
        expiration=expiration if keep_expiration else None,
        message_id=properties.message_id,
        timestamp=properties.timestamp,
        type=properties.message_type,
        app_id=properties.app_id,
    )


def _as_int(value: object) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, (str, bytes)):
        with contextlib.suppress(ValueError):
            return max(int(value), 0)
    return 0
