"""The lean connection the consumers of one ``Broker`` share, one channel each.

A gateway consumes one commands queue per shard and a worker may run several consumers: a
connection per consumer would multiply TCP connections, heartbeats and RabbitMQ's per-connection
memory by the shard count. The link opens one lean connection on first use, reopens it when it is
found lost, follows the broker (when the broker's connection drops this one is dropped too, so
consumers come back with it), and closes it when its last consumer releases it.
"""

from __future__ import annotations

import asyncio
import weakref

from spectacles.observability import get_logger

from ._endpoints import connect_first
from ._publish_connection import AmqpEndpoint, PublishConnection
from .broker import Broker

__all__ = ["ConsumeLink"]

log = get_logger(__name__)

_HEARTBEAT = 30
_CONNECT_TIMEOUT = 10.0

_links: weakref.WeakKeyDictionary[Broker, ConsumeLink] = weakref.WeakKeyDictionary()


class _Quiet:
    """The link's connection listener: consumers watch their channels, not these."""

    def connection_ready(self, connection: PublishConnection) -> None:
        """The publish channel (used for retries and dead letters) reopened."""

    def connection_unready(self, connection: PublishConnection, reason: str) -> None:
        """The publish channel closed; a retry waits until it reopens."""

    def connection_lost(self, connection: PublishConnection, reason: str) -> None:
        """Gone: each consuming channel reports it to its consumer."""

    def confirms_released(self, connection: PublishConnection) -> None:
        """Confirms of retries / dead letters arrived (their futures resolve by themselves)."""

    def connection_blocked(self, connection: PublishConnection) -> None:
        log.warning("consumer.connection_blocked", reason=connection.blocked_reason)

    def connection_unblocked(self, connection: PublishConnection) -> None:
        log.info("consumer.connection_unblocked")


class ConsumeLink:
    """One broker's consuming connection; ``acquire`` it per consumer, ``release`` when done."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._connection: PublishConnection | None = None
        self._node_url: str | None = None
        self._lock = asyncio.Lock()
        self._users = 0
        #: What RabbitMQ shows for the connection (``rabbitmqctl list_connections``).
        self.name = f"consumer@{broker.connection_name}"

    @classmethod
    def acquire(cls, broker: Broker) -> ConsumeLink:
        """The broker's link (created on first use); pair with :meth:`release`."""
        link = _links.get(broker)
        if link is None:
            link = _links[broker] = cls(broker)
            broker.on_connection_lost(link._on_broker_lost)
        link._users += 1
        return link

    async def release(self) -> None:
        """One consumer less; the last one closes the connection."""
        self._users -= 1
        if self._users > 0:
            return
        if _links.get(self._broker) is self:
            del _links[self._broker]
        self._broker.remove_listener(self._on_broker_lost)
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close(5.0)

    async def connection(self) -> PublishConnection:
        """The live connection, opened (or reopened) by whichever consumer asks first."""
        async with self._lock:
            connection = self._connection
            if connection is not None and not connection.lost:
                return connection
            self._node_url, opened = await connect_first(
                self._broker.settings.endpoints, self._open_node, last_lost=self._node_url
            )
            self._connection = opened
            return opened

    async def _open_node(self, url: str) -> PublishConnection:
        return await PublishConnection.open(
            AmqpEndpoint(url),
            _Quiet(),
            heartbeat=_HEARTBEAT,
            timeout=_CONNECT_TIMEOUT,
            client_properties={"product": "spectacles-python", "connection_name": self.name},
        )

    def _on_broker_lost(self) -> None:
        connection = self._connection
        if connection is not None:
            connection.abort("the broker's connection to RabbitMQ was lost")
