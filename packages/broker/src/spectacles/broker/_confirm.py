"""Publisher-confirm bookkeeping for one confirm-mode channel.

Delivery tags are consecutive integers from 1 per channel, and RabbitMQ acknowledges them in
order or in ``multiple`` ranges. So pending publishes live in a dict keyed by tag (insertion order
= tag order) with a ``_lowest`` cursor: a multiple ack pops ``_lowest..tag`` directly, without
scanning, and the in-flight count is just ``len(self._pending)``.

A publish is settled one of two ways. ``add`` gives the caller an ``asyncio.Future``: simple, but
a future, its done-callback and the loop handle that runs it cost ~1.5 µs per message, a tenth of
the relay's whole budget. ``add_tracked`` instead calls a :class:`ConfirmListener` directly with
the caller's integer token (the gateway passes the event's ``seq``): no object per message.

Each entry keeps the frames it was written as, so that when RabbitMQ closes the channel because of
*one* publish (a deleted exchange, a message over its size limit) the connection can open a new
channel and write the others again instead of failing every publisher that shares it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from spectacles.broker.errors import PublishError, PublishNacked, PublishReturned

__all__ = ["FUTURE", "ConfirmListener", "ConfirmTracker", "Pending", "fail_entry"]

# The token of a future-settled entry (listener tokens are the caller's, never negative).
FUTURE = -1

# (target, exchange, routing_key, token, method, content). ``target`` is the caller's future when
# ``token`` is FUTURE, else the ConfirmListener to tell, or None once it has been told (a returned
# publish is still acked afterwards). Exchange and routing key go into the error of a refused
# publish; ``method`` and ``content`` are the frames as written (empty: cannot be written again).
Pending = tuple[Any, str, str, int, bytes, bytes]


class ConfirmListener(Protocol):
    """Told, synchronously from the connection's reader, how tracked publishes ended."""

    def publish_confirmed(self, token: int) -> None:
        """RabbitMQ confirmed the publish submitted with ``token``."""

    def publish_failed(self, token: int, error: BaseException) -> None:
        """The publish submitted with ``token`` was refused or its outcome is unknown."""


class ConfirmTracker:
    """Maps delivery tags to whoever waits for their confirm."""

    __slots__ = ("_aliases", "_lowest", "_pending", "next_tag", "return_base")

    def __init__(self, return_base: int = 0) -> None:
        self._pending: dict[int, Pending] = {}
        self._lowest = 1
        self.next_tag = 1
        # A mandatory publish carries a return id (RETURN_TAG_HEADER) to match a basic.return,
        # which has no delivery tag: ``return_base + tag``. Tags restart at 1 on a reopened
        # channel, so its base is past every id of the channels before it, and a publish written
        # again there keeps its old id through ``_aliases`` (old id -> new tag).
        self.return_base = return_base
        self._aliases: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(
        self,
        future: asyncio.Future[None],
        exchange: str,
        routing_key: str,
        method: bytes = b"",
        content: bytes = b"",
    ) -> int:
        """Register the next publish on this channel and return its delivery tag."""
        tag = self.next_tag
        self.next_tag = tag + 1
        self._pending[tag] = (future, exchange, routing_key, FUTURE, method, content)
        return tag

    def add_tracked(
        self,
        listener: ConfirmListener,
        token: int,
        exchange: str,
        routing_key: str,
        method: bytes = b"",
        content: bytes = b"",
    ) -> int:
        """Register the next publish, settled by calling ``listener`` with ``token``."""
        tag = self.next_tag
        self.next_tag = tag + 1
        self._pending[tag] = (listener, exchange, routing_key, token, method, content)
        return tag

    @property
    def next_return_id(self) -> int:
        """The return id (RETURN_TAG_HEADER) of the next publish on this channel."""
        return self.return_base + self.next_tag

    @property
    def ids_used(self) -> int:
        """The highest return id given out so far: the next channel's ``return_base``."""
        return self.return_base + self.next_tag - 1

    def add_entry(self, entry: Pending, return_id: int | None = None) -> int:
        """Register a publish taken from a closed channel (``take_all``), written again."""
        tag = self.next_tag
        self.next_tag = tag + 1
        self._pending[tag] = entry
        if return_id is not None:
            self._aliases[return_id] = tag
        return tag

    def take_all(self) -> list[tuple[int, Pending]]:
        """Remove every unsettled publish, oldest first, with its return id (channel closed)."""
        pending, self._pending = self._pending, {}
        self._lowest = self.next_tag
        ids = {tag: rid for rid, tag in self._aliases.items()}
        base = self.return_base
        return [
            (ids.get(tag, base + tag), entry)
            for tag, entry in pending.items()
            if entry[0] is not None and not (entry[3] == FUTURE and entry[0].done())
        ]

    def peek(self, return_id: int) -> Pending | None:
        """The pending publish with this return id, if any (nothing changes)."""
        return self._pending.get(self._aliases.get(return_id, return_id - self.return_base))

    def take_returned(self, return_id: int) -> Pending | None:
        """Settle a returned publish here and hand it over (to be published elsewhere).

        Its ack, which RabbitMQ sends right after the return, then only frees the slot.
        """
        tag = self._aliases.pop(return_id, return_id - self.return_base)
        entry = self._pending.get(tag)
        if entry is None or entry[0] is None:
            return None
        self._pending[tag] = (None, entry[1], entry[2], entry[3], b"", b"")
        return entry

    def ack(self, tag: int, multiple: bool) -> None:
        """Resolve one tag, or every tag up to ``tag`` when ``multiple``."""
        pop = self._pending.pop
        for each in range(self._lowest, tag + 1) if multiple else (tag,):
            entry = pop(each, None)
            if entry is not None:
                target, _, _, token, _, _ = entry
                if token != FUTURE:
                    if target is not None:
                        target.publish_confirmed(token)
                elif not target.done():
                    target.set_result(None)
        if not multiple:
            self._advance()
        elif tag >= self._lowest:
            self._lowest = tag + 1

    def nack(self, tag: int, multiple: bool) -> None:
        """Fail one tag, or every tag up to ``tag``, with :class:`PublishNacked`."""
        tags = range(self._lowest, tag + 1) if multiple else (tag,)
        for each in tags:
            entry = self._pending.pop(each, None)
            if entry is not None:
                self._fail(
                    entry,
                    PublishNacked,
                    "RabbitMQ nacked the publish: a queue it routes to is full with "
                    "x-overflow=reject-publish (or could not store it)",
                )
        if multiple and tag >= self._lowest:
            self._lowest = tag + 1
        else:
            self._advance()

    def returned(self, return_id: int, reply_code: int, reply_text: str) -> None:
        """Fail a mandatory publish RabbitMQ could not route.

        The entry stays pending: RabbitMQ still acks the tag right after the return, and that ack
        (which finds the publish already settled) is what frees the window slot.
        """
        tag = self._aliases.pop(return_id, return_id - self.return_base)
        entry = self._pending.get(tag)
        if entry is None:
            return
        target, exchange, routing_key, token, _, _ = entry
        if target is None or (token == FUTURE and target.done()):
            return
        error = PublishReturned(
            f"unroutable: no queue bound to exchange {exchange!r} for routing key "
            f"{routing_key!r} ({reply_code} {reply_text})",
            exchange=exchange,
            routing_key=routing_key,
            reply_code=reply_code,
            reply_text=reply_text,
        )
        if token == FUTURE:
            target.set_exception(error)
        else:
            self._pending[tag] = (None, exchange, routing_key, token, b"", b"")
            target.publish_failed(token, error)

    def fail_all(self, error_type: type[Exception], reason: str) -> None:
        """Fail every pending publish (connection or channel gone: outcome unknown)."""
        pending, self._pending = self._pending, {}
        self._lowest = self.next_tag
        for entry in pending.values():
            self._fail(entry, error_type, reason)

    def _advance(self) -> None:
        pending = self._pending
        lowest = self._lowest
        while lowest < self.next_tag and lowest not in pending:
            lowest += 1
        self._lowest = lowest

    @staticmethod
    def _fail(entry: Pending, error_type: type[Exception], reason: str) -> None:
        _, exchange, routing_key, _, _, _ = entry
        if issubclass(error_type, PublishError):
            error: Exception = error_type(
                f"{reason} (exchange {exchange!r}, routing key {routing_key!r})",
                exchange=exchange,
                routing_key=routing_key,
            )
        else:
            error = error_type(f"{reason}; the publish to exchange {exchange!r} was not confirmed")
        fail_entry(entry, error)


def fail_entry(entry: Pending, error: Exception) -> None:
    """Tell whoever waits for ``entry`` that it failed with ``error`` (once)."""
    target, _, _, token, _, _ = entry
    if target is None or (token == FUTURE and target.done()):
        return
    if token == FUTURE:
        target.set_exception(error)
    else:
        target.publish_failed(token, error)
