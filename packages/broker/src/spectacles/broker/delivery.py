"""What a handler receives, and the header names of the retry / dead-letter protocol."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

__all__ = [
    "ATTEMPTS_HEADER",
    "DELIVERY_COUNT_HEADER",
    "ERROR_HEADER",
    "ERROR_HEADER_MAX_CHARS",
    "INTERRUPTIONS_HEADER",
    "ORIGINAL_EXCHANGE_HEADER",
    "ORIGINAL_ROUTING_KEY_HEADER",
    "Delivery",
]

#: Attempts that already ended in failure (set by consumers on retried and dead-lettered copies).
ATTEMPTS_HEADER: Final = "x-attempts"
#: Deliveries that ended without an ack nor a handler failure (connection lost, consumer died),
#: carried on retried copies; quorum queues add their own ``x-delivery-count`` to it.
INTERRUPTIONS_HEADER: Final = "x-interruptions"
#: Why a message was dead-lettered: ``"<ExceptionType>: <message>"``, truncated.
ERROR_HEADER: Final = "x-error"
#: Exchange / routing key the message was first published with (kept on retries and dead letters).
ORIGINAL_EXCHANGE_HEADER: Final = "x-original-exchange"
ORIGINAL_ROUTING_KEY_HEADER: Final = "x-original-routing-key"
#: Set by RabbitMQ on quorum-queue redeliveries: how often this copy was delivered without an ack.
DELIVERY_COUNT_HEADER: Final = "x-delivery-count"
ERROR_HEADER_MAX_CHARS: Final = 1000


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message handed to a handler; acked only after the handler returns.

    ``routing_key`` is the event name for events (the original one, even on a retried copy).
    ``attempt`` is 1 on the first try and grows with every failed or interrupted attempt;
    ``interruptions`` is the interrupted part of that (returned without an ack: connection lost,
    consumer died), which has its own, larger budget than handler failures.
    """

    body: bytes
    routing_key: str
    headers: Mapping[str, Any] = field(default_factory=dict)
    message_id: str | None = None
    type: str | None = None
    timestamp: datetime | None = None
    attempt: int = 1
    redelivered: bool = False
    exchange: str = ""
    content_type: str | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    interruptions: int = 0


class _Assembly:
    """Builds a ``Delivery`` per received message at the cost of plain slot stores.

    A frozen dataclass's ``__init__`` stores every field through ``object.__setattr__``, 13 calls
    per message (~2 µs, more than a no-op handler). This class has ``Delivery``'s exact slots, so
    an instance can become a ``Delivery`` by assigning ``__class__`` once it is filled: the result
    is a genuine, read-only ``Delivery`` (equal to one built the usual way).
    """

    __slots__ = Delivery.__slots__

    def __init__(
        self,
        body: bytes,
        routing_key: str,
        headers: Mapping[str, Any],
        message_id: str | None,
        type: str | None,
        timestamp: datetime | None,
        attempt: int,
        redelivered: bool,
        exchange: str,
        content_type: str | None,
        correlation_id: str | None,
        reply_to: str | None,
        interruptions: int,
    ) -> None:
        self.body = body
        self.routing_key = routing_key
        self.headers = headers
        self.message_id = message_id
        self.type = type
        self.timestamp = timestamp
        self.attempt = attempt
        self.redelivered = redelivered
        self.exchange = exchange
        self.content_type = content_type
        self.correlation_id = correlation_id
        self.reply_to = reply_to
        self.interruptions = interruptions
        self.__class__ = Delivery  # type: ignore[assignment]


# Every field, in order: a field added to Delivery must be added to _Assembly too.
assert _Assembly.__init__.__code__.co_varnames[1:14] == Delivery.__slots__


#: ``Delivery(...)`` with all 13 fields given positionally, in order: the consumer's hot path.
new_delivery: Final[Callable[..., Delivery]] = _Assembly  # type: ignore[assignment]
