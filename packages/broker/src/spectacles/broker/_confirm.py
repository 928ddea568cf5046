"""Publisher-confirm bookkeeping for one confirm-mode channel.

Delivery tags are consecutive integers from 1 per channel, and RabbitMQ acknowledges them in
order or in ``multiple`` ranges. So pending publishes live in a dict keyed by tag (insertion order
= tag order) with a ``_lowest`` cursor: a multiple ack pops ``_lowest..tag`` directly, without
scanning, and the in-flight count is just ``len(self._pending)``.
"""

from __future__ import annotations

import asyncio

from spectacles.broker.errors import PublishError, PublishNacked, PublishReturned

__all__ = ["ConfirmTracker", "Pending"]

# (future, exchange, routing_key): kept to put where a refused publish was going into its error.
Pending = tuple["asyncio.Future[None]", str, str]


class ConfirmTracker:
    """Maps delivery tags to the futures their publishers wait on."""

    __slots__ = ("_lowest", "_pending", "next_tag")

    def __init__(self) -> None:
        self._pending: dict[int, Pending] = {}
        self._lowest = 1
        self.next_tag = 1

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, future: asyncio.Future[None], exchange: str, routing_key: str) -> int:
        """Register the next publish on this channel and return its delivery tag."""
        tag = self.next_tag
        self.next_tag = tag + 1
        self._pending[tag] = (future, exchange, routing_key)
        return tag

    def ack(self, tag: int, multiple: bool) -> None:
        """Resolve one tag, or every tag up to ``tag`` when ``multiple``."""
        pending = self._pending
        if multiple:
            pop = pending.pop
            for each in range(self._lowest, tag + 1):
                entry = pop(each, None)
                if entry is not None:
                    future = entry[0]
                    if not future.done():
                        future.set_result(None)
            if tag >= self._lowest:
                self._lowest = tag + 1
            return
        entry = pending.pop(tag, None)
        if entry is not None:
            future = entry[0]
            if not future.done():
                future.set_result(None)
        self._advance()

    def nack(self, tag: int, multiple: bool) -> None:
        """Fail one tag, or every tag up to ``tag``, with :class:`PublishNacked`."""
        tags = range(self._lowest, tag + 1) if multiple else (tag,)
        for each in tags:
            entry = self._pending.pop(each, None)
            if entry is not None:
                self._fail(entry, PublishNacked, "RabbitMQ nacked the publish")
        if multiple and tag >= self._lowest:
            self._lowest = tag + 1
        else:
            self._advance()

    def returned(self, tag: int, reply_code: int, reply_text: str) -> None:
        """Fail a mandatory publish RabbitMQ could not route.

        The entry stays pending: RabbitMQ still acks the tag right after the return, and that ack
        (which finds the future already done) is what frees the window slot.
        """
        entry = self._pending.get(tag)
        if entry is None:
            return
        future, exchange, routing_key = entry
        if not future.done():
            future.set_exception(
                PublishReturned(
                    f"unroutable: no queue bound to exchange {exchange!r} for routing key "
                    f"{routing_key!r} ({reply_code} {reply_text})",
                    exchange=exchange,
                    routing_key=routing_key,
                    reply_code=reply_code,
                    reply_text=reply_text,
                )
            )

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
        future, exchange, routing_key = entry
        if future.done():
            return
        if issubclass(error_type, PublishError):
            error: Exception = error_type(
                f"{reason} (exchange {exchange!r}, routing key {routing_key!r})",
                exchange=exchange,
                routing_key=routing_key,
            )
        else:
            error = error_type(f"{reason}; the publish to exchange {exchange!r} was not confirmed")
        future.set_exception(error)
