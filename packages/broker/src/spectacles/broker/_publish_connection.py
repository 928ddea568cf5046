"""One AMQP 0-9-1 connection with one confirm-mode channel, built only for publishing.

A general client (aio-pika over aiormq) spends most of a publish on objects: a Message, a
pamqp Properties, three frame objects, a future and a task-safe lock per call. Here a publish is
a cached method frame plus ``struct``-packed header and body frames appended to a write buffer
that is flushed once per event-loop iteration, and confirms are matched by delivery tag straight
from the received bytes. pamqp still builds and parses the rare control frames.
"""

from __future__ import annotations

import asyncio
import re
import struct
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp import header as pamqp_header
from pamqp.base import Frame

from spectacles.broker._confirm import FUTURE, ConfirmListener, ConfirmTracker, Pending, fail_entry
from spectacles.broker._frames import (
    FRAME_BODY,
    FRAME_END,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    HEARTBEAT_FRAME,
    PROTOCOL_HEADER,
    encode_publish_method,
)
from spectacles.broker._url import AmqpUrl
from spectacles.broker.errors import (
    BrokerError,
    BrokerUnavailable,
    ConnectionLost,
    PublishError,
    PublishTooLarge,
    TopologyMismatch,
)
from spectacles.observability import get_logger

if TYPE_CHECKING:
    from spectacles.broker._consume_channel import ConsumeChannel

__all__ = [
    "PUBLISH_CHANNEL",
    "RETURN_TAG_HEADER",
    "AmqpEndpoint",
    "ConnectionListener",
    "PublishConnection",
]

log = get_logger(__name__)

# A mandatory publish carries its delivery tag in this header: basic.return has no tag, and
# correlating by order is wrong when an earlier mandatory publish is still waiting for its ack.
RETURN_TAG_HEADER = "x-spectacles-publish-tag"

PUBLISH_CHANNEL = 1
CONTROL_CHANNEL = 2
# Channels above CONTROL_CHANNEL consume (see ``_consume_channel``), up to RabbitMQ's default
# channel_max (a server configured lower wins).
CHANNEL_MAX = 2047
_MAX_FRAME = 131072
# Writes are batched per event-loop iteration; a producer that never yields gets flushed here.
_FLUSH_AT = 256 * 1024

_frame_head = struct.Struct(">BHI")
_confirm = struct.Struct(">HHQB")  # class, method, delivery tag, bits
_BASIC_ACK = (60, 80)
_BASIC_NACK = (60, 120)
_body_size = struct.Struct(">Q")  # in a content header frame, after frame head, class and weight
_BODY_SIZE_AT = 7 + 4
_class_method = struct.Struct(">HH")
_BASIC_DELIVER = (60, 60)

# The refusals whose cause names the publishes it concerns; RabbitMQ's reply texts (3.x and 4.x).
_NO_EXCHANGE = re.compile(r"no exchange '(.*)' in vhost")
_TOO_LARGE = re.compile(r"message size (\d+) is larger than (?:configured )?max size (\d+)")
# Channel recoveries in a row without a single ack before the unsettled publishes are failed:
# a refusal that repeats (an exchange deleted again and again) must not loop forever.
MAX_RECOVERIES = 5

_CAPABILITIES = {
    "publisher_confirms": True,
    "basic.nack": True,
    "connection.blocked": True,
    "authentication_failure_close": True,
    "consumer_cancel_notify": True,
}


class ChannelClosed(BrokerError):
    """RabbitMQ closed a channel in answer to one of our methods (``reply_code`` says why)."""

    def __init__(self, message: str, *, reply_code: int) -> None:
        super().__init__(message)
        self.reply_code = reply_code


def AmqpEndpoint(url: str) -> AmqpUrl:
    """Where and as whom to connect: ``url`` parsed and checked by ``_url`` (cached).

    A function under the old class name, so callers of ``AmqpEndpoint(url)`` keep working.
    """
    return AmqpUrl.parse(url)


class ConnectionListener(Protocol):
    """What the publisher learns from its connection (all called synchronously)."""

    def connection_ready(self, connection: PublishConnection) -> None:
        """The publish channel is open in confirm mode."""

    def connection_unready(self, connection: PublishConnection, reason: str) -> None:
        """The publish channel closed; the connection is reopening it."""

    def connection_lost(self, connection: PublishConnection, reason: str) -> None:
        """The connection is gone for good; pending publishes have already failed."""

    def confirms_released(self, connection: PublishConnection) -> None:
        """Acks or nacks arrived: window slots may be free."""

    def connection_blocked(self, connection: PublishConnection) -> None:
        """RabbitMQ blocked publishing (a resource alarm) until ``connection_unblocked``."""

    def connection_unblocked(self, connection: PublishConnection) -> None:
        """The resource alarm cleared: publishes may go out again."""


class PublishConnection(asyncio.Protocol):
    """An AMQP connection whose channel 1 publishes in confirm mode."""

    def __init__(
        self,
        listener: ConnectionListener,
        *,
        heartbeat: int,
        exchanges: Mapping[str, tuple[str, bool]] | None = None,
        unrouted_queue: str | None = None,
        unrouted: Counter[str] | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        # Where a returned (unroutable) tracked publish is published instead, and the count of
        # those by routing key; None: a return fails the publish with PublishReturned.
        self._unrouted_queue = unrouted_queue
        self._unrouted_method = (
            encode_publish_method(PUBLISH_CHANNEL, "", unrouted_queue, False)
            if unrouted_queue
            else b""
        )
        self.unrouted: Counter[str] = unrouted if unrouted is not None else Counter()
        self._listener = listener
        # Exchanges the owner declared (name -> type, durable): declared again if found deleted.
        self._exchanges: Mapping[str, tuple[str, bool]] = {} if exchanges is None else exchanges
        self._recoveries = 0
        # Unsettled publishes of a closed channel, until written again (or failed on a loss).
        self._held: list[tuple[int, Pending]] = []
        self._requested_heartbeat = heartbeat
        self._transport: asyncio.Transport | None = None
        self._rbuf = bytearray()
        self._wbuf = bytearray()
        self._flush_pending = False
        self._waiters: dict[int, asyncio.Future[Frame]] = {}
        self._control_lock = asyncio.Lock()
        self._close_reason: str | None = None
        self._lost = False
        self._heartbeat_handle: asyncio.TimerHandle | None = None
        self._heartbeat_interval = 0.0
        self._received = True
        self._silent_ticks = 0
        self._methods: dict[tuple[str, str, bool], bytes] = {}
        self._returning: tuple[commands.Basic.Return, int] | None = None
        self._return_tag: int | None = None
        self._reopen_task: asyncio.Task[None] | None = None
        self.tracker = ConfirmTracker()
        self.ready = False
        self.paused = False
        self.blocked = False
        self.blocked_reason = ""
        self.frame_max = _MAX_FRAME
        self.max_body_frame = _MAX_FRAME - 8
        # Consuming channels by number, and those with acks to write before the next flush.
        self._channels: dict[int, ConsumeChannel] = {}
        self.channel_max = CHANNEL_MAX
        self._ack_writers: list[ConsumeChannel] = []

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        endpoint: AmqpUrl,
        listener: ConnectionListener,
        *,
        heartbeat: int,
        timeout: float,
        client_properties: Mapping[str, Any],
        exchanges: Mapping[str, tuple[str, bool]] | None = None,
        unrouted_queue: str | None = None,
        unrouted: Counter[str] | None = None,
    ) -> PublishConnection:
        """Connect, authenticate, open the confirm channel; ``BrokerUnavailable`` on failure.

        The URL's ``heartbeat``, ``connection_timeout`` and ``name`` win over ``heartbeat``,
        ``timeout`` and ``client_properties["connection_name"]``. ``exchanges`` (read when
        needed, so the owner may add to it later) are declared again when a publish finds one
        of them deleted.
        """
        loop = asyncio.get_running_loop()
        if endpoint.heartbeat is not None:
            heartbeat = endpoint.heartbeat
        timeout = endpoint.connection_timeout or timeout
        if endpoint.name is not None:
            client_properties = {**client_properties, "connection_name": endpoint.name}
        tls = endpoint.ssl_context()
        connection = cls(
            listener,
            heartbeat=heartbeat,
            exchanges=exchanges,
            unrouted_queue=unrouted_queue,
            unrouted=unrouted,
        )
        try:
            async with asyncio.timeout(timeout):
                # SNI and the certificate check use the host unless server_hostname is set.
                await loop.create_connection(
                    lambda: connection,
                    endpoint.host,
                    endpoint.port,
                    ssl=tls,
                    server_hostname=endpoint.server_hostname,
                )
                await connection._handshake(endpoint, client_properties)
                await connection._open_publish_channel()
        except (OSError, TimeoutError, BrokerError) as error:
            connection.abort()
            cause = (
                f"no answer within {timeout:g}s" if isinstance(error, TimeoutError) else str(error)
            )
            raise BrokerUnavailable(
                f"cannot connect to RabbitMQ at {endpoint.address}: {cause}",
                host=endpoint.address,
            ) from error
        except BaseException:  # cancelled mid-handshake: do not leak the socket
            connection.abort()
            raise
        return connection

    async def _handshake(self, endpoint: AmqpUrl, client_properties: Mapping[str, Any]) -> None:
        start = await self._expect(0, PROTOCOL_HEADER)
        if not isinstance(start, commands.Connection.Start):
            raise BrokerError(f"unexpected {start.name} instead of Connection.Start")
        mechanism, response = endpoint.sasl()
        mechanisms = start.mechanisms.split()
        if mechanism not in mechanisms:
            hint = (
                " (enable the rabbitmq_auth_mechanism_ssl plugin)"
                if endpoint.auth == "external"
                else ""
            )
            raise BrokerError(
                f"RabbitMQ does not offer {mechanism} authentication{hint}; it offers "
                f"{', '.join(mechanisms)}"
            )
        properties = dict(client_properties)
        properties["capabilities"] = _CAPABILITIES
        tune = await self._call(
            0,
            commands.Connection.StartOk(
                client_properties=properties, mechanism=mechanism, response=response
            ),
        )
        if not isinstance(tune, commands.Connection.Tune):
            raise BrokerError(f"unexpected {tune.name} instead of Connection.Tune")
        self.frame_max = min(tune.frame_max or _MAX_FRAME, _MAX_FRAME)
        self.channel_max = min(tune.channel_max or CHANNEL_MAX, CHANNEL_MAX)
        self.max_body_frame = self.frame_max - 8
        heartbeat = self._requested_heartbeat
        if tune.heartbeat and heartbeat:
            heartbeat = min(heartbeat, tune.heartbeat)
        self._send(
            pamqp_frame.marshal(
                commands.Connection.TuneOk(
                    channel_max=self.channel_max, frame_max=self.frame_max, heartbeat=heartbeat
                ),
                0,
            )
        )
        opened = await self._call(0, commands.Connection.Open(virtual_host=endpoint.virtual_host))
        if not isinstance(opened, commands.Connection.OpenOk):
            raise BrokerError(f"unexpected {opened.name} instead of Connection.OpenOk")
        if heartbeat:
            self._heartbeat_interval = heartbeat / 2
            self._heartbeat_handle = self._loop.call_later(
                self._heartbeat_interval, self._heartbeat_tick
            )

    async def _open_publish_channel(self, return_base: int = 0) -> None:
        opened = await self._call(PUBLISH_CHANNEL, commands.Channel.Open())
        if not isinstance(opened, commands.Channel.OpenOk):
            raise BrokerError(f"unexpected {opened.name} instead of Channel.OpenOk")
        selected = await self._call(PUBLISH_CHANNEL, commands.Confirm.Select())
        if not isinstance(selected, commands.Confirm.SelectOk):
            raise BrokerError(f"unexpected {selected.name} instead of Confirm.SelectOk")
        self.tracker = ConfirmTracker(return_base)
        self._methods.clear()
        self.ready = True

    async def _recover_publish_channel(
        self, code: int, text: str, reason: str, unsettled: list[tuple[int, Pending]], base: int
    ) -> None:
        """Reopen channel 1 after RabbitMQ closed it, and write again what it did not refuse.

        RabbitMQ closes the whole channel for one bad publish, but every other publish on it is
        innocent (often another shard's): those are written again on the new channel, ahead of
        anything new, with the same properties (a duplicate keeps its message_id). Only the
        publishes the refusal names fail: those to a deleted exchange that cannot be declared
        again, those over the broker's size limit. A refusal whose cause is not known fails all.
        """
        self._recoveries += 1
        missing = _NO_EXCHANGE.search(text) if code == 404 else None
        too_large = _TOO_LARGE.search(text) if code == 406 else None
        restored = False
        if missing is not None and self._recoveries <= MAX_RECOVERIES:
            restored = await self._restore_exchange(missing.group(1))
        resend: list[tuple[int, Pending]] = []
        for return_id, entry in unsettled:
            error = self._refusal_of(entry, reason, missing, too_large, restored)
            if error is None:
                resend.append((return_id, entry))
            else:
                fail_entry(entry, error)
        self._held = resend
        try:
            await self._open_publish_channel(base)
        except (BrokerError, OSError) as error:
            self.abort(f"could not reopen the publish channel: {error}")  # fails the held ones
            return
        # No await since the channel opened: nothing new was written before these.
        self._held = []
        tracker = self.tracker
        for return_id, entry in resend:
            method = entry[4]
            # A mandatory publish keeps the return id it carries in its header.
            tracker.add_entry(entry, return_id if method[-2] & 1 else None)
            self._write(method, entry[5])
        log.warning(
            "RabbitMQ closed the publish channel; reopened it",
            reason=reason,
            exchange_declared_again=missing.group(1) if restored and missing else None,
            written_again=len(resend),
            failed=len(unsettled) - len(resend),
        )
        self._listener.connection_ready(self)

    def _refusal_of(
        self,
        entry: Pending,
        reason: str,
        missing: re.Match[str] | None,
        too_large: re.Match[str] | None,
        restored: bool,
    ) -> Exception | None:
        """Why ``entry`` fails after the channel closed with ``reason``; None: write it again."""
        _, exchange, routing_key, _, method, content = entry
        where = f"(exchange {exchange!r}, routing key {routing_key!r})"
        if self._recoveries > MAX_RECOVERIES:
            return PublishError(
                f"{reason} {where}; {MAX_RECOVERIES} channel recoveries in a row without a "
                "confirm, giving up on it",
                exchange=exchange,
                routing_key=routing_key,
            )
        unknown = missing is None and too_large is None
        if not method or unknown:
            return PublishError(
                f"{reason} {where}; the publish was not confirmed",
                exchange=exchange,
                routing_key=routing_key,
            )
        if missing is not None and exchange == missing.group(1) and not restored:
            return PublishError(f"{reason} {where}", exchange=exchange, routing_key=routing_key)
        if too_large is not None:
            size = _body_size.unpack_from(content, _BODY_SIZE_AT)[0]
            limit = int(too_large.group(2))
            if size > limit:
                return PublishTooLarge(
                    f"message of {size} bytes is over RabbitMQ's max_message_size of {limit} "
                    f"bytes {where}",
                    exchange=exchange,
                    routing_key=routing_key,
                    size=size,
                    limit=limit,
                )
        return None

    async def _restore_exchange(self, name: str) -> bool:
        """Declare a deleted exchange again if its owner declared it; False if it cannot."""
        known = self._exchanges.get(name)
        if known is None:
            return False
        exchange_type, durable = known
        try:
            await self.declare_exchange(name, exchange_type, durable=durable)
        except BrokerError as error:
            log.error(
                "could not declare the deleted exchange again", exchange=name, error=str(error)
            )
            return False
        log.warning("exchange was deleted while in use; declared it again", exchange=name)
        return True

    # -- publishing (hot path) -----------------------------------------------------------------

    def publish(
        self, exchange: str, routing_key: str, mandatory: bool, content: bytes
    ) -> asyncio.Future[None]:
        """Queue one message (``content`` = header + body frames) and track its confirm."""
        key = (exchange, routing_key, mandatory)
        method = self._methods.get(key)
        if method is None:
            method = encode_publish_method(PUBLISH_CHANNEL, exchange, routing_key, mandatory)
            if len(self._methods) < 4096:
                self._methods[key] = method
        return self.publish_method(method, exchange, routing_key, content)

    def publish_method(
        self, method: bytes, exchange: str, routing_key: str, content: bytes
    ) -> asyncio.Future[None]:
        """``publish`` with the basic.publish frame already encoded (for ``PUBLISH_CHANNEL``)."""
        future: asyncio.Future[None] = self._loop.create_future()
        self.tracker.add(future, exchange, routing_key, method, content)
        self._write(method, content)
        return future

    def publish_method_tracked(
        self,
        method: bytes,
        exchange: str,
        routing_key: str,
        content: bytes,
        listener: ConfirmListener,
        token: int,
    ) -> None:
        """``publish_method`` whose outcome is told to ``listener`` (no future per message)."""
        self.tracker.add_tracked(listener, token, exchange, routing_key, method, content)
        self._write(method, content)

    def _write(self, method: bytes, content: bytes) -> None:
        wbuf = self._wbuf
        wbuf += method
        wbuf += content
        if len(wbuf) >= _FLUSH_AT:
            self._flush()
        elif not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        if self._ack_writers:
            writers, self._ack_writers = self._ack_writers, []
            for writer in writers:
                writer.flush_acks()
        if not self._wbuf or self._transport is None or self._lost:
            return
        data, self._wbuf = self._wbuf, bytearray()
        self._transport.write(data)

    def _send(self, data: bytes) -> None:
        self._wbuf += data
        self._flush()

    def write(self, data: bytes) -> None:
        """Queue ``data`` (whole frames) for this iteration's write."""
        self._write(data, b"")

    def flush_soon(self, channel: ConsumeChannel) -> None:
        """Let ``channel`` add its acks right before this iteration's write."""
        self._ack_writers.append(channel)
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    # -- consuming channels ----------------------------------------------------------------------

    @property
    def lost(self) -> bool:
        """True once the connection is gone (it is never reopened: open a new one)."""
        return self._lost

    async def open_channel(self, channel: ConsumeChannel) -> int:
        """Open a new channel whose frames go to ``channel``; returns its number."""
        number = next(
            (
                n
                for n in range(CONTROL_CHANNEL + 1, self.channel_max + 1)
                if n not in self._channels
            ),
            None,
        )
        if number is None:
            raise BrokerError(f"all {self.channel_max - CONTROL_CHANNEL} consuming channels in use")
        self._channels[number] = channel
        try:
            opened = await self._call(number, commands.Channel.Open())
            if not isinstance(opened, commands.Channel.OpenOk):
                raise BrokerError(f"unexpected {opened.name} instead of Channel.OpenOk")
        except BaseException:
            self._channels.pop(number, None)
            raise
        return number

    def forget_channel(self, number: int) -> None:
        """The channel closed: its number may be reused."""
        self._channels.pop(number, None)

    async def call(self, channel: int, method: Frame) -> Frame:
        """Send a synchronous method on ``channel`` and return RabbitMQ's answer."""
        return await self._call(channel, method)

    # -- control -------------------------------------------------------------------------------

    async def _call(self, channel: int, method: Frame) -> Frame:
        return await self._expect(channel, pamqp_frame.marshal(method, channel))

    async def _expect(self, channel: int, raw: bytes) -> Frame:
        """Send ``raw`` and wait for the next method RabbitMQ sends on ``channel``."""
        if self._lost:
            raise ConnectionLost(self._close_reason or "connection closed")
        waiter: asyncio.Future[Frame] = self._loop.create_future()
        self._waiters[channel] = waiter
        self._send(raw)
        return await waiter

    async def declare_exchange(self, name: str, exchange_type: str, *, durable: bool) -> None:
        """Declare an exchange on a short-lived channel, so a refusal cannot close channel 1."""
        async with self._control_lock:
            opened = await self._call(CONTROL_CHANNEL, commands.Channel.Open())
            if not isinstance(opened, commands.Channel.OpenOk):
                raise BrokerError(f"unexpected {opened.name} instead of Channel.OpenOk")
            try:
                await self._call(
                    CONTROL_CHANNEL,
                    commands.Exchange.Declare(
                        exchange=name, exchange_type=exchange_type, durable=durable
                    ),
                )
            except ChannelClosed as error:
                if error.reply_code == 406:  # PRECONDITION_FAILED: exists, declared otherwise
                    raise TopologyMismatch(
                        f"exchange {name!r} already exists with other settings than "
                        f"{exchange_type}, durable={durable}: {error}"
                    ) from None
                raise
            await self._call(
                CONTROL_CHANNEL, commands.Channel.Close(reply_code=200, class_id=0, method_id=0)
            )

    async def declare_queue(self, name: str, arguments: Mapping[str, Any]) -> None:
        """Declare a durable queue on the short-lived control channel."""
        async with self._control_lock:
            opened = await self._call(CONTROL_CHANNEL, commands.Channel.Open())
            if not isinstance(opened, commands.Channel.OpenOk):
                raise BrokerError(f"unexpected {opened.name} instead of Channel.OpenOk")
            try:
                await self._call(
                    CONTROL_CHANNEL,
                    commands.Queue.Declare(queue=name, durable=True, arguments=dict(arguments)),
                )
            except ChannelClosed as error:
                if error.reply_code == 406:
                    raise TopologyMismatch(
                        f"queue {name!r} already exists with other arguments than "
                        f"{dict(arguments)}: {error}",
                        queue=name,
                    ) from None
                raise
            await self._call(
                CONTROL_CHANNEL, commands.Channel.Close(reply_code=200, class_id=0, method_id=0)
            )

    async def close(self, timeout: float) -> None:
        """Close politely (Connection.Close / CloseOk), then drop the socket regardless."""
        if self._lost:
            return
        self.ready = False
        try:
            async with asyncio.timeout(timeout):
                await self._call(
                    0,
                    commands.Connection.Close(
                        reply_code=200, reply_text="bye", class_id=0, method_id=0
                    ),
                )
        except (TimeoutError, BrokerError):
            pass
        self.abort("publisher closed")

    def abort(self, reason: str | None = None) -> None:
        """Drop the connection now; ``reason`` is what pending publishes fail with."""
        if reason and self._close_reason is None:
            self._close_reason = reason
        if self._transport is not None and not self._lost:
            self._transport.abort()

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport; the handshake starts from ``open``."""
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check here.
        self._transport = cast(asyncio.Transport, transport)

    def pause_writing(self) -> None:
        """The socket buffer is full: the publisher holds new publishes back."""
        self.paused = True

    def resume_writing(self) -> None:
        """The socket drained: let publishes through again."""
        self.paused = False
        self._listener.confirms_released(self)

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail everything pending with ``ConnectionLost`` and tell the publisher."""
        if self._lost:
            return
        self._lost = True
        self.ready = False
        if self._heartbeat_handle is not None:
            self._heartbeat_handle.cancel()
        if self._reopen_task is not None:
            self._reopen_task.cancel()
        reason = self._close_reason or (
            f"connection to RabbitMQ lost: {exc}" if exc else "connection to RabbitMQ closed"
        )
        self._close_reason = reason
        self.tracker.fail_all(ConnectionLost, reason)
        held, self._held = self._held, []
        for _, entry in held:
            fail_entry(entry, ConnectionLost(f"{reason}; the publish was not confirmed"))
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            if not waiter.done():
                waiter.set_exception(ConnectionLost(reason))
        for consuming in list(self._channels.values()):
            consuming.on_closed(reason)
        self._listener.connection_lost(self, reason)

    def data_received(self, data: bytes) -> None:
        """Split frames; acks and nacks are decoded in place, the rest goes to pamqp."""
        self._received = True
        rbuf = self._rbuf
        if rbuf:
            rbuf += data
            buf: bytes | bytearray = rbuf
        else:
            buf = data
        size_total = len(buf)
        pos = 0
        released = False
        tracker = self.tracker
        channels = self._channels
        while size_total - pos >= 8 and not self._lost:
            frame_type, channel, size = _frame_head.unpack_from(buf, pos)
            end = pos + 7 + size
            if end >= size_total:
                break
            if buf[end] != FRAME_END:
                self._protocol_error("frame without end marker")
                return
            if channel > CONTROL_CHANNEL:
                consuming = channels.get(channel)
                if consuming is not None:
                    if frame_type == FRAME_BODY:
                        consuming.on_body(buf, pos + 7, end)
                    elif frame_type == FRAME_HEADER:
                        consuming.on_header(buf, pos + 7)
                    elif _class_method.unpack_from(buf, pos + 7) == _BASIC_DELIVER:
                        consuming.on_deliver(buf, pos + 11)
                    else:
                        self._on_method_frame(channel, bytes(buf[pos : end + 1]))
                    pos = end + 1
                    continue
            if frame_type == FRAME_METHOD:
                if size == 13 and channel == PUBLISH_CHANNEL:
                    class_id, method_id, tag, bits = _confirm.unpack_from(buf, pos + 7)
                    if (class_id, method_id) == _BASIC_ACK:
                        tracker.ack(tag, bool(bits & 1))
                        released = True
                        pos = end + 1
                        continue
                    if (class_id, method_id) == _BASIC_NACK:
                        tracker.nack(tag, bool(bits & 1))
                        released = True
                        pos = end + 1
                        continue
                self._on_method_frame(channel, bytes(buf[pos : end + 1]))
                tracker = self.tracker  # a reopened channel has a new tracker
            elif frame_type == FRAME_HEADER:
                self._on_content_header(bytes(buf[pos + 7 : end]))
            elif frame_type == FRAME_BODY:
                self._on_content_body(size)
            elif frame_type != FRAME_HEARTBEAT:
                self._protocol_error(f"unknown frame type {frame_type}")
                return
            pos = end + 1
        if rbuf:
            del rbuf[:pos]
        elif pos < size_total:
            rbuf += buf[pos:]
        if released:
            self._recoveries = 0
            self._listener.confirms_released(self)

    # -- incoming control frames ---------------------------------------------------------------

    def _on_method_frame(self, channel: int, raw: bytes) -> None:
        try:
            _, _, method = pamqp_frame.unmarshal(raw)
        except Exception as error:  # pamqp raises several types for malformed frames
            self._protocol_error(f"undecodable method frame: {error}")
            return
        assert isinstance(method, Frame)
        if isinstance(method, commands.Connection.Close):
            self._close_reason = (
                f"RabbitMQ closed the connection: {method.reply_code} {method.reply_text}"
            )
            self.ready = False  # publishes wait for the reconnection from here on
            self._send(pamqp_frame.marshal(commands.Connection.CloseOk(), 0))
            if self._transport is not None:
                self._transport.close()  # unlike abort(), sends the CloseOk first
            return
        if isinstance(method, commands.Connection.Blocked):
            # A resource alarm: RabbitMQ stops reading our socket until it clears, so publishes
            # back up into the window and time out with BrokerUnavailable if it lasts.
            # The publisher stops writing (it would only fill our socket buffer) and publishers
            # wait, without a timeout, until the alarm clears.
            self.blocked = True
            self.blocked_reason = method.reason or "resource alarm"
            log.warning("RabbitMQ blocked publishing (resource alarm)", reason=method.reason)
            self._listener.connection_blocked(self)
            return
        if isinstance(method, commands.Connection.Unblocked):
            self.blocked = False
            self.blocked_reason = ""
            log.info("RabbitMQ unblocked publishing")
            self._listener.connection_unblocked(self)
            return
        if isinstance(method, commands.Channel.Close):
            self._on_channel_close(channel, method)
            return
        if isinstance(method, commands.Basic.Return):
            self._returning = (method, -1)
            self._return_tag = None
            return
        if isinstance(method, commands.Basic.Cancel):
            consuming = self._channels.get(channel)
            if consuming is not None:
                consuming.on_server_cancel(method.consumer_tag or "")
            if not method.nowait:
                self._send(
                    pamqp_frame.marshal(
                        commands.Basic.CancelOk(consumer_tag=method.consumer_tag), channel
                    )
                )
            return
        if isinstance(method, commands.Channel.Flow):
            self._send(pamqp_frame.marshal(commands.Channel.FlowOk(active=method.active), channel))
            return
        waiter = self._waiters.pop(channel, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(method)

    def _on_channel_close(self, channel: int, method: commands.Channel.Close) -> None:
        reason = f"RabbitMQ closed channel {channel}: {method.reply_code} {method.reply_text}"
        self._send(pamqp_frame.marshal(commands.Channel.CloseOk(), channel))
        waiter = self._waiters.pop(channel, None)
        if waiter is not None and not waiter.done():
            waiter.set_exception(ChannelClosed(reason, reply_code=method.reply_code or 0))
        consuming = self._channels.pop(channel, None)
        if consuming is not None:
            consuming.on_closed(reason)
        if channel != PUBLISH_CHANNEL:
            return
        self.ready = False
        closed = self.tracker
        unsettled = closed.take_all()
        self._held = unsettled
        self._listener.connection_unready(self, reason)
        self._reopen_task = asyncio.ensure_future(
            self._recover_publish_channel(
                method.reply_code or 0,
                method.reply_text or "",
                reason,
                unsettled,
                closed.ids_used,
            )
        )

    def _on_content_header(self, payload: bytes) -> None:
        if self._returning is None:
            return
        content = pamqp_header.ContentHeader()
        content.unmarshal(payload)
        headers = content.properties.headers or {}
        tag = headers.get(RETURN_TAG_HEADER)
        self._return_tag = tag if isinstance(tag, int) else None
        self._returning = (self._returning[0], content.body_size)
        self._maybe_finish_return(0)

    def _on_content_body(self, size: int) -> None:
        if self._returning is not None:
            self._maybe_finish_return(size)

    def _maybe_finish_return(self, received: int) -> None:
        assert self._returning is not None
        method, remaining = self._returning
        remaining -= received
        if remaining > 0:
            self._returning = (method, remaining)
            return
        self._returning = None
        if self._return_tag is None:
            return
        if self._unrouted_queue is not None and self._reroute(self._return_tag):
            return
        self.tracker.returned(self._return_tag, method.reply_code or 0, method.reply_text)

    def _reroute(self, return_id: int) -> bool:
        """Publish a returned (unroutable) tracked publish to the unrouted queue instead.

        Its listener is then told the outcome of that publish: the caller's guarantee (confirmed
        means stored) holds, and the event waits there instead of being dropped.
        """
        tracker = self.tracker
        entry = tracker.peek(return_id)
        if (
            entry is None
            or entry[0] is None
            or entry[3] == FUTURE
            or not entry[5]
            or not self.ready
        ):
            return False  # a future-settled publish (or no channel) fails as returned
        tracker.take_returned(return_id)
        target, _, routing_key, token, _, content = entry
        method = self._unrouted_method
        tracker.add_entry((target, "", self._unrouted_queue or "", token, method, content))
        self._write(method, content)
        self.unrouted[routing_key] += 1
        return True

    def _protocol_error(self, what: str) -> None:
        self.abort(f"AMQP protocol error from RabbitMQ: {what}")

    def _heartbeat_tick(self) -> None:
        if self._lost:
            return
        if self._received:
            self._received = False
            self._silent_ticks = 0
        else:
            self._silent_ticks += 1
            if self._silent_ticks >= 4:  # two full heartbeat intervals without a byte
                self.abort("RabbitMQ missed two heartbeats; assuming the connection is dead")
                return
        self._send(HEARTBEAT_FRAME)
        self._heartbeat_handle = self._loop.call_later(
            self._heartbeat_interval, self._heartbeat_tick
        )
