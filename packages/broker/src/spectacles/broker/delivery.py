"""What a handler receives, and the header names of the retry / dead-letter protocol."""

from __future__ import annotations

from collections.abc import Mapping
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
