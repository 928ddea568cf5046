"""A consuming channel on the lean connection: deliveries parsed in place, acks batched per tick.

The connection hands this channel the raw frames addressed to it. ``basic.deliver``, the content
header and the body frames are read with ``struct`` from the received bytes (no pamqp object per
delivery); the rare synchronous methods (qos, consume, cancel, close) go through pamqp. Acks are
queued and written as one ``multiple`` ack (see ``_acks``) just before the connection flushes, so
every handler finishing in one event-loop iteration shares one frame.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from pamqp import commands
from pamqp.base import Frame

from spectacles.broker._acks import AckWindow, encode_ack, encode_nack
from spectacles.broker._properties import BasicProperties, decode_properties
from spectacles.broker.errors import BrokerError

if TYPE_CHECKING:
    from spectacles.broker._publish_connection import PublishConnection

__all__ = ["ConsumeChannel", "DeliveryCallback"]

#: Called once per complete delivery: (channel, tag, redelivered, exchange, routing key,
#: properties, body).
DeliveryCallback = Callable[["ConsumeChannel", int, bool, str, str, BasicProperties, bytes], None]

_tag_bits = struct.Struct(">QB")
_content = struct.Struct(">QH")  # body size, property flags (after class and weight)
_u32 = struct.Struct(">I")


class ConsumeChannel:
    """One channel with one consumer; closed for good once ``done`` resolves (open a new one)."""

    def __init__(self, connection: PublishConnection, on_delivery: DeliveryCallback) -> None:
        self.connection = connection
        self.number = 0
        self.consumer_tag = ""
        self._on_delivery = on_delivery
        self._acks = AckWindow()
        self._ack_queued = False
        self.closed = False
        #: Why the channel stopped delivering: server cancel, channel or connection closed.
        self.done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        # the delivery being assembled: tag, redelivered, exchange, routing key, properties
        self._tag = 0
        self._redelivered = False
        self._exchange = ""
        self._routing_key = ""
        self._properties: BasicProperties | None = None
        self._remaining = 0
        self._parts: list[bytes] = []

    # -- opening and closing (cold) ------------------------------------------------------------

    @classmethod
    async def open(
        cls, connection: PublishConnection, on_delivery: DeliveryCallback, *, prefetch: int
    ) -> ConsumeChannel:
        """Open a channel with ``basic.qos(prefetch)``."""
        channel = cls(connection, on_delivery)
        channel.number = await connection.open_channel(channel)
        try:
            await channel._call(commands.Basic.Qos(prefetch_count=prefetch), commands.Basic.QosOk)
        except BaseException:
            channel.abandon("qos failed")
            raise
        return channel

    async def _call(self, method: Frame, expected: type[Frame]) -> Frame:
        answer = await self.connection.call(self.number, method)
        if not isinstance(answer, expected):
            raise BrokerError(f"unexpected {answer.name} instead of {expected.__name__}")
        return answer

    async def consume(self, queue: str) -> str:
        """Start consuming ``queue`` (manual acks); returns the consumer tag."""
        ok = await self._call(commands.Basic.Consume(queue=queue), commands.Basic.ConsumeOk)
        assert isinstance(ok, commands.Basic.ConsumeOk)
        self.consumer_tag = ok.consumer_tag or ""
        return self.consumer_tag

    async def cancel(self) -> None:
        """Stop deliveries (those already sent still arrive and are handled)."""
        if not self.closed and self.consumer_tag:
            await self._call(
                commands.Basic.Cancel(consumer_tag=self.consumer_tag), commands.Basic.CancelOk
            )

    async def close(self) -> None:
        """Write the queued acks, then close the channel (unacked deliveries are requeued)."""
        if self.closed:
            return
        self.flush_acks()
        try:
            await self._call(
                commands.Channel.Close(reply_code=200, class_id=0, method_id=0),
                commands.Channel.CloseOk,
            )
        finally:
            self.abandon("closed by the consumer")

    def abandon(self, reason: str) -> None:
        """Forget the channel (closed, or its connection lost): acks are no longer possible."""
        if not self.closed:
            self.closed = True
            self.connection.forget_channel(self.number)
        if not self.done.done():
            self.done.set_result(reason)

    # -- acks (hot) -------------------------------------------------------------------------------

    def ack(self, tag: int) -> bool:
        """Ack ``tag`` with the next write; False if the channel is gone (RabbitMQ redelivers)."""
        if self.closed:
            return False
        if self._acks.add(tag) and not self._ack_queued:
            self._ack_queued = True
            self.connection.flush_soon(self)
        return True

    def nack(self, tag: int, *, requeue: bool) -> bool:
        """Nack ``tag`` alone, now (before any later ``multiple`` ack can reach past it)."""
        if self.closed:
            return False
        self.connection.write(encode_nack(self.number, tag, requeue))
        self._acks.settled(tag)
        return True

    def flush_acks(self) -> None:
        """Called by the connection right before it writes: this tick's acks, coalesced."""
        self._ack_queued = False
        if self.closed:
            return
        number = self.number
        for tag, multiple in self._acks.take():
            self.connection.write(encode_ack(number, tag, multiple))

    # -- frames from the connection (hot) -------------------------------------------------------

    def on_deliver(self, buf: bytes | bytearray, pos: int) -> None:
        """``basic.deliver``'s arguments at ``pos`` (after class and method ids)."""
        pos += 1 + buf[pos]  # consumer tag: one consumer per channel
        self._tag, bits = _tag_bits.unpack_from(buf, pos)
        self._redelivered = bool(bits & 1)
        pos += 9
        end = pos + 1 + buf[pos]
        self._exchange = buf[pos + 1 : end].decode()
        pos = end
        end = pos + 1 + buf[pos]
        self._routing_key = buf[pos + 1 : end].decode()

    def on_header(self, buf: bytes | bytearray, pos: int) -> None:
        """The content header's payload at ``pos`` (class, weight, size, flags, properties)."""
        size, flags = _content.unpack_from(buf, pos + 4)
        self._properties = decode_properties(buf, pos + 14, flags)
        self._remaining = size
        if not size:
            self._deliver(b"")

    def on_body(self, buf: bytes | bytearray, start: int, end: int) -> None:
        """One body frame's payload ``buf[start:end]``."""
        remaining = self._remaining - (end - start)
        if not self._parts and remaining == 0:
            self._remaining = 0
            self._deliver(bytes(buf[start:end]))
            return
        self._parts.append(bytes(buf[start:end]))
        self._remaining = remaining
        if remaining <= 0:
            parts, self._parts = self._parts, []
            self._deliver(b"".join(parts))

    def _deliver(self, body: bytes) -> None:
        properties = self._properties
        assert properties is not None
        self._properties = None
        self._on_delivery(
            self, self._tag, self._redelivered, self._exchange, self._routing_key, properties, body
        )

    def on_server_cancel(self, consumer_tag: str) -> None:
        """RabbitMQ cancelled our consumer (its queue was deleted, a quorum leader moved)."""
        if consumer_tag == self.consumer_tag and not self.done.done():
            self.done.set_result(f"consumer cancelled by RabbitMQ ({consumer_tag})")

    def on_closed(self, reason: str) -> None:
        """RabbitMQ closed the channel, or the connection is gone."""
        self.abandon(reason)
