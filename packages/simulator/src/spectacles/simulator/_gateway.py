"""The gateway: websocket connections, sessions, identify limits, dispatch routing and faults.

Each connection is handled by `GatewayHub.handle` (one aiohttp websocket handler); everything a
connection does to the shared state (sessions, identify buckets, stats) goes through the hub.
Payloads are written synchronously (see `_frames.py`), so dispatch order is the call order.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
import time
import zlib
from collections import deque
from typing import Any, Final

import msgspec
from aiohttp import WSMsgType, web

from spectacles.models import (
    ALL_INTENTS,
    MAX_PAYLOAD_BYTES,
    PRIVILEGED_INTENTS,
    CloseCode,
    Intents,
    Opcode,
    close_policy,
    intents_for_event,
)
from spectacles.observability import get_logger
from spectacles.simulator._config import SimulatorConfig
from spectacles.simulator._frames import (
    BINARY,
    CLOSE,
    COMPRESSIONS,
    PayloadEncoder,
    PlainEncoder,
    encoder_for,
    frame,
)
from spectacles.simulator._presence import presence_problem
from spectacles.simulator._sessions import Session
from spectacles.simulator._stats import Stats
from spectacles.simulator._world import World

__all__ = ["Connection", "GatewayHub"]

log = get_logger("spectacles.simulator.gateway")

API_VERSION: Final = "10"
CLOSE_TIMEOUT: Final = 2.0
_CLOSE_CODE: Final = struct.Struct("!H").pack
# A client that stops reading gets cut off (as by Discord) rather than growing our memory.
MAX_WRITE_BUFFER: Final = 64 * 1024 * 1024
# Without MESSAGE_CONTENT these fields arrive empty (discord-protocol.md section 6).
CONTENT_FIELDS: Final = ("content", "embeds", "attachments", "components")
CONTENT_EVENTS: Final = frozenset({"MESSAGE_CREATE", "MESSAGE_UPDATE"})
_GUILD_SIDE: Final = (
    Intents.GUILD_MESSAGES
    | Intents.GUILD_MESSAGE_REACTIONS
    | Intents.GUILD_MESSAGE_TYPING
    | Intents.GUILD_MESSAGE_POLLS
)
_DM_SIDE: Final = (
    Intents.DIRECT_MESSAGES
    | Intents.DIRECT_MESSAGE_REACTIONS
    | Intents.DIRECT_MESSAGE_TYPING
    | Intents.DIRECT_MESSAGE_POLLS
)
_ACK: Final = b'{"t":null,"s":null,"op":11,"d":null}'
_RECONNECT: Final = b'{"t":null,"s":null,"op":7,"d":null}'
_COMMAND_OPS: Final = frozenset(
    {
        Opcode.PRESENCE_UPDATE,
        Opcode.VOICE_STATE_UPDATE,
        Opcode.REQUEST_GUILD_MEMBERS,
        Opcode.REQUEST_SOUNDBOARD_SOUNDS,
    }
)
_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode


def required_intents(event: str, in_guild: bool) -> int:
    """Intents any one of which delivers `event` (0 = ungated), guild and DM sides told apart."""
    intents = int(intents_for_event(event))
    narrowed = intents & ~int(_DM_SIDE if in_guild else _GUILD_SIDE)
    return narrowed or intents


def op_payload(op: int, d: Any) -> bytes:
    """A non-dispatch payload in the full envelope Discord sends."""
    return b'{"t":null,"s":null,"op":%d,"d":%b}' % (op, _json_encode(d))


class _PayloadZlibEncoder:
    """IDENTIFY `compress: true` without transport compression: each payload zlib-compressed."""

    name = "payload-zlib"

    def encode(self, payload: bytes) -> bytes:
        return frame(BINARY, zlib.compress(payload))


class Connection:
    """One websocket: its encoder, heartbeat state, payload rate window and session."""

    def __init__(
        self, ws: web.WebSocketResponse, request: web.Request, encoder: PayloadEncoder
    ) -> None:
        self.ws = ws
        self.transport: asyncio.Transport | None = request.transport
        self.protocol = request.protocol
        self.encoder = encoder
        self.session: Session | None = None
        self.stalled = False
        self.last_heartbeat = time.monotonic()
        self.recent: deque[float] = deque()
        self.server_close_code: int | None = None
        self.dropped = False
        self.peer = request.remote

    @property
    def open(self) -> bool:
        """Whether payloads can still be written."""
        transport = self.transport
        return (
            self.server_close_code is None
            and not self.dropped
            and transport is not None
            and not transport.is_closing()
        )

    def send(self, payload: bytes) -> None:
        """Write one payload as one frame, now."""
        if not self.open:
            return
        transport = self.transport
        assert transport is not None
        transport.write(self.encoder.encode(payload))
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self.drop()

    def write_frames(self, frames: bytes) -> None:
        """Write pre-built frames (the flood's batches); they must come from `self.encoder`."""
        if self.open:
            assert self.transport is not None
            self.transport.write(frames)

    async def drain(self) -> None:
        """Wait while the client is behind (the transport paused writing)."""
        transport = self.transport
        while self.open and transport is not None and transport.get_write_buffer_size() > 1 << 20:
            drain_helper = getattr(self.protocol, "_drain_helper", None)
            if drain_helper is not None and getattr(self.protocol, "_paused", False):
                await drain_helper()
            else:
                await asyncio.sleep(0.001)

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame with `code`; later payloads are discarded.

        The frame is written directly rather than through `ws.close()`, which, called from
        another task than the handler's, drops the TCP connection before the client's close
        reply (clients then see 1006 instead of `code`). The handler ends when that reply
        arrives; a client that never answers is cut off after `CLOSE_TIMEOUT`.
        """
        if self.server_close_code is not None or self.dropped:
            return
        self.server_close_code = code
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(frame(CLOSE, _CLOSE_CODE(code) + reason.encode()[:120]))
        asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, transport.abort)

    def drop(self) -> None:
        """Cut the TCP connection without a close frame (as a network failure would)."""
        self.dropped = True
        if self.transport is not None:
            self.transport.abort()


class GatewayHub:
    """Shared gateway state and the websocket handler."""

    def __init__(self, config: SimulatorConfig, world: World, stats: Stats) -> None:
        self.config = config
        self.world = world
        self.stats = stats
        self.sessions: dict[str, Session] = {}
        self.connections: set[Connection] = set()
        self.gateway_url = "ws://127.0.0.1/gateway"
        self.resume_url = "ws://127.0.0.1/resume"
        self._bucket_last: dict[int, float] = {}
        self._start_remaining = config.session_start_total
        self._start_window_end: float | None = None
        self._bot_user = _json_encode(world.bot.to_private_json())
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start expiring detached sessions."""
        self._sweeper = asyncio.create_task(self._sweep())

    async def stop(self) -> None:
        """Close every connection (1001, like a server going away) and stop background work."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in list(self._tasks):
            task.cancel()
        for connection in list(self.connections):
            connection.drop()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(max(self.config.session_ttl / 4, 0.05), 5.0))
            self.expire_sessions()

    def expire_sessions(self) -> None:
        """Forget detached sessions older than `session_ttl`."""
        now = time.monotonic()
        ttl = self.config.session_ttl
        for session_id, session in list(self.sessions.items()):
            if session.expired(now, ttl):
                del self.sessions[session_id]

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run a background coroutine tied to the hub's lifetime."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- session start limit ----------------------------------------------------------------

    def session_start_limit(self) -> dict[str, int]:
        """The `session_start_limit` object of `/gateway/bot`."""
        now = time.monotonic()
        self._roll_start_window(now)
        end = self._start_window_end
        reset_after = (
            self.config.session_start_reset_ms if end is None else max(int((end - now) * 1000), 0)
        )
        return {
            "total": self.config.session_start_total,
            "remaining": self._start_remaining,
            "reset_after": reset_after,
            "max_concurrency": self.config.max_concurrency,
        }

    def _roll_start_window(self, now: float) -> None:
        if self._start_window_end is not None and now >= self._start_window_end:
            self._start_window_end = None
            self._start_remaining = self.config.session_start_total

    # -- dispatch ---------------------------------------------------------------------------

    def deliver(self, session: Session, event: str, data: bytes) -> None:
        """Number a dispatch for one session, buffer it, and send it if the session is live."""
        payload = session.record(event.encode(), data)
        self.stats.dispatches[session.shard_id] += 1
        self.stats.events[event] += 1
        if session.connection is not None:
            session.connection.send(payload)

    def dispatch(
        self,
        event: str,
        data: dict[str, Any],
        guild_id: int | None,
        *,
        content_exempt: bool = False,
    ) -> int:
        """Send an event to every session that owns its guild and whose intents allow it.

        `content_exempt` marks messages every session sees in full (the bot's own, or those
        mentioning it). Returns how many sessions got the event.
        """
        needed = required_intents(event, guild_id is not None)
        gate_content = event in CONTENT_EVENTS and not content_exempt and guild_id is not None
        full: bytes | None = None
        stripped: bytes | None = None
        delivered = 0
        for session in list(self.sessions.values()):
            if not session.owns_guild(guild_id) or (needed and not session.intents & needed):
                continue
            if gate_content and not session.intents & Intents.MESSAGE_CONTENT:
                if stripped is None:
                    stripped = _json_encode(strip_content(data))
                body = stripped
            else:
                if full is None:
                    full = _json_encode(data)
                body = full
            self.deliver(session, event, body)
            delivered += 1
        return delivered

    def shard_connections(self, shard_id: int) -> list[Connection]:
        """Live connections whose session is on `shard_id`."""
        return [
            c
            for c in self.connections
            if c.open and c.session is not None and c.session.shard_id == shard_id
        ]

    # -- fault injection --------------------------------------------------------------------

    def send_reconnect(self, shard_id: int) -> int:
        """Op 7 to every connection of the shard."""
        targets = self.shard_connections(shard_id)
        for connection in targets:
            connection.send(_RECONNECT)
        return len(targets)

    def send_invalid_session(self, shard_id: int, resumable: bool) -> int:
        """Op 9; when not resumable the session is gone, so only a new IDENTIFY works."""
        targets = self.shard_connections(shard_id)
        for connection in targets:
            self._invalid_session(connection, resumable)
        return len(targets)

    def _invalid_session(self, connection: Connection, resumable: bool) -> None:
        self.stats.invalid_sessions += 1
        connection.send(op_payload(Opcode.INVALID_SESSION, resumable))
        if not resumable and connection.session is not None:
            self.sessions.pop(connection.session.session_id, None)
            connection.session = None

    async def close_shard(self, shard_id: int, code: int, reason: str) -> int:
        """Close every connection of the shard with `code`."""
        targets = self.shard_connections(shard_id)
        await asyncio.gather(*(self._close(c, code, reason) for c in targets))
        return len(targets)

    def drop_shard(self, shard_id: int) -> int:
        """Cut the TCP connections of the shard without a close frame."""
        targets = self.shard_connections(shard_id)
        for connection in targets:
            connection.drop()
        return len(targets)

    def stall_shard(self, shard_id: int, stalled: bool) -> int:
        """Stop (or resume) ACKing the shard's heartbeats."""
        targets = self.shard_connections(shard_id)
        for connection in targets:
            connection.stalled = stalled
        return len(targets)

    # -- the websocket handler --------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one gateway connection from HELLO to close."""
        query = request.query
        encoding = query.get("encoding", "json")
        if encoding != "json":
            return _bad_handshake(
                f"encoding={encoding!r} is not supported by the simulator; "
                "connect with encoding=json (ETF is not implemented)"
            )
        compress = query.get("compress")
        if compress is not None and compress not in COMPRESSIONS:
            return _bad_handshake(
                f"compress={compress!r} is not supported; use zlib-stream, zstd-stream or omit it"
            )
        ws = web.WebSocketResponse(
            compress=False, max_msg_size=1 << 20, autoping=True, timeout=2.0, heartbeat=None
        )
        await ws.prepare(request)
        connection = Connection(
            ws, request, encoder_for(compress, zlib_level=self.config.zlib_level)
        )
        self.connections.add(connection)
        self.stats.connections_total += 1
        self.stats.connection_paths[request.path] += 1
        self.stats.connections_open += 1
        watchdog: asyncio.Task[None] | None = None
        try:
            if query.get("v", API_VERSION) != API_VERSION:
                await self._close(connection, CloseCode.INVALID_API_VERSION, "Invalid API version.")
            else:
                interval = self.config.heartbeat_interval_ms
                connection.send(op_payload(Opcode.HELLO, {"heartbeat_interval": interval}))
                watchdog = asyncio.create_task(self._watch_heartbeats(connection))
                await self._receive_loop(connection)
        finally:
            if watchdog is not None:
                watchdog.cancel()
            self._finish(connection)
        return ws

    async def _receive_loop(self, connection: Connection) -> None:
        async for message in connection.ws:
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                raw = message.data if message.type is WSMsgType.BINARY else message.data.encode()
                await self._on_payload(connection, raw)
                if not connection.open:
                    return
            elif message.type is WSMsgType.ERROR:
                return

    async def _watch_heartbeats(self, connection: Connection) -> None:
        timeout = self.config.heartbeat_interval_ms / 1000 * self.config.heartbeat_timeout_factor
        while connection.open:
            left = connection.last_heartbeat + timeout - time.monotonic()
            if left <= 0:
                await self._close(connection, CloseCode.UNKNOWN_ERROR, "Heartbeat timed out.")
                return
            await asyncio.sleep(left)

    async def _close(self, connection: Connection, code: int, reason: str) -> None:
        """Close from the server side; a code that forbids resuming ends the session now."""
        session = connection.session
        if session is not None and not close_policy(code).resume:
            self.sessions.pop(session.session_id, None)
        log.info("gateway_close", code=code, reason=reason, peer=connection.peer)
        await connection.close(code, reason)

    def _finish(self, connection: Connection) -> None:
        """Decide the session's fate from how the connection ended."""
        self.connections.discard(connection)
        self.stats.connections_open -= 1
        ws_code = connection.ws.close_code
        code = connection.server_close_code or (None if connection.dropped else ws_code)
        if code is not None:
            self.stats.closes[code] += 1
        session = connection.session
        connection.session = None
        if session is None or session.connection is not connection:
            return
        if connection.server_close_code is not None:
            keep = close_policy(connection.server_close_code).resume
        elif connection.dropped or ws_code is None:
            keep = True
        else:
            keep = ws_code not in (1000, 1001)
        if keep:
            session.detach(time.monotonic())
        else:
            self.sessions.pop(session.session_id, None)

    # -- client payloads --------------------------------------------------------------------

    async def _on_payload(self, connection: Connection, raw: bytes) -> None:
        now = time.monotonic()
        recent = connection.recent
        recent.append(now)
        window = self.config.gateway_payload_window
        while recent and now - recent[0] > window:
            recent.popleft()
        if len(recent) > self.config.gateway_payload_limit:
            await self._close(connection, CloseCode.RATE_LIMITED, "You are being rate limited.")
            return
        if len(raw) > MAX_PAYLOAD_BYTES:
            await self._close(connection, CloseCode.DECODE_ERROR, "Payload too large.")
            return
        try:
            message = _json_decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError):
            message = None
        op = message.get("op") if isinstance(message, dict) else None
        if not isinstance(op, int) or isinstance(op, bool):
            await self._close(connection, CloseCode.DECODE_ERROR, "Error while decoding payload.")
            return
        assert isinstance(message, dict)
        data = message.get("d")
        if op == Opcode.HEARTBEAT:
            self._on_heartbeat(connection)
        elif op == Opcode.IDENTIFY:
            await self._on_identify(connection, data)
        elif op == Opcode.RESUME:
            await self._on_resume(connection, data)
        elif op in _COMMAND_OPS:
            if connection.session is None:
                await self._close(connection, CloseCode.NOT_AUTHENTICATED, "Not authenticated.")
            elif op == Opcode.PRESENCE_UPDATE:
                await self._on_presence_update(connection, data)
            elif op == Opcode.REQUEST_GUILD_MEMBERS:
                await self._on_request_members(connection, data)
        else:
            await self._close(connection, CloseCode.UNKNOWN_OPCODE, "Unknown opcode.")

    def _on_heartbeat(self, connection: Connection) -> None:
        connection.last_heartbeat = time.monotonic()
        self.stats.heartbeats += 1
        if not connection.stalled:
            connection.send(_ACK)

    async def _on_identify(self, connection: Connection, data: Any) -> None:
        config = self.config
        self.stats.identify_attempts += 1
        if not isinstance(data, dict):
            await self._close(connection, CloseCode.DECODE_ERROR, "Invalid IDENTIFY payload.")
            return
        if data.get("token") != config.token:
            await self._close(connection, CloseCode.AUTHENTICATION_FAILED, "Authentication failed.")
            return
        if connection.session is not None:
            await self._close(
                connection, CloseCode.ALREADY_AUTHENTICATED, "You sent more than one identify."
            )
            return
        intents = data.get("intents")
        if not isinstance(intents, int) or isinstance(intents, bool):
            await self._close(connection, CloseCode.DECODE_ERROR, "IDENTIFY needs integer intents.")
            return
        presence = data.get("presence")
        problem = None if presence is None else presence_problem(presence, partial=True)
        if problem is not None:
            await self._close(connection, CloseCode.DECODE_ERROR, f"Invalid IDENTIFY: {problem}.")
            return
        if intents < 0 or intents & ~int(ALL_INTENTS):
            await self._close(connection, CloseCode.INVALID_INTENTS, "Invalid intent(s).")
            return
        if intents & int(PRIVILEGED_INTENTS) & ~int(config.privileged_intents):
            await self._close(connection, CloseCode.DISALLOWED_INTENTS, "Disallowed intent(s).")
            return
        shard = data.get("shard", [0, 1])
        if not _valid_shard(shard):
            await self._close(connection, CloseCode.INVALID_SHARD, "Invalid shard.")
            return
        shard_id, num_shards = int(shard[0]), int(shard[1])
        on_shard = list(self.world.guilds_on_shard(shard_id, num_shards))
        if len(on_shard) > config.max_guilds_per_shard:
            await self._close(connection, CloseCode.SHARDING_REQUIRED, "Sharding is required.")
            return
        now = time.monotonic()
        bucket = shard_id % config.max_concurrency
        last = self._bucket_last.get(bucket)
        self._roll_start_window(now)
        if (
            last is not None and now - last < config.identify_interval
        ) or self._start_remaining < 1:
            self.stats.identify_rejected += 1
            self._invalid_session(connection, False)
            return
        self._bucket_last[bucket] = now
        self._start_remaining -= 1
        if self._start_window_end is None:
            self._start_window_end = now + config.session_start_reset_ms / 1000
        if data.get("compress") is True and isinstance(connection.encoder, PlainEncoder):
            connection.encoder = _PayloadZlibEncoder()
        session = Session(
            secrets.token_hex(16), shard_id, num_shards, intents, config.replay_buffer_size
        )
        if presence is not None:
            session.set_presence(presence, update=False)
        self._note_overlap(session, connection)
        self.sessions[session.session_id] = session
        session.attach(connection)
        connection.session = session
        self.stats.identifies += 1
        log.info(
            "gateway_identify",
            session_id=session.session_id,
            shard=[shard_id, num_shards],
            intents=intents,
            compress=connection.encoder.name,
        )
        self.deliver(session, "READY", self._ready(session, on_shard, "shard" in data))
        if intents & Intents.GUILDS:
            joined = self.world.now()
            for guild in on_shard:
                bot = guild.members.get(self.world.bot.id)
                body = guild.to_gateway_create(bot.joined_at if bot is not None else joined)
                self.deliver(session, "GUILD_CREATE", _json_encode(body))

    def _ready(self, session: Session, guilds: list[Any], with_shard: bool) -> bytes:
        body = {
            "v": 10,
            "user": msgspec.Raw(self._bot_user),
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_url,
            "application": {"id": str(self.world.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "_trace": ['["spectacles-sim",{"micros":0}]'],
        }
        if with_shard:
            body["shard"] = [session.shard_id, session.num_shards]
        return _json_encode(body)

    async def _on_resume(self, connection: Connection, data: Any) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("session_id"), str):
            await self._close(connection, CloseCode.DECODE_ERROR, "Invalid RESUME payload.")
            return
        if data.get("token") != self.config.token:
            await self._close(connection, CloseCode.AUTHENTICATION_FAILED, "Authentication failed.")
            return
        if connection.session is not None:
            await self._close(
                connection, CloseCode.ALREADY_AUTHENTICATED, "This connection has a session."
            )
            return
        self.expire_sessions()
        session = self.sessions.get(data["session_id"])
        if session is None:
            self._invalid_session(connection, False)
            return
        seq = data.get("seq")
        seq = 0 if seq is None else seq
        replay = session.replay_after(seq) if isinstance(seq, int) else None
        if replay is None:
            self.sessions.pop(session.session_id, None)
            await self._close(connection, CloseCode.INVALID_SEQ, "Invalid seq.")
            return
        self._note_overlap(session, connection)
        previous = session.connection
        if isinstance(previous, Connection) and previous is not connection:
            # The session moves; the old socket no longer speaks for it.
            previous.session = None
            self.spawn(previous.close(CloseCode.UNKNOWN_ERROR, "Session resumed elsewhere."))
        session.attach(connection)
        connection.session = session
        self.stats.resumes += 1
        log.info("gateway_resume", session_id=session.session_id, seq=seq, replayed=len(replay))
        for payload in replay:
            connection.send(payload)
        self.deliver(session, "RESUMED", b'{"_trace":["[\\"spectacles-sim\\"]"]}')

    def _note_overlap(self, session: Session, connection: Connection) -> None:
        """Count a shard that another open connection still runs (see `Stats.shard_overlaps`)."""
        shard = (session.shard_id, session.num_shards)
        for other in self.sessions.values():
            live = other.connection
            if (
                (other.shard_id, other.num_shards) == shard
                and isinstance(live, Connection)
                and live is not connection
                and live.open
            ):
                self.stats.shard_overlaps += 1
                log.warning("gateway_shard_overlap", shard=list(shard), session_id=other.session_id)
                return

    async def _on_presence_update(self, connection: Connection, data: Any) -> None:
        session = connection.session
        assert session is not None
        problem = presence_problem(data)
        if problem is not None:
            await self._close(connection, CloseCode.DECODE_ERROR, f"Invalid op 3: {problem}.")
            return
        session.set_presence(data, update=True)
        log.info("gateway_presence_update", session_id=session.session_id, status=data["status"])

    async def _on_request_members(self, connection: Connection, data: Any) -> None:
        session = connection.session
        assert session is not None
        if not isinstance(data, dict):
            await self._close(
                connection, CloseCode.DECODE_ERROR, "Invalid request members payload."
            )
            return
        raw_ids = data.get("guild_id")
        guild_ids: list[Any] = raw_ids if isinstance(raw_ids, list) else [raw_ids]
        for raw in guild_ids:
            try:
                guild = self.world.guilds.get(int(raw))
            except (TypeError, ValueError):
                guild = None
            if guild is None or not session.owns_guild(guild.id):
                continue
            members = list(guild.members.values())
            query = data.get("query")
            if isinstance(query, str) and query:
                members = [m for m in members if m.user.username.startswith(query.lower())]
            user_ids = data.get("user_ids")
            if user_ids is not None:
                wanted = {int(u) for u in (user_ids if isinstance(user_ids, list) else [user_ids])}
                members = [m for m in members if m.user.id in wanted]
            limit = data.get("limit", 0)
            if isinstance(limit, int) and limit > 0:
                members = members[:limit]
            chunks = [members[i : i + 1000] for i in range(0, len(members), 1000)] or [[]]
            for index, chunk in enumerate(chunks):
                body: dict[str, Any] = {
                    "guild_id": str(guild.id),
                    "members": [m.to_json() for m in chunk],
                    "chunk_index": index,
                    "chunk_count": len(chunks),
                }
                if "nonce" in data:
                    body["nonce"] = data["nonce"]
                self.deliver(session, "GUILD_MEMBERS_CHUNK", _json_encode(body))


def strip_content(data: dict[str, Any]) -> dict[str, Any]:
    """The message as a session without MESSAGE_CONTENT sees it."""
    stripped = dict(data)
    stripped["content"] = ""
    for key in CONTENT_FIELDS[1:]:
        if key in stripped:
            stripped[key] = []
    stripped.pop("poll", None)
    return stripped


def _valid_shard(shard: Any) -> bool:
    if not isinstance(shard, list) or len(shard) != 2:
        return False
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in shard):
        return False
    shard_id, num_shards = int(shard[0]), int(shard[1])
    return num_shards >= 1 and 0 <= shard_id < num_shards


def _bad_handshake(reason: str) -> web.Response:
    return web.json_response({"code": 0, "message": reason}, status=400)
