"""One supervised AMQP connection: fail fast at start, reconnect with backoff afterwards.

Consumers, RPC endpoints and the worker SDK open their own channels on it and watch those channels;
when a channel dies with the connection they ask :meth:`Broker.wait_connected` for the next live
connection and re-declare their topology there. The broker itself only keeps a connection alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Final, Self, cast

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, ConnectionParameter

from spectacles.observability import get_logger, register_secret

from ._backoff import Backoff
from ._close import close_within
from ._endpoints import connect_first
from ._translate import LINK_ERRORS, describe
from ._url import AmqpUrl
from .errors import BrokerUnavailable, ConnectionLost
from .settings import BrokerSettings
from .topology import Topology

__all__ = ["CONNECTION_ERRORS", "Broker", "default_connection_name", "open_aio_pika"]

log = get_logger(__name__)

#: Kept for callers that imported it from here; the definition is ``_translate.LINK_ERRORS``.
CONNECTION_ERRORS: Final = LINK_ERRORS

LostListener = Callable[[], Awaitable[None] | None]


def default_connection_name(role: str = "broker") -> str:
    """Name shown in RabbitMQ's management UI / ``rabbitmqctl list_connections``."""
    return f"spectacles:{role}:{socket.gethostname()}:{os.getpid()}"


class _SniConnection(aio_pika.Connection):
    """aio-pika passes only the keyword arguments it declares to the socket; add SNI."""

    PARAMETERS = (
        *aio_pika.Connection.PARAMETERS,
        ConnectionParameter(name="server_hostname", parser=str, is_kwarg=True),
    )


async def open_aio_pika(node: AmqpUrl, *, name: str, timeout: float) -> AbstractConnection:
    """An aio-pika connection to ``node`` with every option of its URL (see ``_url``).

    The URL's ``name`` and ``connection_timeout`` win over ``name`` and ``timeout``.
    """
    options: dict[str, Any] = {}
    if node.server_hostname is not None:
        options["server_hostname"] = node.server_hostname
    connection = await aio_pika.connect(
        node.aiormq_url(),
        ssl_context=node.ssl_context(),
        timeout=node.connection_timeout or timeout,
        client_properties={"connection_name": node.name or name},
        connection_class=_SniConnection,
        **options,
    )
    return cast(AbstractConnection, connection)


class Broker:
    """A RabbitMQ connection that heals itself after the first successful connect."""

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        connection_name: str | None = None,
        connect_timeout: float = 5.0,
        reconnect_delay: float = 0.5,
        max_reconnect_delay: float = 15.0,
    ) -> None:
        self.settings = settings
        self.topology = Topology(settings.group)
        self.connection_name = connection_name or default_connection_name()
        self._connect_timeout = connect_timeout
        self._reconnect_delay = reconnect_delay
        self._max_reconnect_delay = max_reconnect_delay
        self._connection: AbstractConnection | None = None
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._closing = False
        self._keep_alive_task: asyncio.Task[None] | None = None
        self._on_lost: list[LostListener] = []
        self._node: str | None = None  # the URL of the node we are (or were last) connected to
        self.reconnects = 0

    # -- lifecycle ----------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        settings: BrokerSettings | None = None,
        *,
        connection_name: str | None = None,
        connect_timeout: float = 5.0,
        reconnect_delay: float = 0.5,
        max_reconnect_delay: float = 15.0,
    ) -> Broker:
        """Connect once; raise :class:`BrokerUnavailable` (naming the host) if that fails."""
        broker = cls(
            settings or BrokerSettings.from_env(),
            connection_name=connection_name,
            connect_timeout=connect_timeout,
            reconnect_delay=reconnect_delay,
            max_reconnect_delay=max_reconnect_delay,
        )
        await broker.start()
        return broker

    async def start(self) -> None:
        """Open the first connection (fail fast) and start supervising it."""
        if self._keep_alive_task is not None:
            return
        for password in self.settings.passwords:
            register_secret(password)
        try:
            self._adopt(await self._open())
        except (BrokerUnavailable, *CONNECTION_ERRORS) as exc:
            raise self._unavailable(exc) from None
        self._keep_alive_task = asyncio.create_task(
            self._keep_alive(), name=f"broker-keep-alive:{self.connection_name}"
        )

    async def close(self) -> None:
        """Stop reconnecting and close the connection (idempotent)."""
        self._closing = True
        self._connected.clear()
        task, self._keep_alive_task = self._keep_alive_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        connection, self._connection = self._connection, None
        if connection is not None:
            await close_within(connection.close(), 5.0)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- use ----------------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        """True while a live connection is open."""
        return self._connected.is_set() and not self._closing

    @property
    def is_closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closing

    async def wait_connected(self, timeout: float | None = None) -> AbstractConnection:
        """The live connection, waiting (up to ``timeout``) while it is being re-established."""
        if self._closing:
            raise BrokerUnavailable("broker was closed", host=self.settings.host)
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            raise BrokerUnavailable(
                f"RabbitMQ at {self.settings.host} still unreachable after {timeout}s",
                host=self.settings.host,
            ) from None
        if self._connection is None or self._closing:
            raise BrokerUnavailable("broker was closed", host=self.settings.host)
        return self._connection

    async def channel(
        self,
        *,
        publisher_confirms: bool = False,
        on_return_raises: bool = False,
        timeout: float | None = None,
    ) -> AbstractChannel:
        """Open a channel on the live connection (waiting for it, bounded by ``timeout``)."""
        connection = await self.wait_connected(timeout)
        try:
            channel = connection.channel(
                publisher_confirms=publisher_confirms, on_return_raises=on_return_raises
            )
            await channel
        except (RuntimeError, *CONNECTION_ERRORS) as exc:
            # The connection died between wait_connected() and here; callers retry on this.
            raise ConnectionLost(
                f"connection to {self.settings.host} lost while opening a channel: {exc}",
                host=self.settings.host,
            ) from None
        return channel

    def on_connection_lost(self, listener: LostListener) -> None:
        """Call ``listener`` (sync or async) each time the connection drops unexpectedly."""
        self._on_lost.append(listener)

    def remove_listener(self, listener: LostListener) -> None:
        """Undo :meth:`on_connection_lost`."""
        with contextlib.suppress(ValueError):
            self._on_lost.remove(listener)

    # -- internals ----------------------------------------------------------------------------

    @property
    def node(self) -> str | None:
        """``host:port`` of the node the connection goes (or last went) to."""
        return self.settings.endpoints.node(self._node).address if self._node else None

    async def _open(self) -> AbstractConnection:
        """Connect to the first node that answers, the node just lost last (cluster failover)."""
        self._node, connection = await connect_first(
            self.settings.endpoints, self._open_node, last_lost=self._node
        )
        return connection

    async def _open_node(self, url: str) -> AbstractConnection:
        node = self.settings.endpoints.node(url)
        return await open_aio_pika(node, name=self.connection_name, timeout=self._connect_timeout)

    def _adopt(self, connection: AbstractConnection) -> None:
        self._connection = connection
        connection.close_callbacks.add(self._on_close)
        self._connected.set()

    def _on_close(self, sender: object, exc: BaseException | None = None) -> None:
        if self._closing or sender is not self._connection:
            return
        self._connected.clear()
        self._lost.set()
        log.warning(
            "broker.connection_lost",
            host=self.settings.host,
            connection=self.connection_name,
            error=describe(exc),
        )

    async def _keep_alive(self) -> None:
        while not self._closing:
            await self._lost.wait()
            self._lost.clear()
            await self._notify_lost()
            await self._reconnect()

    async def _notify_lost(self) -> None:
        for listener in list(self._on_lost):
            try:
                result = listener()
                if result is not None:
                    await result
            except Exception:
                log.exception("broker.listener_failed", connection=self.connection_name)

    async def _reconnect(self) -> None:
        old, self._connection = self._connection, None
        if old is not None:  # closing a dead connection may fail oddly, or never return
            await close_within(old.close(), 1.0)
        backoff = Backoff(
            self._reconnect_delay, max(self._reconnect_delay, self._max_reconnect_delay)
        )
        while not self._closing:
            await backoff.sleep()
            attempt = backoff.attempts
            try:
                connection = await self._open()
            except Exception as exc:  # one odd error must not end reconnecting
                log.warning(
                    "broker.reconnect_failed",
                    host=self.settings.host,
                    attempt=attempt,
                    error=describe(exc),
                )
                continue
            self.reconnects += 1
            self._adopt(connection)
            log.info("broker.reconnected", host=self.node, attempt=attempt)
            return

    def _unavailable(self, exc: BaseException) -> BrokerUnavailable:
        detail = describe(exc)
        for password in self.settings.passwords:
            detail = detail.replace(password, "***")
        return BrokerUnavailable(
            f"cannot connect to RabbitMQ at {self.settings.host} ({detail}); check AMQP_URL "
            "and that RabbitMQ is running (`docker compose up -d rabbit`)",
            host=self.settings.host,
        )
