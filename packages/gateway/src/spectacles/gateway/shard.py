"""One Discord gateway shard: its connection state machine and the relay hot path.

`start` spawns `_keep_alive`, the reconnect loop: one `except` per error type decides between
resume, re-identify, wait for RabbitMQ, or stop. `_connect` runs one connection: HELLO, then
`_heartbeat` and `_poll_events` alongside IDENTIFY (through the identify queue, which may
wait) or RESUME, until one of them ends it. All session state is `session_id`, the confirmed
`seq` and the resume URL.

RabbitMQ refusing an event (a nack from a full `reject-publish` queue, a publish it cannot take)
ends the connection like a transport failure: the resume point stays before the refused event
and the shard RESUMEs after the same exponential backoff, so a refusal that lasts cannot turn
into a RESUME storm. An event larger than `gateway.max_event_size` (or than RabbitMQ's own limit)
is never retried: a record of it goes to `{group}.oversize` and the resume point moves past it.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final, Protocol

import msgspec

from spectacles.broker import Backoff
from spectacles.broker.errors import BrokerError, BrokerUnavailable, PublishError, PublishTooLarge
from spectacles.broker.publisher import ConfirmListener, PreparedPublish
from spectacles.broker.topology import Topology
from spectacles.models import RESUMABLE_CLOSE_CODE, ClosePolicy, Intents
from spectacles.observability import get_logger

from .config import Compression, GatewaySettings, PresenceSettings
from .errors import IdentifyRefused, ServerClosed, TransportError
from .identify import IdentifyQueue
from .ratelimit import SendLimiter, heartbeat_reserve
from .salvage import SEQ, salvage_envelope, top_level_fields
from .session import ConfirmTracker, SessionState
from .transport import GatewayTransport, SizeLimits

__all__ = ["EventPublisher", "Shard", "ShardState"]

# Opcodes used on the hot path, as plain ints (IntEnum comparisons are slower).
_DISPATCH: Final = 0
_HEARTBEAT: Final = 1
_IDENTIFY: Final = 2
_RESUME: Final = 6
_RECONNECT: Final = 7
_INVALID_SESSION: Final = 9
_HELLO: Final = 10
_HEARTBEAT_ACK: Final = 11

HELLO_TIMEOUT: Final = 20.0  # Discord sends HELLO at once; a silent server is a dead one
DRAIN_TIMEOUT: Final = 10.0  # how long a closing connection waits for RabbitMQ confirms
BROKER_POLL_INTERVAL: Final = 1.0  # how often a shard waiting for RabbitMQ checks for shutdown
# A connection that stayed up this long resets the backoff: the last failure was not chronic.
STABLE_AFTER: Final = 30.0
# One event in 64 has its confirm latency measured (a callback per event would cost too much).
LATENCY_SAMPLE_MASK: Final = 63
# Distinct event names counted per shard besides the relayed ones (Discord has about a hundred);
# any others, or a name over 64 characters, count as OTHER_EVENTS.
MAX_EVENT_NAMES: Final = 512
OTHER_EVENTS: Final = "_other"
# Events whose guild is `d.id` rather than `d.guild_id`.
_GUILD_IS_ID: Final = frozenset({"GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE"})


class EventPublisher(Protocol):
    """What a shard needs from `spectacles.broker.Publisher`."""

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


class ShardState(enum.Enum):
    """Where a shard is in its life; exported as the `shard_state` metric."""

    IDLE = "idle"
    CONNECTING = "connecting"
    IDENTIFYING = "identifying"
    RESUMING = "resuming"
    READY = "ready"
    WAITING_BROKER = "waiting_broker"
    BACKOFF = "backoff"
    CLOSING = "closing"
    STOPPED = "stopped"


class _Envelope(msgspec.Struct):
    op: int
    d: msgspec.Raw = msgspec.Raw(b"null")
    s: SEQ | None = None  # bounded: it becomes an AMQP int64 header and the resume point
    t: str | None = None


class _Hello(msgspec.Struct):
    heartbeat_interval: int


class _ReadyInfo(msgspec.Struct):
    # Printable ASCII, bounded: it goes into every event's message_id (AMQP: <= 255 bytes).
    session_id: Annotated[str, msgspec.Meta(pattern="^[!-~]{1,128}$")]
    resume_gateway_url: str | None = None


class _GuildRef(msgspec.Struct):
    guild_id: str | int | None = None


class _GuildId(msgspec.Struct):
    id: str | int | None = None


_decode_envelope: Final = msgspec.json.Decoder(_Envelope).decode
_decode_hello: Final = msgspec.json.Decoder(_Hello).decode
_decode_ready: Final = msgspec.json.Decoder(_ReadyInfo).decode
_decode_guild_ref: Final = msgspec.json.Decoder(_GuildRef).decode
_decode_guild_id: Final = msgspec.json.Decoder(_GuildId).decode
_decode_snowflake: Final = msgspec.json.Decoder(str | int | None).decode
_encode: Final = msgspec.json.Encoder().encode
# What msgspec raises on JSON it refuses: malformed, lone surrogate escapes, wrong types, or
# nesting past Python's recursion limit (even inside a `Raw` field it only skips).
_UNDECODABLE: Final = (msgspec.DecodeError, RecursionError)
# A guild id header is a snowflake (uint64), nothing else a hostile payload could put there.
_MAX_SNOWFLAKE: Final = 2**64


class _RelayTracker(ConfirmTracker):
    """The connection's tracker, except that an event too large for RabbitMQ is not a failure.

    RabbitMQ's 406 for one oversized event must not end the connection (the replay would bring
    the same event back forever): the shard stores a record of it instead, under the same seq.
    """

    __slots__ = ("_on_too_large",)

    def __init__(
        self,
        confirmed: int,
        on_failure: Callable[[BaseException], None],
        published: Counter[str],
        latencies: list[float],
        on_too_large: Callable[[ConfirmTracker, int, PublishTooLarge], None],
    ) -> None:
        super().__init__(confirmed, on_failure, published, latencies)
        self._on_too_large = on_too_large

    def publish_failed(self, token: int, error: BaseException) -> None:
        """Hand an oversized event to the shard; anything else ends the connection."""
        if isinstance(error, PublishTooLarge):
            self._on_too_large(self, token, error)
        else:
            super().publish_failed(token, error)


class _Reconnect(Exception):
    """Internal: the server asked for a new connection (op 7, op 9) or the socket is a zombie."""

    def __init__(self, reason: str, *, resume: bool, delay: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.resume = resume
        self.delay = delay


class _Closing(Exception):
    """Internal: `close()` was called; leave the connection with a resumable close code."""


class Shard:
    """One gateway session `[shard_id, shard_count]`, relaying its dispatches to RabbitMQ."""

    def __init__(
        self,
        shard_id: int,
        shard_count: int,
        *,
        token: str,
        intents: Intents,
        gateway_url: str,
        publisher: EventPublisher,
        events: frozenset[str],
        identify_queue: IdentifyQueue,
        settings: GatewaySettings | None = None,
        presence: PresenceSettings | None = None,
        session: SessionState | None = None,
        compress: Compression | None = None,
    ) -> None:
        self.shard_id = shard_id
        self.shard_count = shard_count
        self._token = token
        self._intents = intents
        self._gateway_url = gateway_url
        self._publisher = publisher
        self._events = events
        self._identify_queue = identify_queue
        self._settings = settings or GatewaySettings()
        self._compress: Compression = compress or self._settings.compress
        self._presence = presence
        self._log = get_logger("spectacles.gateway.shard", shard_id=shard_id)
        self._max_event_size = self._settings.max_event_size
        self._oversize_queue = Topology(publisher.events_exchange).oversize_queue
        self._oversize_stream: PreparedPublish | None = None
        self._background: set[asyncio.Task[None]] = set()

        # Session: the RESUME point is the confirmed seq, never just the received one.
        self._session_id: str | None = None
        self._resume_url: str | None = None
        self._resume_seq = 0
        if session is not None and session.shard_count == shard_count:
            self._session_id = session.session_id
            self._resume_url = session.resume_gateway_url
            self._resume_seq = session.seq
        self._seq: int | None = None  # latest received, for heartbeats
        self._tracker = ConfirmTracker(self._resume_seq)

        self.state = ShardState.IDLE
        self.fatal: ClosePolicy | None = None
        self.fatal_error: BaseException | None = None
        self.heartbeat_latency: float | None = None
        self.identifies = 0
        self.last_identify_at: float | None = None  # monotonic time of the last IDENTIFY sent
        self.resumes = 0
        self.reconnects: Counter[str] = Counter()
        # Payloads msgspec refused, by what was done with them ("relayed", "skipped").
        self.malformed: Counter[str] = Counter()
        # Per-event counts the metrics flusher turns into prometheus increments.
        self.received: Counter[str] = Counter()
        self.published: Counter[str] = Counter()
        # Sampled publish-to-confirm latencies (seconds), drained by the metrics flusher.
        self.confirm_latencies: list[float] = []
        # Events stored as a record in `{group}.oversize` instead of being relayed, by name.
        self.oversize: Counter[str] = Counter()
        # Why the shard is not relaying right now, for /readyz (None when nothing is wrong).
        self.problem: str | None = None
        self.on_state_change: Callable[[Shard, ShardState], None] | None = None

        self._limiter = SendLimiter()
        self._transport: GatewayTransport | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._interrupt: asyncio.Future[None] | None = None
        self._ready = asyncio.Event()
        self._heartbeat_acked = True
        self._publishing = False  # the poll loop waits in Publisher.submit_tracked
        self._last_heartbeat = 0.0

    # ----------------------------------------------------------------- public surface

    @property
    def session(self) -> SessionState | None:
        """The resume point to persist: session id, last confirmed seq, resume URL."""
        if self._session_id is None or self._resume_url is None:
            return None
        return SessionState(
            shard_id=self.shard_id,
            shard_count=self.shard_count,
            session_id=self._session_id,
            seq=max(self._resume_seq, self._tracker.confirmed),
            resume_gateway_url=self._resume_url,
            saved_at=time.time(),
        )

    @property
    def is_ready(self) -> bool:
        """True while the session is READY (or RESUMED) and events flow."""
        return self.state is ShardState.READY

    @property
    def is_alive(self) -> bool:
        """False once the shard stopped for good (fatal close code or `close()`)."""
        return self._task is not None and not self._task.done()

    @property
    def pending_confirms(self) -> int:
        """Events of the current connection not yet confirmed by RabbitMQ."""
        return self._tracker.pending

    async def start(self) -> None:
        """Spawn the connection loop; returns at once (see `wait_ready`)."""
        if self._task is not None:
            raise RuntimeError(f"shard {self.shard_id} already started")
        self._task = asyncio.create_task(self._keep_alive(), name=f"shard-{self.shard_id}")

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the session is READY; raises TimeoutError."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def wait_stopped(self) -> None:
        """Wait until the shard stopped (after `close()` or a fatal close code)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def close(self) -> None:
        """Stop reading, wait for in-flight confirms, close with a resumable code."""
        self._closing = True
        self._interrupt_connection(_Closing())
        if self._task is not None:
            try:
                await self._task
            except asyncio.CancelledError:
                if not self._task.cancelled():
                    raise

    async def send_command(self, payload: bytes) -> None:
        """Send a worker's command (op 3/4/8/31) within this connection's rate limit."""
        while True:
            await self._ready.wait()
            transport = self._transport
            slot = await self._limiter.acquire()
            if transport is not None and transport is self._transport and self.is_ready:
                await transport.send(payload)
                return
            # The connection went away while we waited for the slot: nothing was sent, so the
            # slot goes back (after a reconnect the limiter was reset and this is a no-op).
            self._limiter.refund(slot)
            await asyncio.sleep(0)

    # ----------------------------------------------------------------- connection loop

    def _set_state(self, state: ShardState) -> None:
        if state is self.state:
            return
        self.state = state
        if state is ShardState.READY:
            self._ready.set()
        else:
            self._ready.clear()
        if self.on_state_change is not None:
            self.on_state_change(self, state)

    def _interrupt_connection(self, error: BaseException) -> None:
        interrupt = self._interrupt
        if interrupt is not None and not interrupt.done():
            interrupt.set_exception(error)

    def _discard_interrupt(self) -> None:
        interrupt, self._interrupt = self._interrupt, None
        if interrupt is not None and interrupt.done() and not interrupt.cancelled():
            interrupt.exception()  # retrieved: the loop checks `_closing` itself

    def _drop_session(self) -> None:
        self._session_id = None
        self._resume_url = None
        self._resume_seq = 0
        self._seq = None

    def _backoff_delay(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        settings = self._settings
        cap = max(settings.backoff_base, settings.backoff_max)
        return Backoff(settings.backoff_base, cap).delay(failures - 1)

    async def _keep_alive(self) -> None:
        failures = 0
        delay = 0.0
        try:
            while not self._closing:
                if delay > 0:
                    self._set_state(ShardState.BACKOFF)
                    await self._sleep_unless_closing(delay)
                    if self._closing:
                        break
                started = time.monotonic()
                reason = "unknown"
                try:
                    await self._connect()
                except _Closing:
                    break
                except _Reconnect as exc:
                    reason = exc.reason
                    if not exc.resume:
                        self._drop_session()
                    self._log.info("reconnecting", reason=exc.reason, resume=exc.resume)
                    failures = 0
                    delay = exc.delay
                except ServerClosed as exc:
                    policy = exc.policy
                    reason = f"close_{exc.code}"
                    if policy.fatal:
                        self._stop_fatally(policy)
                        return
                    if not policy.resume:
                        self._drop_session()
                    self._log.warning(
                        "gateway closed the connection",
                        code=exc.code,
                        name=policy.name,
                        cause=policy.cause,
                        resume=policy.resume and self._session_id is not None,
                    )
                    failures = 0 if time.monotonic() - started > STABLE_AFTER else failures + 1
                    delay = self._backoff_delay(failures)
                except (TransportError, msgspec.DecodeError) as exc:
                    reason = "transport"
                    failures = 0 if time.monotonic() - started > STABLE_AFTER else failures + 1
                    delay = self._backoff_delay(failures)
                    self._log.warning("connection lost", error=str(exc), retry_in=round(delay, 2))
                except BrokerUnavailable as exc:
                    reason = "broker"
                    self._log.warning(
                        "RabbitMQ did not confirm; holding the resume point and reconnecting",
                        error=type(exc).__name__,
                        seq=self._resume_seq,
                    )
                    await self._wait_for_broker()
                    delay = 0.0
                except PublishError as exc:
                    # RabbitMQ is there but refused an event: retrying at once would only be
                    # refused again (and RESUME in a loop), so back off like any other failure.
                    reason = "broker_refused"
                    failures = 0 if time.monotonic() - started > STABLE_AFTER else failures + 1
                    delay = self._backoff_delay(failures)
                    self.problem = f"broker refused publish: {exc}"
                    self._log.warning(
                        "RabbitMQ refused an event; holding the resume point, resuming after "
                        "a backoff",
                        error=str(exc),
                        seq=self._resume_seq,
                        failures=failures,
                        retry_in=round(delay, 2),
                    )
                    await self._wait_for_broker()
                except IdentifyRefused as exc:
                    self.fatal_error = exc
                    self._log.error("shard stopped", error=str(exc))
                    return
                self.reconnects[reason] += 1
        except Exception:
            self._log.exception("shard crashed; it stays stopped")
            raise
        finally:
            self._set_state(ShardState.STOPPED)

    async def _sleep_unless_closing(self, delay: float) -> None:
        self._interrupt = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._interrupt), delay)
        except (TimeoutError, _Closing, BrokerError):
            # A late failure of the previous connection's publishes (its seq is already held
            # back) only ends the wait early; it must not escape and stop the shard.
            pass
        finally:
            self._interrupt = None

    async def _wait_for_broker(self) -> None:
        self._set_state(ShardState.WAITING_BROKER)
        # The publisher reconnects on its own, with backoff; this only waits for it, in short
        # steps so that a shutdown is not held up.
        while not self._closing:
            try:
                await self._publisher.wait_connected(timeout=BROKER_POLL_INTERVAL)
            except BrokerUnavailable:
                continue
            return

    def _stop_fatally(self, policy: ClosePolicy) -> None:
        self.fatal = policy
        self._log.error(
            "shard stopped: Discord refused the session",
            code=policy.code,
            name=policy.name,
            cause=policy.cause,
            fix=policy.fix,
        )

    async def _connect(self) -> None:
        """One connection, from websocket open to the error that ends it (always raises)."""
        resuming = self._session_id is not None and self._resume_url is not None
        url = self._resume_url if resuming and self._resume_url else self._gateway_url
        self._set_state(ShardState.CONNECTING)
        self._interrupt = asyncio.get_running_loop().create_future()
        self._tracker = _RelayTracker(
            self._resume_seq,
            self._on_publish_failure,
            self.published,
            self.confirm_latencies,
            self._on_too_large,
        )
        self._seq = self._resume_seq if resuming else None
        self._heartbeat_acked = True
        self._publishing = False
        self._limiter.reset()
        try:
            transport = await self._open_transport(url, self._interrupt)
        except BaseException:
            self._discard_interrupt()
            raise
        self._transport = transport
        close_code = RESUMABLE_CLOSE_CODE
        session = asyncio.create_task(self._run_session(transport, resuming))
        try:
            await asyncio.wait([session, self._interrupt], return_when=asyncio.FIRST_COMPLETED)
            if self._interrupt.done():
                self._interrupt.result()  # raises _Closing, BrokerUnavailable, ...
            session.result()  # raises what ended the connection
            raise TransportError("connection ended without a reason")  # pragma: no cover
        except ServerClosed:
            close_code = 0  # the server already closed it
            raise
        finally:
            session.cancel()
            await asyncio.gather(session, return_exceptions=True)
            self._interrupt = None
            self._transport = None
            self._set_state(ShardState.CLOSING if self._closing else ShardState.CONNECTING)
            # Stop reading first, then let RabbitMQ confirm what is in flight, so the resume
            # point covers as much as possible and the replay is short.
            self._resume_seq = await self._tracker.drain(DRAIN_TIMEOUT)
            if close_code:
                await transport.close(close_code)
            else:
                transport.abort()

    async def _open_transport(self, url: str, interrupt: asyncio.Future[None]) -> GatewayTransport:
        """Open the websocket, unless `close()` interrupts first: no wait for the open timeout."""
        limits = SizeLimits(self._settings.max_message_size, self._settings.max_payload_size)
        opening = asyncio.create_task(
            GatewayTransport.connect(url, self._compress, limits, self._log)
        )
        try:
            await asyncio.wait((opening, interrupt), return_when=asyncio.FIRST_COMPLETED)
            if not opening.done():
                interrupt.result()  # raises _Closing (or a late failure of the last connection)
            return opening.result()
        finally:
            if not opening.done():
                opening.cancel()  # connect() closes its session, which drops the half-open socket
                (opened,) = await asyncio.gather(opening, return_exceptions=True)
                if isinstance(opened, GatewayTransport):  # it won the race with the cancel
                    opened.abort()

    async def _run_session(self, transport: GatewayTransport, resuming: bool) -> None:
        """HELLO, IDENTIFY or RESUME, then heartbeats and events until one of them fails."""
        interval = await self._receive_hello(transport)
        self._limiter.set_reserved(heartbeat_reserve(interval))
        # Reading starts before the IDENTIFY: waiting for its bucket (shards of this and other
        # gateways) can outlast heartbeat intervals, and unread ACKs would look like a zombie.
        # Before it is sent only ACKs, heartbeat requests and op 7/9 can arrive.
        opening = asyncio.create_task(
            self._send_resume(transport) if resuming else self._send_identify(transport)
        )
        tasks = [
            opening,
            asyncio.create_task(self._heartbeat(transport, interval)),
            asyncio.create_task(self._poll_events(transport)),
        ]
        try:
            pending = set(tasks)
            while True:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for finished in done:
                    finished.result()
                if done != {opening}:  # only the IDENTIFY/RESUME ends without ending the session
                    return
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _on_publish_failure(self, error: BaseException) -> None:
        if isinstance(error, asyncio.CancelledError):
            error = BrokerUnavailable("publish cancelled")
        self._interrupt_connection(error)

    def _on_too_large(self, tracker: ConfirmTracker, seq: int, error: PublishTooLarge) -> None:
        """RabbitMQ refused the event as too large (406): store its record, never replay it."""
        if error.limit < self._max_event_size:
            self._max_event_size = error.limit  # the next ones are caught before publishing
        task = asyncio.get_running_loop().create_task(self._store_refused(tracker, seq, error))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _store_refused(
        self, tracker: ConfirmTracker, seq: int, error: PublishTooLarge
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
                f"{self.shard_id}:{self._session_id}:{seq}",
                "RabbitMQ's max_message_size",
            )
        except BrokerError as exc:
            tracker.publish_failed(seq, exc)  # not stored: the replay brings the event back

    async def _store_oversize(
        self,
        tracker: ConfirmTracker,
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

    async def _receive_hello(self, transport: GatewayTransport) -> float:
        try:
            data = await asyncio.wait_for(transport.receive(), HELLO_TIMEOUT)
        except TimeoutError:
            # A transport failure like any other: reconnect with backoff, never stop the shard.
            raise TransportError(f"no HELLO within {HELLO_TIMEOUT:g}s") from None
        try:
            payload = _decode_envelope(data)
            if payload.op == _RECONNECT:  # may come even before HELLO
                raise _Reconnect("reconnect_requested", resume=True)
            if payload.op != _HELLO:
                raise TransportError(f"expected HELLO (op 10), got op {payload.op}")
            interval: int = _decode_hello(payload.d).heartbeat_interval
        except _UNDECODABLE as exc:
            raise TransportError(f"HELLO cannot be decoded: {exc}") from None
        return interval / 1000.0

    async def _send(self, transport: GatewayTransport, op: int, d: Any) -> None:
        await self._limiter.acquire()
        await transport.send(_encode({"op": op, "d": d}))

    async def _send_identify(self, transport: GatewayTransport) -> None:
        self._set_state(ShardState.IDENTIFYING)
        d: dict[str, Any] = {
            "token": self._token,
            "intents": int(self._intents),
            "properties": {"os": "linux", "browser": "spectacles", "device": "spectacles"},
            "shard": [self.shard_id, self.shard_count],
            "large_threshold": self._settings.large_threshold,
        }
        if self._presence is not None:
            d["presence"] = self._presence.to_payload()
        async with self._identify_queue.slot(self.shard_id):
            await self._send(transport, _IDENTIFY, d)
            self.last_identify_at = time.monotonic()
        self.identifies += 1
        self._log.info("identified", shard=[self.shard_id, self.shard_count])

    async def _send_resume(self, transport: GatewayTransport) -> None:
        self._set_state(ShardState.RESUMING)
        d = {"token": self._token, "session_id": self._session_id, "seq": self._resume_seq}
        await self._send(transport, _RESUME, d)
        self.resumes += 1
        self._log.info("resuming", seq=self._resume_seq)

    async def _heartbeat(self, transport: GatewayTransport, interval: float) -> None:
        # Jitter only the first beat, so shards that connected together spread out.
        await asyncio.sleep(interval * random.random())
        while True:
            if not self._heartbeat_acked and not self._publishing:
                raise _Reconnect("zombie", resume=True)
            # While the poll loop waits for RabbitMQ (backpressure) it cannot read the ACK:
            # that is not a zombie connection, so keep beating and judge once reading resumes.
            self._heartbeat_acked = False
            await self._beat(transport)
            await asyncio.sleep(interval)

    async def _beat(self, transport: GatewayTransport) -> None:
        if not self._limiter.try_acquire_priority():
            self._log.warning("heartbeat over the send limit; sending it anyway")
        self._last_heartbeat = time.monotonic()
        await transport.send(_encode({"op": _HEARTBEAT, "d": self._seq}))

    async def _poll_events(self, transport: GatewayTransport) -> None:
        """Read payloads and relay dispatches (the hot path)."""
        receive = transport.receive
        decode = _decode_envelope
        events = self._events
        received = self.received
        publisher = self._publisher
        try_submit = publisher.try_submit_tracked
        # Mandatory: an event no queue takes comes back and is kept in `{group}.unrouted`.
        mandatory = publisher.unrouted_queue is not None
        shard_id = self.shard_id
        # Per event name, the encoded constant parts: exchange, routing key, type, shard_id.
        prepared: dict[str, PreparedPublish] = {}
        wall_clock = time.time
        while True:
            data = await receive()
            try:
                payload = decode(data)
            except _UNDECODABLE as exc:
                salvaged = self._salvage(data, exc)
                if salvaged is None:
                    continue
                payload = salvaged
            op = payload.op
            if op == _DISPATCH:
                seq = payload.s
                name = payload.t
                if seq is None or name is None:  # pragma: no cover - malformed dispatch
                    continue
                self._seq = seq
                if (
                    name in received
                    or name in events
                    or (len(received) < MAX_EVENT_NAMES and len(name) <= 64)
                ):
                    received[name] += 1
                else:  # names without end (hostile server) must not grow the metric's labels
                    received[OTHER_EVENTS] += 1
                if name == "READY" or name == "RESUMED":
                    self._on_session_event(name, payload.d)
                tracker = self._tracker
                if name in events:
                    raw = payload.d
                    stream = prepared.get(name)
                    if stream is None:
                        stream = prepared[name] = publisher.prepare(
                            name, headers={"shard_id": shard_id}, type=name, mandatory=mandatory
                        )
                    guild_id = _guild_id(name, raw)
                    headers: dict[str, Any] = (
                        {"seq": seq} if guild_id is None else {"seq": seq, "guild_id": guild_id}
                    )
                    body = bytes(raw)
                    message_id = f"{shard_id}:{self._session_id}:{seq}"
                    tracker.track(seq, name)
                    if not seq & LATENCY_SAMPLE_MASK:
                        tracker.sample_latency(seq)
                    try:
                        if len(body) > self._max_event_size:
                            self._publishing = True
                            await self._store_oversize(
                                tracker,
                                seq,
                                name,
                                len(body),
                                self._max_event_size,
                                guild_id,
                                message_id,
                                "gateway.max_event_size",
                            )
                            self._publishing = False
                        elif not try_submit(
                            stream,
                            body,
                            tracker,
                            seq,
                            headers=headers,
                            message_id=message_id,
                            timestamp=wall_clock(),
                        ):
                            # The publisher's window of unconfirmed events is full (or RabbitMQ
                            # is away): wait here, without reading the socket (backpressure).
                            self._publishing = True
                            await publisher.submit_tracked(
                                stream,
                                body,
                                tracker,
                                seq,
                                headers=headers,
                                message_id=message_id,
                                timestamp=wall_clock(),
                            )
                            self._publishing = False
                    except BaseException:
                        tracker.abandon(seq)  # never written: the drain must not wait for it
                        raise
                else:
                    tracker.skip(seq)
            elif op == _HEARTBEAT_ACK:
                self._heartbeat_acked = True
                self.heartbeat_latency = time.monotonic() - self._last_heartbeat
            elif op == _HEARTBEAT:
                await self._beat(transport)
            elif op == _RECONNECT:
                raise _Reconnect("reconnect_requested", resume=True)
            elif op == _INVALID_SESSION:
                if bytes(payload.d).strip() == b"true":
                    raise _Reconnect("invalid_session_resumable", resume=True)
                low, high = self._settings.invalid_session_delay
                raise _Reconnect("invalid_session", resume=False, delay=random.uniform(low, high))

    def _salvage(self, data: bytes, error: BaseException) -> _Envelope | None:
        """The envelope of a payload msgspec refused, or None to skip it (never a reconnect).

        Reconnecting would not help: Discord replays the same payload after the RESUME, so the
        shard would loop on it. A payload whose `op`, `s` and `t` are readable is handled as
        usual with `d` as received (a dispatch is relayed; its consumers dead-letter what they
        cannot read). One that is not even that is skipped without touching the resume point:
        its seq is unknown, and the next confirmed event moves past it.
        """
        salvaged = salvage_envelope(data)
        if salvaged is None:
            self.malformed["skipped"] += 1
            self._log.warning(
                "payload skipped: not a readable gateway payload",
                error=str(error),
                size=len(data),
                resume_seq=self._resume_seq,
            )
            return None
        self.malformed["relayed"] += 1
        self._log.warning(
            "payload 'd' cannot be decoded; handled as received",
            error=str(error),
            op=salvaged.op,
            seq=salvaged.s,
            event_name=salvaged.t,
            size=len(data),
        )
        return _Envelope(salvaged.op, msgspec.Raw(salvaged.d), salvaged.s, salvaged.t)

    def _on_session_event(self, name: str, raw: msgspec.Raw) -> None:
        if name == "READY":
            try:
                info = _decode_ready(raw)
            except _UNDECODABLE as exc:
                # No session to resume or relay under: a new connection (and IDENTIFY) it is.
                raise TransportError(f"READY cannot be decoded: {exc}") from None
            self._session_id = info.session_id
            self._resume_url = info.resume_gateway_url or self._gateway_url
            self._identify_queue.answered(self.shard_id)  # its bucket may IDENTIFY again
            self._log.info("ready", session_id=info.session_id)
        else:
            self._log.info("resumed", seq=self._resume_seq)
        self.problem = None
        self._set_state(ShardState.READY)


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
