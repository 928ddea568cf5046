"""Errors raised by ``spectacles.broker``.

Hierarchy (branch on types, never on message text)::

    BrokerError
    ├── BrokerUnavailable          RabbitMQ cannot be reached (first connect, or during an outage)
    │   └── ConnectionLost         the connection dropped while an operation was in flight
    ├── PublishError               RabbitMQ did not accept a publish
    │   ├── PublishNacked          the broker answered the confirm with a nack
    │   ├── PublishReturned        mandatory publish that no queue was bound to receive
    │   └── PublishTooLarge        the message is over RabbitMQ's ``max_message_size``
    ├── TopologyMismatch           a queue/exchange exists with other arguments than ours
    ├── RpcTimeout                 no RPC reply within the caller's timeout
    ├── RpcError                   the RPC server's handler failed (its error text is carried)
    └── InvalidCommand             (also a ValueError) a gateway command breaks the wire rules

``DeadLetter`` is not an error of the broker: a handler raises it to send the current message
to the dead-letter queue at once (for example an undecodable body) instead of retrying it.
"""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "BrokerUnavailable",
    "ConnectionLost",
    "DeadLetter",
    "InvalidCommand",
    "PublishError",
    "PublishNacked",
    "PublishReturned",
    "PublishTooLarge",
    "RpcError",
    "RpcTimeout",
    "TopologyMismatch",
]


class BrokerError(Exception):
    """Base class of every error raised by the broker package."""


class BrokerUnavailable(BrokerError):
    """RabbitMQ cannot be reached; ``host`` names where we tried (never the password)."""

    def __init__(self, message: str, *, host: str | None = None) -> None:
        super().__init__(message)
        self.host = host


class ConnectionLost(BrokerUnavailable):
    """The connection dropped mid-operation: its outcome is unknown, so treat it as not done."""


class PublishError(BrokerError):
    """RabbitMQ refused a publish; carries where it was going."""

    def __init__(self, message: str, *, exchange: str = "", routing_key: str = "") -> None:
        super().__init__(message)
        self.exchange = exchange
        self.routing_key = routing_key


class PublishNacked(PublishError):
    """The broker nacked the publish (e.g. a queue overflow with ``reject-publish``)."""


class PublishReturned(PublishError):
    """A mandatory publish was unroutable: no queue is bound for the routing key."""

    def __init__(
        self,
        message: str,
        *,
        exchange: str = "",
        routing_key: str = "",
        reply_code: int | None = None,
        reply_text: str | None = None,
    ) -> None:
        super().__init__(message, exchange=exchange, routing_key=routing_key)
        self.reply_code = reply_code
        self.reply_text = reply_text


class PublishTooLarge(PublishError):
    """RabbitMQ refused the message as larger than its ``max_message_size`` (``limit``).

    Sending it again can never succeed: the caller must store or drop it, not retry.
    """

    def __init__(
        self, message: str, *, exchange: str = "", routing_key: str = "", size: int, limit: int
    ) -> None:
        super().__init__(message, exchange=exchange, routing_key=routing_key)
        self.size = size
        self.limit = limit


class TopologyMismatch(BrokerError):
    """RabbitMQ refused a declaration because the entity exists with other arguments."""

    def __init__(self, message: str, *, queue: str | None = None) -> None:
        super().__init__(message)
        self.queue = queue


class RpcError(BrokerError):
    """The RPC server's handler raised; ``remote_error`` is its ``"Type: message"`` text."""

    def __init__(self, message: str, *, remote_error: str, routing_key: str = "") -> None:
        super().__init__(message)
        self.remote_error = remote_error
        self.routing_key = routing_key


class RpcTimeout(BrokerError):
    """No reply arrived within ``timeout`` seconds for an RPC call."""

    def __init__(self, message: str, *, routing_key: str = "", timeout: float = 0.0) -> None:
        super().__init__(message)
        self.routing_key = routing_key
        self.timeout = timeout


class InvalidCommand(BrokerError, ValueError):
    """A gateway command is not allowed on the wire (opcode, size or shape); ``reason`` says why."""

    def __init__(self, reason: str, *, op: object = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.op = op


class DeadLetter(Exception):
    """Raise from a handler to dead-letter the current message at once, with ``reason`` recorded."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
