"""The RabbitMQ `EventSink`: a shard's dispatches published with confirms, and its resume point.

Each relayed event is one persistent message on the group's events exchange, routing key = the
event name, with the wire contract's properties: `type`, `message_id` `{shard}:{session}:{seq}`
(replays reuse it), `timestamp`, headers `shard_id`, `seq` and `guild_id`. The constant parts are
encoded once per event name (`PreparedPublish`). Publishes go out with publisher confirms; the
`ResumeTracker` moves the resume point only over contiguous confirmed seqs, so a RESUME makes
Discord replay what RabbitMQ had not confirmed. Events nobody listens for count as safe once
everything before them is.

RabbitMQ refusing an event (a nack from a full `reject-publish` queue, a publish it cannot
take) fails the connection (`SinkRefused`; `SinkUnavailable` while RabbitMQ is away): the resume
point stays before the refused event. An event larger than `gateway.max_event_size` (or than
RabbitMQ's own limit) is never retried: a record of it goes to `{group}.oversize` and the resume
point moves past it once the record is confirmed. With an unrouted queue, events are published
mandatory and one no queue takes is kept in `{group}.unrouted` by the publisher.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol

import msgspec

from spectacles.broker.errors import BrokerError, BrokerUnavailable, PublishError, PublishTooLarge
from spectacles.broker.publisher import ConfirmListener, PreparedPublish
from spectacles.broker.topology import Topology
from spectacles.observability import get_logger

from .salvage import top_level_fields
from .session import ResumeTracker
from .sink import SinkRefused, SinkUnavailable

__all__ = ["EventPublisher", "Relay", "sink_error"]

# One event in 64 has its confirm latency measured (a callback per event would cost too much).
LATENCY_SAMPLE_MASK: Final = 63
# Events whose guild is `d.id` rather than `d.guild_id`.
_GUILD_IS_ID: Final = frozenset({"GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE"})
# A guild id header is a snowflake (uint64), nothing else a hostile payload could put there.
_MAX_SNOWFLAKE: Final = 2**64
# What msgspec raises on JSON it refuses (see shard.py).
_UNDECODABLE: Final = (msgspec.DecodeError, RecursionError)
_encode: Final = msgspec.json.Encoder().encode


class EventPublisher(Protocol):
    """What a relay needs from `spectacles.broker.Publisher`."""

    def prepare(
        self,
        routing_key: str,
        *,
        exchange: str | None = ...,
        headers: Mapping[str, Any] | None = ...,
        type: str | None = ...,
        mandatory: bool = ...,
    ) -> PreparedPublish:
        """Encode once what every publish of one event name from this shard shares."""

    def try_submit_tracked(
        self,
        prepared: PreparedPublish,
        body: bytes,
        listener: ConfirmListener,
        token: int,
        *,
        headers: Mapping[str, Any] | None = ...,
        message_id: str | None = ...,
        timestamp: float | None = ...,
    ) -> bool:
        """Write one message now, its confirm told to `listener`; False if it must wait."""

    async def submit_tracked(
        self,
        prepared: PreparedPublish,
        body: bytes,
        listener: ConfirmListener,
        token: int,
        *,
        headers: Mapping[str, Any] | None = ...,
        message_id: str | None = ...,
        timestamp: float | None = ...,
    ) -> None:
        """`try_submit_tracked` that waits for a window slot (`BrokerUnavailable` on timeout)."""

    @property
    def events_exchange(self) -> str:
        """The events exchange, named after the group (which also names `{group}.oversize`)."""

    @property
    def unrouted_queue(self) -> str | None:
        """Where events no queue is bound for go (then events are published mandatory)."""

    @property
    def is_connected(self) -> bool:
        """Whether publishes can go out right now."""

    async def wait_connected(self, timeout: float) -> None:
        """Wait until the publisher is connected; `BrokerUnavailable` on timeout."""


def sink_error(error: BaseException) -> BaseException:
    """A broker failure as the shard understands it (other errors unchanged)."""
    if isinstance(error, asyncio.CancelledError):
        return SinkUnavailable("publish cancelled")
    if isinstance(error, BrokerUnavailable):
        return SinkUnavailable(f"RabbitMQ did not confirm: {error}")
    if isinstance(error, PublishError):
        return SinkRefused(f"broker refused publish: {error}")
    return error


class _RelayTracker(ResumeTracker):
    """The connection's tracker, except that an event too large for RabbitMQ is not a failure.

    RabbitMQ's 406 for one oversized event must not end the connection (the replay would bring
    the same event back forever): the relay stores a record of it instead, under the same seq.
    """

    __slots__ = ("_on_too_large",)

    def __init__(
        self,
        confirmed: int,
        on_failure: Callable[[BaseException], None],
        published: Counter[str],
        latencies: list[float],
        on_too_large: Callable[[ResumeTracker, int, PublishTooLarge], None],
    ) -> None:
        super().__init__(confirmed, on_failure, published, latencies)
        self._on_too_large = on_too_large

    def publish_failed(self, token: int, error: BaseException) -> None:
        """Hand an oversized event to the relay; anything else ends the connection."""
        if isinstance(error, PublishTooLarge):
            self._on_too_large(self, token, error)
        else:
            super().publish_failed(token, error)


class Relay:
    """The `EventSink` of one shard that publishes its `events` to RabbitMQ (see the module)."""

    def __init__(
        self,
        publisher: EventPublisher,
        events: frozenset[str],
        *,
        shard_id: int,
        max_event_size: int,
    ) -> None:
        self.shard_id = shard_id
        self.events = events
        self._publisher = publisher
        self._try_submit = publisher.try_submit_tracked
        self._max_event_size = max_event_size
        # Mandatory: an event no queue takes comes back and is kept in `{group}.unrouted`.
        self._mandatory = publisher.unrouted_queue is not None
        self._oversize_queue = Topology(publisher.events_exchange).oversize_queue
        self._oversize_stream: PreparedPublish | None = None
        # Per event name, the encoded constant parts: exchange, routing key, type, shard_id.
        self._prepared: dict[str, PreparedPublish] = {}
        self._message_prefix = f"{shard_id}:None:"
        self._fail: Callable[[BaseException], None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._log = get_logger("spectacles.gateway.relay", shard_id=shard_id)
        # Confirmed relayed events by name, and sampled publish-to-confirm latencies (seconds):
        # read (and the latencies emptied) by the metrics flusher.
        self.published: Counter[str] = Counter()
        self.confirm_latencies: list[float] = []
        # Events stored as a record in `{group}.oversize` instead of being relayed, by name.
        self.oversize: Counter[str] = Counter()
        self._tracker = self._new_tracker(0)

    # ----------------------------------------------------------------- EventSink

    @property
    def resume_seq(self) -> int:
        """The highest seq with every event up to it confirmed (or not relayed)."""
        return self._tracker.confirmed

    @property
    def pending(self) -> int:
        """Events of the current connection not yet confirmed by RabbitMQ."""
        return self._tracker.pending

    def reset(self, seq: int) -> None:
        """Start over from `seq` (0: a new session)."""
        self._tracker = self._new_tracker(seq)

    def begin(self, fail: Callable[[BaseException], None]) -> None:
        """A new connection: a new tracker from the resume point, failures told to `fail`."""
        self._fail = fail
        self._tracker = self._new_tracker(self._tracker.confirmed)

    def session(self, session_id: str) -> None:
        """Name the session in the message ids that follow."""
        self._message_prefix = f"{self.shard_id}:{session_id}:"

    def dispatch(self, seq: int, name: str, raw: msgspec.Raw) -> Awaitable[None] | None:
        """Publish one event (the hot path); an awaitable when it must wait for RabbitMQ."""
        tracker = self._tracker
        if name not in self.events:
            tracker.skip(seq)
            return None
        stream = self._prepared.get(name)
        if stream is None:
            stream = self._prepared[name] = self._publisher.prepare(
                name, headers={"shard_id": self.shard_id}, type=name, mandatory=self._mandatory
            )
        guild_id = _guild_id(name, raw)
        headers: dict[str, Any] = (
            {"seq": seq} if guild_id is None else {"seq": seq, "guild_id": guild_id}
        )
        body = bytes(raw)
        message_id = f"{self._message_prefix}{seq}"
        tracker.track(seq, name)
        if not seq & LATENCY_SAMPLE_MASK:
            tracker.sample_latency(seq)
        if len(body) > self._max_event_size:
            return self._settle(
                tracker,
                seq,
                self._store_oversize(
                    tracker,
                    seq,
                    name,
                    len(body),
                    self._max_event_size,
                    guild_id,
                    message_id,
                    "gateway.max_event_size",
                ),
            )
        try:
            if self._try_submit(
                stream,
                body,
                tracker,
                seq,
                headers=headers,
                message_id=message_id,
                timestamp=time.time(),
            ):
                return None
        except BaseException as exc:
            tracker.abandon(seq)  # never written: the drain must not wait for it
            raise sink_error(exc) from exc
        # The publisher's window of unconfirmed events is full (or RabbitMQ is away): the shard
        # waits for this, without reading the socket (backpressure).
        return self._settle(
            tracker,
            seq,
            self._publisher.submit_tracked(
                stream,
                body,
                tracker,
                seq,
                headers=headers,
                message_id=message_id,
                timestamp=time.time(),
            ),
        )

    async def end(self, timeout: float) -> None:
        """Let RabbitMQ confirm what is in flight (bounded), so the resume point covers it."""
        await self._tracker.drain(timeout)

    async def wait_available(self, timeout: float) -> None:
        """Wait for the publisher's (re)connection; `SinkUnavailable` after `timeout`."""
        try:
            await self._publisher.wait_connected(timeout=timeout)
        except BrokerUnavailable as exc:
            raise SinkUnavailable(str(exc)) from None

    # ----------------------------------------------------------------- internals

    def _new_tracker(self, confirmed: int) -> ResumeTracker:
        return _RelayTracker(
            confirmed,
            self._on_failure,
            self.published,
            self.confirm_latencies,
            self._on_too_large,
        )

    def _on_failure(self, error: BaseException) -> None:
        if self._fail is not None:
            self._fail(sink_error(error))

    async def _settle(self, tracker: ResumeTracker, seq: int, publish: Awaitable[None]) -> None:
        """Await a publish that had to wait; one never written holds the resume point before it."""
        try:
            await publish
        except BaseException as exc:
            tracker.abandon(seq)
            error = sink_error(exc)
            if error is exc:
                raise
            raise error from exc

    def _on_too_large(self, tracker: ResumeTracker, seq: int, error: PublishTooLarge) -> None:
        """RabbitMQ refused the event as too large (406): store its record, never replay it."""
        if error.limit < self._max_event_size:
            self._max_event_size = error.limit  # the next ones are caught before publishing
        task = asyncio.get_running_loop().create_task(self._store_refused(tracker, seq, error))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _store_refused(
        self, tracker: ResumeTracker, seq: int, error: PublishTooLarge
    ) -> None:
        """The record of an event RabbitMQ refused, settled on the tracker that sent the event."""
        try:
            await self._store_oversize(
                tracker,
                seq,
                error.routing_key,
                error.size,
                error.limit,
                None,
                f"{self._message_prefix}{seq}",
                "RabbitMQ's max_message_size",
            )
        except BrokerError as exc:
            tracker.publish_failed(seq, exc)  # not stored: the replay brings the event back

    async def _store_oversize(
        self,
        tracker: ResumeTracker,
        seq: int,
        name: str,
        size: int,
        limit: int,
        guild_id: str | None,
        message_id: str,
        limited_by: str,
    ) -> None:
        """Publish a record of an event too large to relay, under the event's seq.

        The record (everything but the body) is confirmed like the event would have been, so
        the resume point moves past the event only once its record is safe in RabbitMQ.
        """
        self.oversize[name] += 1
        self._log.error(
            "event too large to relay; stored a record of it instead and moved past it",
            seq=seq,
            dispatch=name,
            size=size,
            limit=limit,
            limited_by=limited_by,
            stored_in=self._oversize_queue,
            fix="raise gateway.max_event_size (GATEWAY_MAX_EVENT_SIZE) together with RabbitMQ's "
            "max_message_size, if workers need events this large",
        )
        stream = self._oversize_stream
        if stream is None:
            stream = self._oversize_stream = self._publisher.prepare(
                self._oversize_queue, exchange="", headers={"shard_id": self.shard_id}
            )
        record = {
            "shard_id": self.shard_id,
            "seq": seq,
            "event": name,
            "size": size,
            "limit": limit,
            "limited_by": limited_by,
            "guild_id": guild_id,
            "message_id": message_id,
        }
        headers: dict[str, Any] = {"seq": seq, "event": name, "size": size, "limit": limit}
        if guild_id is not None:
            headers["guild_id"] = guild_id
        await self._publisher.submit_tracked(
            stream,
            _encode(record),
            tracker,
            seq,
            headers=headers,
            message_id=message_id,
            timestamp=time.time(),
        )


class _GuildRef(msgspec.Struct):
    guild_id: str | int | None = None


class _GuildId(msgspec.Struct):
    id: str | int | None = None


_decode_guild_ref: Final = msgspec.json.Decoder(_GuildRef).decode
_decode_guild_id: Final = msgspec.json.Decoder(_GuildId).decode
_decode_snowflake: Final = msgspec.json.Decoder(str | int | None).decode


def _guild_id(name: str, raw: msgspec.Raw) -> str | None:
    """The event's guild id as a string, decoding only that one top-level field.

    Only a snowflake (an integer in 0..2**64-1) becomes a header: anything else a hostile
    payload puts there (a megabyte string, a huge number) could break the AMQP frame.
    """
    try:
        if name in _GUILD_IS_ID:
            value = _decode_guild_id(raw).id
        else:
            value = _decode_guild_ref(raw).guild_id
    except _UNDECODABLE:
        value = _salvage_guild_id(name, bytes(raw))
    if isinstance(value, str):
        if not (0 < len(value) <= 20 and value.isascii() and value.isdigit()):
            return None
        return value if len(value) < 20 or int(value) < _MAX_SNOWFLAKE else None
    return None if value is None or not 0 <= value < _MAX_SNOWFLAKE else str(value)


def _salvage_guild_id(name: str, d: bytes) -> str | int | None:
    """The guild id of a `d` msgspec refuses as a whole (see `salvage`)."""
    fields = top_level_fields(d)
    raw = None if fields is None else fields.get(b"id" if name in _GUILD_IS_ID else b"guild_id")
    if raw is None:
        return None
    try:
        value: str | int | None = _decode_snowflake(raw)
    except _UNDECODABLE:
        return None
    return value
