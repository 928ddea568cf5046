"""Confirmed publishing with a bounded in-flight window and automatic reconnection.

``submit`` packs a message straight into the connection's write buffer and returns its confirm
future without suspending when the connection is up and the window has room. The relay's hot
path, ``try_submit_tracked``, goes further: a plain call, no coroutine and no future, with the
confirm reported to a :class:`ConfirmListener`. Everything slow (no connection, full window,
socket backpressure) moves to ``_acquire``, which waits at most ``publish_timeout`` and then
raises ``BrokerUnavailable``: a publish is confirmed, or its caller hears why not, never silence.

Two waits are not bounded by ``publish_timeout``: while RabbitMQ blocks the connection for a
resource alarm (``connection.blocked``) publishes wait until it is unblocked, since the broker
is there and will take them; and when RabbitMQ closes the publish channel over one publish, the
connection reopens it and writes the others again (see ``PublishConnection``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
from collections import Counter, deque
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

from spectacles.broker._backoff import Backoff
from spectacles.broker._confirm import ConfirmListener
from spectacles.broker._endpoints import connect_first
from spectacles.broker._frames import (
    PropertiesTemplate,
    encode_content,
    encode_properties,
    encode_publish_method,
)
from spectacles.broker._publish_connection import (
    PUBLISH_CHANNEL,
    RETURN_TAG_HEADER,
    PublishConnection,
)
from spectacles.broker.errors import BrokerUnavailable
from spectacles.broker.settings import BrokerSettings
from spectacles.observability import get_logger

__all__ = ["ConfirmListener", "PreparedPublish", "Publisher"]

log = get_logger(__name__)


class PreparedPublish:
    """Everything constant about a stream of publishes, encoded once by ``Publisher.prepare``.

    Holds the basic.publish frame and a :class:`PropertiesTemplate`; ``submit_prepared`` then
    only encodes what changes per message. Reusable across reconnections.
    """

    __slots__ = ("exchange", "mandatory", "method", "properties", "routing_key")

    def __init__(
        self, exchange: str, routing_key: str, mandatory: bool, properties: PropertiesTemplate
    ) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.mandatory = mandatory
        self.properties = properties
        self.method = encode_publish_method(PUBLISH_CHANNEL, exchange, routing_key, mandatory)


class Publisher:
    """Publishes with RabbitMQ publisher confirms on its own connection.

    Create it with :meth:`connect`. ``max_in_flight`` bounds unconfirmed publishes (the window
    is the backpressure); ``publish_timeout`` bounds how long a publish waits for a connection
    or a free slot; reconnection after a drop runs in the background with exponential backoff
    (``reconnect_delay`` doubling up to ``max_reconnect_delay``, with jitter).
    """

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        max_in_flight: int = 1024,
        connection_name: str | None = None,
        publish_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        heartbeat: int = 30,
        reconnect_delay: float = 0.5,
        max_reconnect_delay: float = 15.0,
        close_timeout: float = 10.0,
        unrouted_queue: str | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        for option, value in (
            ("publish_timeout", publish_timeout),
            ("connect_timeout", connect_timeout),
            ("reconnect_delay", reconnect_delay),
        ):
            if value <= 0:
                raise ValueError(f"{option} must be > 0 seconds, got {value}")
        if close_timeout < 0 or heartbeat < 0:
            raise ValueError("close_timeout and heartbeat must be >= 0 (heartbeat 0 disables it)")
        self._settings = settings
        self._endpoints = settings.endpoints
        # The node in use (or last used); its address names the broker in errors.
        self._endpoint = self._endpoints.node(self._endpoints.urls[0])
        self._node_url: str | None = None
        self._max_in_flight = max_in_flight
        self._publish_timeout = publish_timeout
        self._connect_timeout = connect_timeout
        self._heartbeat = heartbeat
        self._reconnect_delay = reconnect_delay
        self._max_reconnect_delay = max_reconnect_delay
        self._close_timeout = close_timeout
        self._client_properties = {
            "product": "spectacles-python",
            "connection_name": connection_name or f"spectacles-publisher-{os.getpid()}",
        }
        self._connection: PublishConnection | None = None
        self._ready = asyncio.Event()
        self._space_waiters: deque[asyncio.Future[None]] = deque()
        self._woken = 0  # waiters told a slot is free that have not taken it yet
        self._reconnect_task: asyncio.Task[None] | None = None
        self._drained = asyncio.Event()  # set when nothing is in flight (close() waits on it)
        self._closed = False
        self._events_exchange = settings.group
        # Declared through this publisher: declared again if RabbitMQ reports one deleted.
        self._exchanges: dict[str, tuple[str, bool]] = {}
        self._unblocked = asyncio.Event()
        self._unblocked.set()
        self._recovering: str | None = None  # why the publish channel is being reopened
        # Mandatory tracked publishes that no queue took go to this queue instead of failing.
        self._unrouted_queue = unrouted_queue
        self._unrouted: Counter[str] = Counter()
        self._listener = _Listener(self)

    @classmethod
    async def connect(
        cls,
        settings: BrokerSettings,
        *,
        max_in_flight: int = 1024,
        connection_name: str | None = None,
        publish_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        heartbeat: int = 30,
        reconnect_delay: float = 0.5,
        max_reconnect_delay: float = 15.0,
        close_timeout: float = 10.0,
        unrouted_queue: str | None = None,
    ) -> Publisher:
        """Connect now; raises ``BrokerUnavailable`` at once when RabbitMQ does not answer.

        With ``unrouted_queue``, a mandatory publish sent with ``try_submit_tracked`` that no
        queue is bound to receive is published to that queue (through the default exchange)
        instead of failing, and its listener hears how that publish went. Declare the queue.
        """
        publisher = cls(
            settings,
            max_in_flight=max_in_flight,
            connection_name=connection_name,
            publish_timeout=publish_timeout,
            connect_timeout=connect_timeout,
            heartbeat=heartbeat,
            reconnect_delay=reconnect_delay,
            max_reconnect_delay=max_reconnect_delay,
            close_timeout=close_timeout,
            unrouted_queue=unrouted_queue,
        )
        publisher._install(await publisher._open_connection())
        return publisher

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- state ---------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Publishes written but not yet confirmed (at most ``max_in_flight``)."""
        connection = self._connection
        return len(connection.tracker) if connection is not None else 0

    @property
    def max_in_flight(self) -> int:
        """The window size."""
        return self._max_in_flight

    @property
    def is_connected(self) -> bool:
        """True while a confirm channel is open and publishes go straight out."""
        connection = self._connection
        return connection is not None and connection.ready

    @property
    def events_exchange(self) -> str:
        """Where publishes go unless told otherwise: the group's events exchange."""
        return self._events_exchange

    @property
    def unrouted_queue(self) -> str | None:
        """Where unroutable mandatory tracked publishes go instead of failing (None: they fail)."""
        return self._unrouted_queue

    @property
    def unrouted(self) -> Counter[str]:
        """How many publishes went to ``unrouted_queue``, by their routing key (ever growing)."""
        return self._unrouted

    @property
    def recovering(self) -> str | None:
        """Why RabbitMQ closed the publish channel, while it is being reopened; else None."""
        return self._recovering

    @property
    def blocked_reason(self) -> str | None:
        """Why RabbitMQ blocks publishing right now (a resource alarm), or None."""
        connection = self._connection
        if connection is None or not connection.blocked:
            return None
        return connection.blocked_reason

    async def wait_connected(self, timeout: float) -> None:
        """Wait for the (re)connection; ``BrokerUnavailable`` when ``timeout`` passes first."""
        if self.is_connected:
            return
        try:
            async with asyncio.timeout(timeout):
                while not self.is_connected:
                    if self._closed:
                        raise BrokerUnavailable(
                            "the publisher is closed", host=self._endpoint.address
                        )
                    self._ready.clear()
                    await self._ready.wait()
        except TimeoutError:
            raise BrokerUnavailable(
                f"RabbitMQ at {self._endpoint.address} still unreachable after {timeout:g}s",
                host=self._endpoint.address,
            ) from None

    # -- publishing ----------------------------------------------------------------------------

    async def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        exchange: str | None = None,
        headers: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        type: str | None = None,
        timestamp: datetime.datetime | float | None = None,
        content_type: str | None = "application/json",
        persistent: bool = True,
        mandatory: bool = False,
    ) -> None:
        """Publish and return once RabbitMQ confirmed it.

        Raises ``PublishNacked``, ``PublishReturned`` (mandatory and unroutable), or
        ``BrokerUnavailable`` / ``ConnectionLost`` (not confirmed: treat as not sent).
        """
        confirmed = await self.submit(
            routing_key,
            body,
            exchange=exchange,
            headers=headers,
            message_id=message_id,
            type=type,
            timestamp=timestamp,
            content_type=content_type,
            persistent=persistent,
            mandatory=mandatory,
        )
        await confirmed

    async def submit(
        self,
        routing_key: str,
        body: bytes,
        *,
        exchange: str | None = None,
        headers: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        type: str | None = None,
        timestamp: datetime.datetime | float | None = None,
        content_type: str | None = "application/json",
        persistent: bool = True,
        mandatory: bool = False,
    ) -> asyncio.Future[None]:
        """Write the publish and return the future of its confirm.

        Waits first (the backpressure) while ``max_in_flight`` publishes are unconfirmed or
        while disconnected, at most ``publish_timeout`` seconds.
        """
        connection = self._writable() or await self._acquire()
        if exchange is None:
            exchange = self._events_exchange
        if mandatory:
            headers = {**(headers or {}), RETURN_TAG_HEADER: connection.tracker.next_return_id}
        flags, properties = encode_properties(
            content_type, headers, persistent, message_id, timestamp, type
        )
        content = encode_content(1, flags, properties, body, connection.max_body_frame)
        return connection.publish(exchange, routing_key, mandatory, content)

    def prepare(
        self,
        routing_key: str,
        *,
        exchange: str | None = None,
        headers: Mapping[str, Any] | None = None,
        type: str | None = None,
        content_type: str | None = "application/json",
        persistent: bool = True,
        mandatory: bool = False,
    ) -> PreparedPublish:
        """Encode once what every publish of a stream shares (see ``submit_prepared``).

        ``headers`` are the constant ones; per-message headers given to ``submit_prepared``
        follow them. The messages on the wire are the same as ``submit`` with the union.
        """
        return PreparedPublish(
            self._events_exchange if exchange is None else exchange,
            routing_key,
            mandatory,
            PropertiesTemplate(
                content_type=content_type, headers=headers, persistent=persistent, type_=type
            ),
        )

    async def submit_prepared(
        self,
        prepared: PreparedPublish,
        body: bytes,
        *,
        headers: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        timestamp: datetime.datetime | float | None = None,
    ) -> asyncio.Future[None]:
        """``submit`` for a prepared stream: same waiting, same confirm future, less encoding."""
        connection = self._writable() or await self._acquire()
        if prepared.mandatory:
            headers = {**(headers or {}), RETURN_TAG_HEADER: connection.tracker.next_return_id}
        flags, properties = prepared.properties.encode(headers, message_id, timestamp)
        content = encode_content(
            PUBLISH_CHANNEL, flags, properties, body, connection.max_body_frame
        )
        return connection.publish_method(
            prepared.method, prepared.exchange, prepared.routing_key, content
        )

    def try_submit_tracked(
        self,
        prepared: PreparedPublish,
        body: bytes,
        listener: ConfirmListener,
        token: int,
        *,
        headers: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        timestamp: datetime.datetime | float | None = None,
    ) -> bool:
        """Write now and tell ``listener`` the outcome under ``token``; False if it must wait.

        The relay's hot path: no coroutine, no future. On False nothing was written; call
        :meth:`submit_tracked`, which waits for the connection or a window slot.
        """
        connection = self._writable()
        if connection is None:
            return False
        self._write_tracked(
            connection, prepared, body, listener, token, headers, message_id, timestamp
        )
        return True

    async def submit_tracked(
        self,
        prepared: PreparedPublish,
        body: bytes,
        listener: ConfirmListener,
        token: int,
        *,
        headers: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        timestamp: datetime.datetime | float | None = None,
    ) -> None:
        """``try_submit_tracked`` that waits (at most ``publish_timeout``) instead of refusing.

        Raises ``BrokerUnavailable`` when no slot frees up in time; nothing was written then.
        """
        if self.try_submit_tracked(
            prepared,
            body,
            listener,
            token,
            headers=headers,
            message_id=message_id,
            timestamp=timestamp,
        ):
            return
        connection = await self._acquire()
        self._write_tracked(
            connection, prepared, body, listener, token, headers, message_id, timestamp
        )

    def _write_tracked(
        self,
        connection: PublishConnection,
        prepared: PreparedPublish,
        body: bytes,
        listener: ConfirmListener,
        token: int,
        headers: Mapping[str, Any] | None,
        message_id: str | None,
        timestamp: datetime.datetime | float | None,
    ) -> None:
        if prepared.mandatory:
            headers = {**(headers or {}), RETURN_TAG_HEADER: connection.tracker.next_return_id}
        flags, properties = prepared.properties.encode(headers, message_id, timestamp)
        content = encode_content(
            PUBLISH_CHANNEL, flags, properties, body, connection.max_body_frame
        )
        connection.publish_method_tracked(
            prepared.method, prepared.exchange, prepared.routing_key, content, listener, token
        )

    def _writable(self) -> PublishConnection | None:
        """The connection when a publish may go out right now, without waiting or queue-jumping."""
        connection = self._connection
        if (
            connection is None
            or not connection.ready
            or connection.paused
            or connection.blocked
            or self._space_waiters
            or len(connection.tracker) + self._woken >= self._max_in_flight
        ):
            return None
        return connection

    async def _acquire(self) -> PublishConnection:
        """Wait for a connection with a free window slot, bounded by ``publish_timeout``."""
        woken = False  # once woken from the queue, do not queue behind later arrivals again
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._publish_timeout) as deadline:
                while True:
                    if self._closed:
                        raise BrokerUnavailable(
                            "the publisher is closed", host=self._endpoint.address
                        )
                    connection = self._connection
                    if connection is None or not connection.ready:
                        self._ready.clear()  # set again by whatever makes a connection ready
                        await self._ready.wait()
                    elif connection.blocked:
                        # A resource alarm: RabbitMQ is there and will take it once the alarm
                        # clears, so the publish waits for that, however long (backpressure).
                        deadline.reschedule(None)
                        self._unblocked.clear()
                        await self._unblocked.wait()
                        deadline.reschedule(loop.time() + self._publish_timeout)
                    elif (
                        connection.paused
                        or len(connection.tracker) + self._woken >= self._max_in_flight
                        or (self._space_waiters and not woken)
                    ):
                        await self._wait_for_space()
                        woken = True
                    else:
                        return connection
        except TimeoutError:
            connection = self._connection
            state = (
                f"{self.in_flight} publishes unconfirmed"
                if connection is not None and connection.ready
                else "no connection"
            )
            raise BrokerUnavailable(
                f"publish not sent: RabbitMQ at {self._endpoint.address} did not take it within "
                f"{self._publish_timeout:g}s ({state})",
                host=self._endpoint.address,
            ) from None

    async def _wait_for_space(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._space_waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter.done() and not waiter.cancelled():
                self._woken -= 1  # the slot we were promised is given back to the pool
            else:
                with contextlib.suppress(ValueError):
                    self._space_waiters.remove(waiter)

    def _wake_waiters(self) -> None:
        """Hand free window slots to waiting submitters, oldest first."""
        waiters = self._space_waiters
        if not waiters:
            return
        connection = self._connection
        if (
            self._closed
            or connection is None
            or not connection.ready
            or connection.paused
            or connection.blocked
        ):
            # Let them all re-check: they wait for the reconnection (or raise) instead.
            free = len(waiters)
        else:
            free = self._max_in_flight - len(connection.tracker) - self._woken
        while free > 0 and waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._woken += 1
                free -= 1

    # -- topology ------------------------------------------------------------------------------

    async def declare_events_exchange(self) -> None:
        """Declare the events exchange (durable, direct, named after the group); idempotent."""
        await self.declare_exchange(self._events_exchange, "direct", durable=True)

    async def declare_exchange(
        self, name: str, exchange_type: str = "direct", *, durable: bool = True
    ) -> None:
        """Declare an exchange over the publisher's connection (waits for it like a publish).

        Should RabbitMQ later refuse a publish because the exchange was deleted, the publisher
        declares it again and writes the publish again.
        """
        connection = await self._acquire_connection()
        await connection.declare_exchange(name, exchange_type, durable=durable)
        self._exchanges[name] = (exchange_type, durable)

    async def declare_queue(self, name: str, arguments: Mapping[str, Any] | None = None) -> None:
        """Declare a durable queue over the publisher's connection (e.g. ``{group}.oversize``)."""
        connection = await self._acquire_connection()
        await connection.declare_queue(name, arguments or {})

    async def _acquire_connection(self) -> PublishConnection:
        if self.is_connected and self._connection is not None:
            return self._connection
        await self.wait_connected(self._publish_timeout)
        assert self._connection is not None
        return self._connection

    # -- connection lifecycle ------------------------------------------------------------------

    async def _open_connection(self) -> PublishConnection:
        """Connect to the first node that answers, the node just lost last (cluster failover).

        Nothing in flight carries over: a lost connection failed its unconfirmed publishes, so
        the caller republishes them (same message_id) on whichever node answers now.
        """
        self._node_url, connection = await connect_first(
            self._endpoints, self._open_node, last_lost=self._node_url
        )
        self._endpoint = self._endpoints.node(self._node_url)
        return connection

    async def _open_node(self, url: str) -> PublishConnection:
        return await PublishConnection.open(
            self._endpoints.node(url),
            self._listener,
            heartbeat=self._heartbeat,
            timeout=self._connect_timeout,
            client_properties=self._client_properties,
            exchanges=self._exchanges,
            unrouted_queue=self._unrouted_queue,
            unrouted=self._unrouted,
        )

    def _install(self, connection: PublishConnection) -> None:
        self._connection = connection
        self._ready.set()
        self._wake_waiters()

    def _on_ready(self, connection: PublishConnection) -> None:
        """The publish channel was reopened after a channel error."""
        if connection is self._connection:
            self._recovering = None
            self._ready.set()
            self._wake_waiters()

    def _on_unready(self, connection: PublishConnection, reason: str) -> None:
        """A channel error: publishes wait while the channel reopens."""
        if connection is self._connection:
            log.warning("publish channel closed by RabbitMQ; reopening it", reason=reason)
            self._recovering = reason
            self._ready.clear()
            self._wake_waiters()

    def _on_lost(self, connection: PublishConnection, reason: str) -> None:
        """Start reconnecting in the background (unless we are closing)."""
        if connection is not self._connection:
            return
        self._connection = None
        self._recovering = None
        self._ready.clear()
        self._drained.set()
        self._unblocked.set()  # waiters for the unblock wait for the reconnection instead
        self._wake_waiters()
        if self._closed:
            return
        log.warning("lost the RabbitMQ publish connection; reconnecting", reason=reason)
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.create_task(self._reconnect())

    def _on_blocked(self, connection: PublishConnection) -> None:
        """A resource alarm: waiters for a window slot move to the (unbounded) unblock wait."""
        if connection is self._connection:
            self._unblocked.clear()
            self._wake_waiters()

    def _on_unblocked(self, connection: PublishConnection) -> None:
        if connection is self._connection:
            self._unblocked.set()
            self._wake_waiters()

    def _on_released(self, connection: PublishConnection) -> None:
        """Acks arrived: give the freed slots to waiting submitters."""
        if self._space_waiters:
            self._wake_waiters()
        if self._closed and not len(connection.tracker):
            self._drained.set()

    async def _reconnect(self) -> None:
        backoff = Backoff(
            self._reconnect_delay, max(self._reconnect_delay, self._max_reconnect_delay)
        )
        while not self._closed:
            await backoff.sleep()
            attempt = backoff.attempts
            if self._closed:
                return
            try:
                connection = await self._open_connection()
            except Exception as error:
                # BrokerUnavailable is the expected failure; any other error must not kill this
                # task either, or every publish would wait for a connection that never comes.
                log.warning(
                    "RabbitMQ still unreachable",
                    attempt=attempt,
                    error=str(error) if isinstance(error, BrokerUnavailable) else repr(error),
                    retry_in=backoff.ceiling(attempt),
                )
                continue
            if self._closed:
                await connection.close(1.0)
                return
            log.info("reconnected to RabbitMQ", attempt=attempt, node=self._endpoint.address)
            self._install(connection)
            return

    async def close(self) -> None:
        """Wait (up to ``close_timeout``) for in-flight confirms, then close the connection.

        Publishes still unconfirmed after that fail with ``ConnectionLost``.
        """
        if self._closed:
            return
        self._closed = True
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
        self._wake_waiters()
        self._ready.set()  # waiters for a connection re-check, see the close, and raise
        self._unblocked.set()
        connection = self._connection
        if connection is None:
            return
        if len(connection.tracker) and connection.ready:
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._close_timeout):
                    await self._drained.wait()
        await connection.close(timeout=2.0)
        self._connection = None


class _Listener:
    """Forwards connection events to the publisher without making them part of its API."""

    __slots__ = (
        "confirms_released",
        "connection_blocked",
        "connection_lost",
        "connection_ready",
        "connection_unblocked",
        "connection_unready",
    )

    def __init__(self, publisher: Publisher) -> None:
        self.connection_ready = publisher._on_ready
        self.connection_unready = publisher._on_unready
        self.connection_lost = publisher._on_lost
        self.confirms_released = publisher._on_released
        self.connection_blocked = publisher._on_blocked
        self.connection_unblocked = publisher._on_unblocked
