"""What a handler gets besides its event: the tools to act and the facts about the delivery."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from spectacles.rest import RestClient
    from spectacles.worker._commands import CommandSender

__all__ = ["Context"]


class Context:
    """Per-delivery context passed to every handler.

    ``rest`` and ``commands`` are shared by every handler of the process (one connection pool and
    one rate limiter per process); ``log`` is bound to the event and its ids so a handler's log
    lines can be traced back to the message that caused them. Binding costs more than a no-op
    handler, so it happens on first use of ``log`` (``log_factory``), not per delivery.
    """

    __slots__ = (
        "_log",
        "_log_factory",
        "attempt",
        "commands",
        "event",
        "headers",
        "message_id",
        "rest",
        "shard_id",
        "worker",
    )

    rest: RestClient
    """Discord REST client (rate-limited, retries 429 / 5xx)."""
    commands: CommandSender
    """Sends gateway commands (presence, voice state, member requests) through the gateway."""
    worker: str
    """The worker's name (its queue is ``{group}.{worker}``)."""
    event: str
    """The dispatch name, e.g. ``MESSAGE_CREATE``."""
    headers: Mapping[str, Any]
    """AMQP headers as the gateway set them (``shard_id``, ``seq``, ``guild_id``)."""
    shard_id: int | None
    """The shard that received the event, when the gateway said."""
    message_id: str | None
    """``{shard_id}:{session_id}:{seq}``: stable across a RESUME replay, use it to de-duplicate."""
    attempt: int
    """1 on first delivery; higher when a previous run of a handler raised."""
    _log: structlog.stdlib.BoundLogger | None
    _log_factory: Callable[[], structlog.stdlib.BoundLogger] | None

    def __init__(
        self,
        *,
        rest: RestClient,
        commands: CommandSender,
        worker: str,
        event: str,
        log: structlog.stdlib.BoundLogger | None = None,
        log_factory: Callable[[], structlog.stdlib.BoundLogger] | None = None,
        headers: Mapping[str, Any] | None = None,
        shard_id: int | None = None,
        message_id: str | None = None,
        attempt: int = 1,
    ) -> None:
        if log is None and log_factory is None:
            raise TypeError("Context needs log or log_factory")
        # Read-only once built, like the frozen dataclass it replaces: handlers share nothing.
        init = object.__setattr__
        init(self, "rest", rest)
        init(self, "commands", commands)
        init(self, "worker", worker)
        init(self, "event", event)
        init(self, "headers", headers if headers is not None else {})
        init(self, "shard_id", shard_id)
        init(self, "message_id", message_id)
        init(self, "attempt", attempt)
        init(self, "_log", log)
        init(self, "_log_factory", log_factory)

    @property
    def log(self) -> structlog.stdlib.BoundLogger:
        """Logger bound to worker, dispatch (event name), message_id, shard, guild and channel."""
        log = self._log
        if log is None:
            assert self._log_factory is not None  # __init__ requires one of the two
            log = self._log_factory()
            object.__setattr__(self, "_log", log)
        return log

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Context is read-only (cannot set {name!r})")

    def __repr__(self) -> str:
        return (
            f"Context(worker={self.worker!r}, event={self.event!r}, shard_id={self.shard_id!r}, "
            f"message_id={self.message_id!r}, attempt={self.attempt!r})"
        )
