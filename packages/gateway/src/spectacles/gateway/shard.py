"""One Discord gateway shard: the Discord protocol, handing each dispatch to an `EventSink`.

`start` spawns `_keep_alive`, the reconnect loop: one `except` per error type decides between
resume, re-identify, wait for the sink, or stop. `_connect` runs one connection: HELLO, then
`_heartbeat` and `_poll_events` alongside IDENTIFY (through the identify queue, which may
wait) or RESUME, until one of them ends it. The session is its id and resume URL; the resume
point (the seq sent in RESUME) is the sink's `resume_seq`, which the sink advances only past
dispatches it made safe (see `sink.py`; `relay.Relay` is the RabbitMQ sink).

The sink failing (`SinkUnavailable`: RabbitMQ away; `SinkRefused`: it refused an event) ends the
connection like a transport failure: the resume point stays where the sink left it and the
shard RESUMEs once the sink is back, after the same exponential backoff for a refusal, so a
refusal that lasts cannot turn into a RESUME storm.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any, Final

import msgspec

from spectacles.broker import Backoff
from spectacles.models import RESUMABLE_CLOSE_CODE, ClosePolicy, GatewayPayload, Intents
from spectacles.observability import get_logger

from .config import Compression, GatewaySettings, PresenceSettings
from .errors import IdentifyRefused, ServerClosed, TransportError
from .identify import IdentifyQueue
from .ratelimit import SendLimiter, heartbeat_reserve
from .relay import EventPublisher, Relay
from .salvage import salvage_envelope
from .session import SessionState
from .sink import EventSink, SinkError, SinkRefused, SinkUnavailable
from .transport import GatewayTransport, SizeLimits

__all__ = ["Shard", "ShardState"]

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
DRAIN_TIMEOUT: Final = 10.0  # how long a closing connection waits for the sink (confirms)
BROKER_POLL_INTERVAL: Final = 1.0  # how often a shard waiting for its sink checks for shutdown
# A connection that stayed up this long resets the backoff: the last failure was not chronic.
STABLE_AFTER: Final = 30.0
# Distinct event names counted per shard besides the relayed ones (Discord has about a hundred);
# any others, or a name over 64 characters, count as OTHER_EVENTS.
MAX_EVENT_NAMES: Final = 512
OTHER_EVENTS: Final = "_other"


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


class _Hello(msgspec.Struct):
    heartbeat_interval: int


class _ReadyInfo(msgspec.Struct):
    # Printable ASCII, bounded: it goes into every event's message_id (AMQP: <= 255 bytes).
    session_id: Annotated[str, msgspec.Meta(pattern="^[!-~]{1,128}$")]
    resume_gateway_url: str | None = None


_decode_envelope: Final = msgspec.json.Decoder(GatewayPayload).decode
_decode_hello: Final = msgspec.json.Decoder(_Hello).decode
_decode_ready: Final = msgspec.json.Decoder(_ReadyInfo).decode
_encode: Final = msgspec.json.Encoder().encode
# What msgspec raises on JSON it refuses: malformed, lone surrogate escapes, wrong types, or
# nesting past Python's recursion limit (even inside a `Raw` field it only skips).
_UNDECODABLE: Final = (msgspec.DecodeError, RecursionError)


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
    """One gateway session `[shard_id, shard_count]`, handing its dispatches to a sink.

    The sink is `sink`, or else a `Relay` to RabbitMQ through `publisher` for `events`.
    """

    def __init__(
        self,
        shard_id: int,
        shard_count: int,
        *,
        token: str,
        intents: Intents,
        gateway_url: str,
        identify_queue: IdentifyQueue,
        sink: EventSink | None = None,
        publisher: EventPublisher | None = None,
        events: frozenset[str] = frozenset(),
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
        self._identify_queue = identify_queue
        self._settings = settings or GatewaySettings()
        self._compress: Compression = compress or self._settings.compress
        self._presence = presence
        self._log = get_logger("spectacles.gateway.shard", shard_id=shard_id)
        if sink is None:
            if publisher is None:
                raise TypeError("Shard needs a sink, or a publisher to relay to")
            sink = Relay(
                publisher,
                events,
                shard_id=shard_id,
                max_event_size=self._settings.max_event_size,
            )
        self.sink: EventSink = sink
        self._events = events  # names always counted in `received` (see MAX_EVENT_NAMES)

        # Session: id and resume URL here; the resume point is the sink's `resume_seq`.
        self._session_id: str | None = None
        self._resume_url: str | None = None
        if session is not None and session.shard_count == shard_count:
            self._session_id = session.session_id
            self._resume_url = session.resume_gateway_url
            sink.reset(session.seq)
        # The last seq received, only for heartbeats (Discord's protocol); never a resume point.
        self._last_seq: int | None = None

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
        # Why the shard is not relaying right now, for /readyz (None when nothing is wrong).
        self.problem: str | None = None
        self.on_state_change: Callable[[Shard, ShardState], None] | None = None

        self._limiter = SendLimiter()
        self._transport: GatewayTransport | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._drain_timeout = DRAIN_TIMEOUT
        self._session_task: asyncio.Task[None] | None = None
        self._interrupt: asyncio.Future[None] | None = None
        self._ready = asyncio.Event()
        self._heartbeat_acked = True
        self._publishing = False  # the poll loop waits for the sink (backpressure)
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
            seq=self.sink.resume_seq,
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
        """Dispatches of the current connection the sink has not made safe yet."""
        return self.sink.pending

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

    def abandon(self) -> None:
        """Stop handing dispatches to the sink now, then close resumably without draining.

        For a shard whose lease was lost: another process may own it in a moment, so not one
        more event may be relayed from here. The session task is cancelled synchronously (no
        dispatch runs after this call returns); the websocket closes with a resumable code, so
        the new owner RESUMEs from the saved resume point and Discord replays the rest.
        """
        self._closing = True
        self._drain_timeout = 0.0
        if self._session_task is not None:
            self._session_task.cancel()
        self._interrupt_connection(_Closing())

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
        self._last_seq = None
        self.sink.reset(0)

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
                except SinkUnavailable as exc:
                    reason = "broker"
                    self._log.warning(
                        "the sink is unavailable; holding the resume point and reconnecting",
                        error=str(exc),
                        seq=self.sink.resume_seq,
                    )
                    await self._wait_for_sink()
                    delay = 0.0
                except SinkRefused as exc:
                    # The sink is there but refused an event: retrying at once would only be
                    # refused again (and RESUME in a loop), so back off like any other failure.
                    reason = "broker_refused"
                    failures = 0 if time.monotonic() - started > STABLE_AFTER else failures + 1
                    delay = self._backoff_delay(failures)
                    self.problem = str(exc)
                    self._log.warning(
                        "the sink refused an event; holding the resume point, resuming after "
                        "a backoff",
                        error=str(exc),
                        seq=self.sink.resume_seq,
                        failures=failures,
                        retry_in=round(delay, 2),
                    )
                    await self._wait_for_sink()
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
        except (TimeoutError, _Closing, SinkError):
            # A late failure of the previous connection's publishes (its seq is already held
            # back) only ends the wait early; it must not escape and stop the shard.
            pass
        finally:
            self._interrupt = None

    async def _wait_for_sink(self) -> None:
        self._set_state(ShardState.WAITING_BROKER)
        # The sink (its publisher) reconnects on its own, with backoff; this only waits for it,
        # in short steps so that a shutdown is not held up.
        while not self._closing:
            try:
                await self.sink.wait_available(BROKER_POLL_INTERVAL)
            except SinkUnavailable:
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
        self.sink.begin(self._interrupt_connection)
        if resuming:
            assert self._session_id is not None
            self.sink.session(self._session_id)
        self._last_seq = self.sink.resume_seq if resuming else None
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
        self._session_task = session
        try:
            await asyncio.wait([session, self._interrupt], return_when=asyncio.FIRST_COMPLETED)
            if self._interrupt.done():
                self._interrupt.result()  # raises _Closing, SinkUnavailable, ...
            session.result()  # raises what ended the connection
            raise TransportError("connection ended without a reason")  # pragma: no cover
        except ServerClosed:
            close_code = 0  # the server already closed it
            raise
        finally:
            session.cancel()
            await asyncio.gather(session, return_exceptions=True)
            self._session_task = None
            self._interrupt = None
            self._transport = None
            self._set_state(ShardState.CLOSING if self._closing else ShardState.CONNECTING)
            # Stop reading first, then let the sink settle what is in flight (RabbitMQ confirms),
            # so the resume point covers as much as possible and the replay is short.
            try:
                await self.sink.end(self._drain_timeout)
            finally:  # also when cancelled mid-drain: close resumably
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
        seq = self.sink.resume_seq
        d = {"token": self._token, "session_id": self._session_id, "seq": seq}
        await self._send(transport, _RESUME, d)
        self.resumes += 1
        self._log.info("resuming", seq=seq)

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
        await transport.send(_encode({"op": _HEARTBEAT, "d": self._last_seq}))

    async def _poll_events(self, transport: GatewayTransport) -> None:
        """Read payloads and hand dispatches to the sink (the hot path)."""
        receive = transport.receive
        decode = _decode_envelope
        events = self._events
        received = self.received
        dispatch = self.sink.dispatch
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
                self._last_seq = seq
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
                waiting = dispatch(seq, name, payload.d)
                if waiting is not None:
                    # The sink is full (RabbitMQ's window of unconfirmed events, or it is
                    # away): wait here, without reading the socket (backpressure).
                    self._publishing = True
                    await waiting
                    self._publishing = False
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

    def _salvage(self, data: bytes, error: BaseException) -> GatewayPayload | None:
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
                resume_seq=self.sink.resume_seq,
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
        return GatewayPayload(op=salvaged.op, d=msgspec.Raw(salvaged.d), s=salvaged.s, t=salvaged.t)

    def _on_session_event(self, name: str, raw: msgspec.Raw) -> None:
        if name == "READY":
            try:
                info = _decode_ready(raw)
            except _UNDECODABLE as exc:
                # No session to resume or relay under: a new connection (and IDENTIFY) it is.
                raise TransportError(f"READY cannot be decoded: {exc}") from None
            self._session_id = info.session_id
            self._resume_url = info.resume_gateway_url or self._gateway_url
            self.sink.session(info.session_id)
            self._identify_queue.answered(self.shard_id)  # its bucket may IDENTIFY again
            self._log.info("ready", session_id=info.session_id)
        else:
            self._log.info("resumed", seq=self.sink.resume_seq)
        self.problem = None
        self._set_state(ShardState.READY)
