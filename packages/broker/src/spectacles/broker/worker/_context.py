"""What a handler gets besides its event: the tools to act and the facts about the delivery."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from spectacles.broker.worker._commands import CommandSender
    from spectacles.rest import RestClient

__all__ = ["Context"]


@dataclass(frozen=True, slots=True)
class Context:
    """Per-delivery context passed to every handler.

    ``rest`` and ``commands`` are shared by every handler of the process (one connection pool and
    one rate limiter per process); ``log`` is already bound to the event and its ids so a handler's
    log lines can be traced back to the message that caused them.
    """

    rest: RestClient
    """Discord REST client (rate-limited, retries 429 / 5xx)."""
    commands: CommandSender
    """Sends gateway commands (presence, voice state, member requests) through the gateway."""
    log: structlog.stdlib.BoundLogger
    """Logger bound to worker, dispatch (event name), message_id, shard, guild and channel."""
    worker: str
    """The worker's name (its queue is ``{group}.{worker}``)."""
    event: str
    """The dispatch name, e.g. ``MESSAGE_CREATE``."""
    headers: Mapping[str, Any] = field(default_factory=dict)
    """AMQP headers as the gateway set them (``shard_id``, ``seq``, ``guild_id``)."""
    shard_id: int | None = None
    """The shard that received the event, when the gateway said."""
    message_id: str | None = None
    """``{shard_id}:{session_id}:{seq}``: stable across a RESUME replay, use it to de-duplicate."""
    attempt: int = 1
    """1 on first delivery; higher when a previous run of a handler raised."""
