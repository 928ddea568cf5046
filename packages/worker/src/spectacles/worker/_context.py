"""What a handler gets besides its event: the tools to act and the facts about the delivery."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from spectacles.rest import RestClient
    from spectacles.worker._commands import CommandSender

__all__ = ["Context", "new_context"]


_FIELDS: tuple[str, ...] = (
    "rest",
    "commands",
    "worker",
    "event",
    "headers",
    "shard_id",
    "message_id",
    "attempt",
)


class Context:
    """Per-delivery context passed to every handler.

    ``rest`` and ``commands`` are shared by every handler of the process (one connection pool and
    one rate limiter per process); ``log`` is bound to the event and its ids so a handler's log
    lines can be traced back to the message that caused them. Binding costs more than a no-op
    handler, so it happens on first use of ``log`` (``log_factory``), not per delivery.

    Read-only: every attribute is a property over a private slot, so building one is plain slot
    stores (one per message; a ``__setattr__`` that refuses writes would make each store a call).
    """

    __slots__ = tuple(f"_{name}" for name in (*_FIELDS, "log", "log_factory"))

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
        self._rest = rest
        self._commands = commands
        self._worker = worker
        self._event = event
        self._headers = headers if headers is not None else {}
        self._shard_id = shard_id
        self._message_id = message_id
        self._attempt = attempt
        self._log = log
        self._log_factory = log_factory

    @property
    def log(self) -> structlog.stdlib.BoundLogger:
        """Logger bound to worker, dispatch (event name), message_id, shard, guild and channel."""
        log = self._log
        if log is None:
            assert self._log_factory is not None  # __init__ requires one of the two
            log = self._log = self._log_factory()
        return log

    @log.setter
    def log(self, value: object) -> None:
        _read_only("log")

    def __repr__(self) -> str:
        return (
            f"Context(worker={self.worker!r}, event={self.event!r}, shard_id={self.shard_id!r}, "
            f"message_id={self.message_id!r}, attempt={self.attempt!r})"
        )


def new_context(
    rest: RestClient,
    commands: CommandSender,
    worker: str,
    event: str,
    headers: Mapping[str, Any],
    shard_id: int | None,
    message_id: str | None,
    attempt: int,
    log_factory: Callable[[], structlog.stdlib.BoundLogger],
) -> Context:
    """``Context(...)`` for the worker's hot path: positional, no checks (one per message)."""
    ctx = _new(Context)
    ctx._rest = rest
    ctx._commands = commands
    ctx._worker = worker
    ctx._event = event
    ctx._headers = headers
    ctx._shard_id = shard_id
    ctx._message_id = message_id
    ctx._attempt = attempt
    ctx._log = None
    ctx._log_factory = log_factory
    return ctx


_new = object.__new__


def _read_only(name: str) -> None:
    raise AttributeError(f"Context is read-only (cannot set {name!r})")


def _field(name: str) -> property:
    def refuse(self: Context, value: object) -> None:
        _read_only(name)

    return property(attrgetter(f"_{name}"), refuse, doc=Context.__dict__.get(name))


for _name in _FIELDS:
    setattr(Context, _name, _field(_name))
del _name
