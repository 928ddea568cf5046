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
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiormq
from pamqp import commands

from spectacles.observability import get_logger, redact

from ._backoff import Backoff
from ._consume_channel import ConsumeChannel
from ._consume_link import ConsumeLink
from ._frames import encode_content
from ._properties import BasicProperties
from ._publish_connection import RETURN_TAG_HEADER, PublishConnection
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
    new_delivery,
)
from .errors import BrokerError, BrokerUnavailable, DeadLetter, PublishError, TopologyMismatch
from .topology import (
    DEFAULT_MAX_INTERRUPTIONS,
    QueueSpec,
    QueueType,
    declare_queue,
)

__all__ = ["Consumer", "DeliveryHandler", "Outcome", "OutcomeListener"]

log = get_logger(__name__)

DeliveryHandler = Callable[[Delivery], Awaitable[None]]


class Outcome(enum.Enum):
    """What became of one delivery (reported to ``on_outcome``, e.g. for metrics)."""

    ACKED = "acked"
    RETRIED = "retried"
    DEAD_LETTERED = "dead_lettered"


OutcomeListener = Callable[[Delivery, Outcome, BaseException | None], None]

# Headers that describe one particular delivery and must not be copied onto a new message.
_PER_DELIVERY_HEADERS: Final = frozenset({DELIVERY_COUNT_HEADER, RETURN_TAG_HEADER})
_RESUBSCRIBE_MAX_DELAY: Final = 10.0
# A publish the broker refused (nack/return) is retried later rather than hot-looping.
_REFUSED_PUBLISH_PAUSE: Final = 1.0

# One received message: its channel, delivery tag, redelivered, exchange, routing key,
# properties, body.
_Item = tuple[ConsumeChannel, int, bool, str, str, BasicProperties, bytes]


@dataclass(slots=True)
class _Subscription:
    """One consuming channel; replaced wholesale after it dies or is cancelled."""

    connection: PublishConnection
    channel: ConsumeChannel


class Consumer:
    """Competing consumer on the queue ``{group}.{worker}`` bound to ``events``.

    ``exchange`` / ``queue`` / ``routing_keys`` override the defaults (events exchange, worker
    queue, the event names), e.g. for the gateway's per-shard commands queue. ``prefetch`` bounds
    the handlers running at once. ``max_attempts`` counts the first try and bounds handler
    failures; ``max_interruptions`` bounds returns without an ack (blips, crashed consumers) and
    is the quorum queue's ``x-delivery-limit``. ``single_active_consumer`` lets one replica at a
    time consume (the others stand by) for handlers that keep state.

    Topology is declared through ``broker`` (a cold path); messages arrive on a channel of the
    lean AMQP connection the broker's consumers share (``_consume_link``), which follows the
    broker's: when the broker's connection drops, that one is dropped too and both come back
    together.
    """

    def __init__(
        self,
        broker: Broker,
        *,
        worker: str,
        events: Sequence[str],
        handler: DeliveryHandler,
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
        self._link: ConsumeLink | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._subscribed = asyncio.Event()
        # Received messages wait here for one of ``prefetch`` runner tasks (no task per message).
        self._queue: deque[_Item] = deque()
        self._idle: list[asyncio.Future[None]] = []
        self._woken = False  # a runner was woken and has not looked at the queue yet
        self._runners: set[asyncio.Task[None]] = set()
        self._busy = 0
        self._quiet = asyncio.Event()  # set when no runner is busy and nothing waits

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
        return self._busy

    @property
    def is_consuming(self) -> bool:
        """True while subscribed on a live channel."""
        sub = self._subscription
        return sub is not None and not sub.channel.done.done() and not self._stopping

    async def wait_consuming(self, timeout: float | None = None) -> None:
        """Wait until (re)subscribed, e.g. after a connection drop."""
        await asyncio.wait_for(self._subscribed.wait(), timeout)

    async def start(self) -> None:
        """Declare the topology and start consuming; raise if that fails the first time."""
        if self._supervisor is not None:
            return
        self._stopping = False
        self._link = ConsumeLink.acquire(self._broker)
        try:
            self._subscription = await self._subscribe()
        except BaseException:
            await self._shut_down()
            raise
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
        if sub is not None and not sub.channel.closed:
            with contextlib.suppress(BrokerError, OSError, TimeoutError):
                await asyncio.wait_for(sub.channel.cancel(), 5.0)
        await self._drain(self._stop_timeout if timeout is None else timeout)
        if sub is not None:
            await _close_quietly(sub.channel)
        await self._shut_down()

    # -- subscription lifecycle -----------------------------------------------------------------

    async def _subscribe(self) -> _Subscription:
        broker = self._broker
        try:
            declared = await declare_queue(broker.channel, broker.topology, self.spec)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            raise TopologyMismatch(
                f"queue {self.queue_name!r} already exists with other arguments ({exc}); "
                "every replica must use the same queue_type, max_interruptions and "
                "single_active_consumer — delete the queue or align the settings",
                queue=self.queue_name,
            ) from None
        for hint in declared.hints:
            log.warning("consumer.queue_needs_migration", queue=self.queue_name, hint=hint)
        assert self._link is not None  # acquired in start()
        connection = await self._link.connection()
        channel = await ConsumeChannel.open(connection, self._on_delivery, prefetch=self._prefetch)
        try:
            await channel.consume(declared.name)
        except BaseException:
            await _close_quietly(channel)
            raise
        self._subscribed.set()
        log.debug("consumer.subscribed", queue=self.queue_name, prefetch=self._prefetch)
        return _Subscription(connection, channel)

    async def _supervise(self) -> None:
        while not self._stopping:
            sub = self._subscription
            if sub is not None:
                reason = await sub.channel.done
                if self._stopping:
                    return
                # A server cancel leaves the channel open: close it, so in-flight messages go
                # back to the queue instead of being held by a channel that receives nothing.
                await _close_quietly(sub.channel)
                log.warning("consumer.channel_closed", queue=self.queue_name, reason=reason)
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
        """Wait for the received messages and running handlers; cancel what is left after it."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self._busy or self._queue:
                    self._quiet.clear()
                    await self._quiet.wait()
        if self._busy or self._queue:
            log.warning("consumer.stop_timeout", queue=self.queue_name, cancelled=self._busy)
            self._queue.clear()  # never started: they go back to the queue with the channel
            await self._stop_runners()

    async def _shut_down(self) -> None:
        await self._stop_runners()
        link, self._link = self._link, None
        if link is not None:
            await link.release()

    # -- runners: tasks that take received messages in turn (no task per message) --------------

    def _wake_runner(self) -> None:
        """Wake an idle runner, or start one if every runner is inside a handler."""
        self._woken = True
        if self._idle:
            self._idle.pop().set_result(None)
            return
        # Usually at most ``prefetch`` are needed; more while handlers of a channel that died
        # still run (their messages come back on the new channel and need runners too).
        runner = asyncio.create_task(self._run(), name=f"consumer:{self.queue_name}")
        self._runners.add(runner)
        runner.add_done_callback(self._runners.discard)

    async def _stop_runners(self) -> None:
        runners, self._runners = self._runners, set()
        for runner in runners:
            runner.cancel()
        if runners:
            await asyncio.wait(runners, timeout=1.0)
        self._idle.clear()
        self._woken = False

    def _on_delivery(
        self,
        channel: ConsumeChannel,
        tag: int,
        redelivered: bool,
        exchange: str,
        routing_key: str,
        properties: BasicProperties,
        body: bytes,
    ) -> None:
        self._queue.append((channel, tag, redelivered, exchange, routing_key, properties, body))
        if not self._woken:
            self._wake_runner()

    async def _run(self) -> None:
        queue = self._queue
        idle = self._idle
        loop = asyncio.get_running_loop()
        self._woken = False
        while True:
            if not queue:
                if not self._busy:
                    self._quiet.set()
                if len(self._runners) > self._prefetch:
                    return  # extra runners (after a channel died with handlers running) leave
                waiter: asyncio.Future[None] = loop.create_future()
                idle.append(waiter)
                try:
                    await waiter
                except asyncio.CancelledError:
                    with contextlib.suppress(ValueError):
                        idle.remove(waiter)
                    raise
                self._woken = False
                continue
            item = queue.popleft()
            if queue and not self._woken:  # more waiting: let another runner take one
                self._wake_runner()
            if item[0].closed:
                continue  # its channel is gone: RabbitMQ delivers it again
            self._busy += 1
            try:
                await self._process(*item)
            except Exception:
                log.exception("consumer.process_failed", queue=self.queue_name)
            finally:
                self._busy -= 1

    # -- one message ----------------------------------------------------------------------------

    async def _process(
        self,
        channel: ConsumeChannel,
        tag: int,
        redelivered: bool,
        exchange: str,
        routing_key: str,
        properties: BasicProperties,
        body: bytes,
    ) -> None:
        headers = properties.headers
        if headers is None:
            headers = properties.headers = {}
        # most deliveries carry none of these: skip the conversions then
        failures = headers.get(ATTEMPTS_HEADER)
        failures = 0 if failures is None else _as_int(failures)
        interruptions = headers.get(INTERRUPTIONS_HEADER)
        interruptions = 0 if interruptions is None else _as_int(interruptions)
        delivery_count = headers.get(DELIVERY_COUNT_HEADER)
        if delivery_count is not None:
            interruptions += _as_int(delivery_count)
        elif redelivered:
            # Classic queue: returned without an ack (blip or dead consumer). Record it in a copy
            # now, or a message that crashes every consumer would loop forever.
            message = _Message(channel, tag, redelivered, exchange, routing_key, properties, body)
            await self._record_interrupted(message, failures, interruptions + 1)
            return
        attempt = failures + interruptions + 1
        original_key = headers.get(ORIGINAL_ROUTING_KEY_HEADER)
        original_exchange = headers.get(ORIGINAL_EXCHANGE_HEADER)
        delivery = new_delivery(
            body,
            str(original_key) if original_key is not None else routing_key,
            headers,
            properties.message_id,
            properties.type,
            properties.timestamp,
            attempt,
            redelivered,
            str(original_exchange) if original_exchange is not None else exchange,
            properties.content_type,
            properties.correlation_id,
            properties.reply_to,
            interruptions,
        )
        if interruptions >= self._max_interruptions:
            reason = (
                f"Interrupted: returned {interruptions} times without an ack "
                "(connection lost or consumer died while holding it)"
            )
            message = _Message(channel, tag, redelivered, exchange, routing_key, properties, body)
            await self._dead_letter(message, failures + interruptions, reason, delivery, None)
            return
        try:
            await self._handler(delivery)
        except Exception as exc:
            message = _Message(channel, tag, redelivered, exchange, routing_key, properties, body)
            await self._handler_failed(message, delivery, failures, interruptions, exc)
            return
        if channel.ack(tag) and self._on_outcome is not None:
            self._report(delivery, Outcome.ACKED, None)

    async def _handler_failed(
        self,
        message: _Message,
        delivery: Delivery,
        failures: int,
        interruptions: int,
        exc: Exception,
    ) -> None:
        """Retry the delivery (a copy with ``x-attempts`` + 1), or dead-letter it past the limit."""
        attempt = delivery.attempt
        if isinstance(exc, DeadLetter):
            reason = f"DeadLetter: {exc.reason}"
            await self._dead_letter(message, attempt, reason, delivery, exc)
        elif failures + 1 >= self._max_attempts:
            reason = f"{type(exc).__name__}: {exc}"
            await self._dead_letter(message, attempt, reason, delivery, exc)
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
            if await self._republish(message, counts):
                self._report(delivery, Outcome.RETRIED, exc)

    async def _record_interrupted(
        self, message: _Message, failures: int, interruptions: int
    ) -> None:
        if interruptions >= self._max_interruptions:
            reason = f"Interrupted: redelivered after {interruptions} unfinished deliveries"
            delivery = _delivery(message, failures + interruptions, interruptions)
            attempts = failures + interruptions
            await self._dead_letter(message, attempts, reason, delivery, None)
        else:
            await self._republish(message, {INTERRUPTIONS_HEADER: interruptions})

    async def _republish(self, message: _Message, counts: dict[str, int]) -> bool:
        return await self._publish_then_ack(
            message, "", self.queue_name, counts, keep_expiration=True
        )

    async def _dead_letter(
        self,
        message: _Message,
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
        extra = {ATTEMPTS_HEADER: attempts, ERROR_HEADER: error}
        dlx = self._broker.topology.dlx
        if await self._publish_then_ack(
            message, dlx, self.queue_name, extra, keep_expiration=False
        ):
            self._report(delivery, Outcome.DEAD_LETTERED, exc)

    async def _publish_then_ack(
        self,
        message: _Message,
        exchange: str,
        routing_key: str,
        extra: dict[str, Any],
        *,
        keep_expiration: bool,
    ) -> bool:
        """Publish a copy (confirmed), then ack ``message``; if that fails, RabbitMQ keeps it."""
        channel = message.channel
        try:
            await _publish_copy(
                channel.connection, exchange, routing_key, message, extra, keep_expiration
            )
        except BrokerUnavailable:
            # The connection is gone: the original was not acked and comes back redelivered.
            return False
        except PublishError as exc:
            log.error(
                "consumer.republish_refused",
                queue=self.queue_name,
                exchange=exchange,
                routing_key=routing_key,
                error=f"{type(exc).__name__}: {exc}",
            )
            await asyncio.sleep(_REFUSED_PUBLISH_PAUSE)
            channel.nack(message.tag, requeue=True)
            return False
        return channel.ack(message.tag)

    def _report(self, delivery: Delivery, outcome: Outcome, exc: BaseException | None) -> None:
        if self._on_outcome is None:
            return
        try:
            self._on_outcome(delivery, outcome, exc)
        except Exception:
            log.exception("consumer.on_outcome_failed", queue=self.queue_name)


@dataclass(slots=True)
class _Message:
    """A received message being settled (only built for the cold paths and the handler)."""

    channel: ConsumeChannel
    tag: int
    redelivered: bool
    exchange: str
    routing_key: str
    properties: BasicProperties
    body: bytes

    @property
    def headers(self) -> dict[str, Any]:
        return self.properties.headers or {}


async def _close_quietly(channel: ConsumeChannel) -> None:
    if channel.closed:
        return
    with contextlib.suppress(BrokerError, OSError, TimeoutError):
        await asyncio.wait_for(channel.close(), 5.0)
    channel.abandon("closed by the consumer")


async def _publish_copy(
    connection: PublishConnection,
    exchange: str,
    routing_key: str,
    message: _Message,
    extra: dict[str, Any],
    keep_expiration: bool,
) -> None:
    """Publish a copy of ``message`` with ``extra`` headers (mandatory, confirmed).

    A cold path (retries, dead letters): the properties go through pamqp, which encodes all of
    them (priority, expiration, app_id ...), not only those the hot publish path knows.
    """
    while not connection.ready:  # the publish channel is being reopened after a refusal
        if connection.lost:
            raise BrokerUnavailable("connection to RabbitMQ lost before a retry was published")
        await asyncio.sleep(0.05)
    headers = {k: v for k, v in message.headers.items() if k not in _PER_DELIVERY_HEADERS}
    headers.setdefault(ORIGINAL_EXCHANGE_HEADER, message.exchange)
    headers.setdefault(ORIGINAL_ROUTING_KEY_HEADER, message.routing_key)
    headers.update(extra)
    headers[RETURN_TAG_HEADER] = connection.tracker.next_return_id
    source = message.properties
    properties = commands.Basic.Properties(
        content_type=source.content_type,
        content_encoding=source.content_encoding,
        headers=headers,
        delivery_mode=source.delivery_mode or 2,
        priority=source.priority,
        correlation_id=source.correlation_id,
        reply_to=source.reply_to,
        expiration=source.expiration if keep_expiration else None,
        message_id=source.message_id,
        timestamp=source.timestamp,
        message_type=source.type,
        app_id=source.app_id,
    )
    raw = properties.marshal()
    flags = int.from_bytes(raw[:2], "big")
    content = encode_content(1, flags, raw[2:], message.body, connection.max_body_frame)
    await connection.publish(exchange, routing_key, True, content)


def _delivery(message: _Message, attempt: int, interruptions: int) -> Delivery:
    properties = message.properties
    headers = properties.headers or {}
    original_key = headers.get(ORIGINAL_ROUTING_KEY_HEADER)
    original_exchange = headers.get(ORIGINAL_EXCHANGE_HEADER)
    return Delivery(
        body=message.body,
        routing_key=str(original_key) if original_key is not None else message.routing_key,
        headers=headers,
        message_id=properties.message_id,
        type=properties.type,
        timestamp=properties.timestamp,
        attempt=attempt,
        redelivered=message.redelivered,
        exchange=str(original_exchange) if original_exchange is not None else message.exchange,
        content_type=properties.content_type,
        correlation_id=properties.correlation_id,
        reply_to=properties.reply_to,
        interruptions=interruptions,
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
