"""The websocket under one shard: connection, transport decompression and error translation.

The protocol (opcodes, sessions) lives in `shard.py`; this module only moves payload bytes.
Every failure leaves here as a `TransportError` (or `ServerClosed` with the close policy), so the
shard's reconnect loop branches on our types, not on the websocket library's.

The websocket is aiohttp's: its frame reader is compiled (Cython), about 2.5x cheaper per frame
than `websockets`' generator-based parser, and frames are the gateway's hot path.

Backpressure: when the shard stops calling `receive()` (RabbitMQ's window is full), aiohttp's
reader queue fills. Past 512 KiB of queued messages (each counted as its size + 128 bytes: the
queue's limit is 2 x aiohttp's DEFAULT_CHUNK_SIZE of 256 KiB) the reader stops parsing, keeps
the rest of the last socket read unparsed and pauses reading the TCP socket; then TCP pushes
back on Discord. Reading resumes once the queue drains below half that. So a stalled shard holds
at most ~512 KiB of messages, one message in progress and one socket read (<= 256 KiB).

Size bounds (hostile or broken servers): aiohttp refuses a websocket message of
`max_message_size` bytes or more from its frame header, before buffering it; the zlib-stream
buffer of a payload split over several messages is held to the same bound; and a payload
inflates incrementally, at most `max_payload_size` + 1 bytes (zlib `max_length`, zstd through
a stream writer whose sink refuses the byte past the bound), so a decompression bomb costs one
bound's worth of memory, never its inflated size. Either bound raises `PayloadTooLarge`: the
connection closes and the shard resumes.

One `ClientSession` per connection, closed with it: a shard reconnects rarely, and a session of
its own means no pool, cookie jar or DNS cache shared between shards that could outlive a failure.
"""

from __future__ import annotations

import asyncio
import urllib.request
import zlib
from types import ModuleType
from typing import Final, Literal, NamedTuple, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
from aiohttp import ClientWebSocketResponse, WebSocketError, WSCloseCode, WSMsgType
from structlog.stdlib import BoundLogger

from spectacles.models import close_policy
from spectacles.observability import get_logger

from .config import Compression
from .errors import ServerClosed, TransportError

__all__ = ["GatewayTransport", "PayloadTooLarge", "SizeLimits", "build_gateway_url", "env_proxy"]


def _inflate_module() -> ModuleType:
    """zlib-ng when installed: it inflates Discord's stream ~25% faster than stdlib zlib."""
    try:
        from zlib_ng import zlib_ng
    except ImportError:  # pragma: no cover - a platform without zlib-ng wheels
        return zlib
    return zlib_ng


_inflate: Final = _inflate_module()
# Both modules' errors: a corrupt stream must become a TransportError (reconnect), whichever.
_INFLATE_ERRORS: Final = (zlib.error, _inflate.error)

API_VERSION: Final = 10
# zlib-stream: every payload ends with a Z_SYNC_FLUSH, whose last four bytes are these.
ZLIB_SUFFIX: Final = b"\x00\x00\xff\xff"
# Discord's largest real payloads (GUILD_CREATE of a huge guild) are several MiB inflated; 64 MiB
# leaves an order of magnitude of headroom and still bounds what one connection can allocate.
DEFAULT_MAX_MESSAGE_SIZE: Final = 64 * 1024 * 1024
DEFAULT_MAX_PAYLOAD_SIZE: Final = 64 * 1024 * 1024
# zstd output is handed over in chunks of this size, so the bound is checked at this grain.
_ZSTD_CHUNK: Final = 256 * 1024
OPEN_TIMEOUT: Final = 10.0
CLOSE_TIMEOUT: Final = 2.0
USER_AGENT: Final = "DiscordBot (https://github.com/spec-tacles, 0.1) spectacles"
# A close frame without a status code (RFC 6455 7.1.5); aiohttp reports it as code 0.
NO_STATUS_RCVD: Final = 1005
# Codes that name a local condition and must never be sent in a close frame (RFC 6455 7.4.1).
_UNSENDABLE_CODES: Final = frozenset({NO_STATUS_RCVD, 1006, 1015})
_BINARY: Final = WSMsgType.BINARY
_TEXT: Final = WSMsgType.TEXT
_CLOSE: Final = WSMsgType.CLOSE
_TOO_BIG: Final = WSCloseCode.MESSAGE_TOO_BIG
# Session closes started by `abort()`, referenced until done (the loop holds tasks weakly).
_aborting: set[asyncio.Task[None]] = set()


class PayloadTooLarge(TransportError):
    """A message or inflated payload over its configured bound (hostile or broken server)."""


class SizeLimits(NamedTuple):
    """Per-connection bounds, in bytes (`gateway.max_message_size`, `gateway.max_payload_size`)."""

    message: int = DEFAULT_MAX_MESSAGE_SIZE
    payload: int = DEFAULT_MAX_PAYLOAD_SIZE


DEFAULT_LIMITS: Final = SizeLimits()


def _payload_too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"payload inflates past {limit} bytes (gateway.max_payload_size): refused before "
        "allocating it (decompression bomb or broken server)"
    )


class _Decompressor(Protocol):
    def feed(self, frame: bytes) -> bytes | None:
        """Bytes of one whole payload, or None while a payload is still incomplete."""


class _Plain:
    def __init__(self, limits: SizeLimits = DEFAULT_LIMITS) -> None:
        self._limit = limits.payload

    def feed(self, frame: bytes) -> bytes | None:
        if len(frame) > self._limit:
            raise _payload_too_large(self._limit)
        return frame


class _ZlibStream:
    """One inflate context for the whole connection; frames buffered up to the sync-flush."""

    def __init__(self, limits: SizeLimits = DEFAULT_LIMITS) -> None:
        self._inflater = _inflate.decompressobj()
        self._buffer = bytearray()
        self._limits = limits

    def feed(self, frame: bytes) -> bytes | None:
        if not self._buffer and frame.endswith(ZLIB_SUFFIX):
            return self._inflate(frame)  # fast path: a payload in one frame
        self._buffer += frame
        if len(self._buffer) >= self._limits.message:
            raise PayloadTooLarge(
                f"compressed payload over {self._limits.message} bytes without its "
                "sync-flush (gateway.max_message_size)"
            )
        if not self._buffer.endswith(ZLIB_SUFFIX):
            return None
        data = self._inflate(self._buffer)
        self._buffer.clear()
        return data

    def _inflate(self, compressed: bytes | bytearray) -> bytes:
        limit = self._limits.payload
        try:
            # One byte past the bound tells a payload of exactly `limit` from a bigger one; zlib
            # stops there and keeps the rest of the input in `unconsumed_tail`, never inflated.
            data: bytes = self._inflater.decompress(compressed, limit + 1)
            while self._inflater.unconsumed_tail and len(data) <= limit:
                # A backend may stop short of `max_length` with input left (zlib does not).
                tail = self._inflater.unconsumed_tail
                data += self._inflater.decompress(tail, limit + 1 - len(data))
        except _INFLATE_ERRORS as exc:
            raise TransportError(f"corrupt compressed payload: {exc}") from exc
        if len(data) > limit:
            raise _payload_too_large(limit)
        return data


class _BoundedSink:
    """Where the zstd stream writer puts its output; refuses the byte past the bound."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, chunk: bytes) -> int:
        self.size += len(chunk)
        if self.size > self.limit:
            raise _payload_too_large(self.limit)
        self.parts.append(bytes(chunk))
        return len(chunk)

    def take(self) -> bytes:
        data = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        self.parts.clear()
        self.size = 0
        return data


class _ZstdStream:
    """One zstd stream for the connection; each websocket message is one flushed payload.

    `zstandard`'s decompressobj has no output bound, its stream writer does: it hands the output
    to `_BoundedSink` in `_ZSTD_CHUNK` pieces as it inflates, and the sink stops it.
    """

    def __init__(self, limits: SizeLimits = DEFAULT_LIMITS) -> None:
        import zstandard

        self._sink = _BoundedSink(limits.payload)
        self._writer = zstandard.ZstdDecompressor().stream_writer(
            self._sink,  # type: ignore[arg-type]  # only `write` is called on it
            write_size=_ZSTD_CHUNK,
            closefd=False,
        )
        self._error: type[Exception] = zstandard.ZstdError

    def feed(self, frame: bytes) -> bytes | None:
        try:
            self._writer.write(frame)
        except self._error as exc:
            raise TransportError(f"corrupt compressed payload: {exc}") from exc
        return self._sink.take()


def _decompressor(compress: Compression, limits: SizeLimits) -> _Decompressor:
    if compress == "zlib-stream":
        return _ZlibStream(limits)
    if compress == "zstd-stream":
        return _ZstdStream(limits)
    return _Plain(limits)


def build_gateway_url(base: str, compress: Compression) -> str:
    """`base` with `v`, `encoding` and `compress` query parameters (existing ones replaced)."""
    parts = urlsplit(base)
    query = {"v": str(API_VERSION), "encoding": "json"}
    if compress != "none":
        query["compress"] = compress
    path = parts.path or "/"
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode(query), ""))


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTPS_PROXY / HTTP_PROXY, minus NO_PROXY).

    Read here rather than through aiohttp's `trust_env`, which also reads ~/.netrc in a thread
    on every connect: that made the order in which shards connect nondeterministic.
    """
    parts = urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get("https" if parts.scheme in ("wss", "https") else "http")


class GatewayTransport:
    """One open websocket to the gateway, yielding whole decompressed payloads."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        ws: ClientWebSocketResponse[Literal[False]],
        compress: Compression,
        limits: SizeLimits = DEFAULT_LIMITS,
        log: BoundLogger | None = None,
    ) -> None:
        self._session = session
        self._ws = ws
        self._limits = limits
        self._log = log if log is not None else get_logger("spectacles.gateway.transport")
        self._decompressor = _decompressor(compress, limits)
        self._server_closed: tuple[int, str] | None = None

    @classmethod
    async def connect(
        cls,
        url: str,
        compress: Compression,
        limits: SizeLimits = DEFAULT_LIMITS,
        log: BoundLogger | None = None,
    ) -> GatewayTransport:
        """Open a websocket to `url` (query parameters added here); `log` reports refusals."""
        session = aiohttp.ClientSession(
            headers={"User-Agent": USER_AGENT},
            # No session-wide deadline: OPEN_TIMEOUT bounds the handshake, then no read timeout.
            timeout=aiohttp.ClientTimeout(total=None),
        )
        try:
            async with asyncio.timeout(OPEN_TIMEOUT):
                ws = await session.ws_connect(
                    build_gateway_url(url, compress),
                    proxy=env_proxy(url),
                    max_msg_size=limits.message,
                    compress=0,  # transport compression is Discord's own, not permessage-deflate
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT),
                    heartbeat=None,  # Discord's heartbeats are the liveness check
                    autoping=True,  # answer the server's pings, never send our own
                    autoclose=False,  # a server close is answered in `_on_close`, code echoed
                    decode_text=False,  # plain JSON payloads stay bytes, as binary ones
                )
        except BaseException as exc:
            await session.close()
            if isinstance(exc, aiohttp.ClientError | OSError | TimeoutError | ValueError):
                raise TransportError(f"cannot connect to the gateway: {exc!r}") from exc
            raise
        return cls(session, ws, compress, limits, log)

    async def receive(self) -> bytes:
        """The next whole payload (hot path: one await per websocket frame)."""
        receive = self._ws.receive
        feed = self._decompressor.feed
        while True:
            message = await receive()
            kind = message.type
            if kind is _BINARY or kind is _TEXT:
                try:
                    data = feed(message.data)
                except PayloadTooLarge as exc:
                    raise self._refused(exc) from None
                if data is not None:
                    return data
            elif kind is _CLOSE:
                raise await self._on_close(message.data, message.extra or "")
            else:  # CLOSED (connection lost), ERROR (protocol error) or CLOSING
                if isinstance(message.data, WebSocketError) and message.data.code == _TOO_BIG:
                    raise self._refused(
                        PayloadTooLarge(
                            f"websocket message of {self._limits.message} bytes or more "
                            f"(gateway.max_message_size): {message.data}"
                        )
                    )
                raise self._lost(message.data)

    async def send(self, payload: bytes) -> None:
        """Send one payload as a text frame (the client never compresses)."""
        if self._server_closed is not None:
            raise ServerClosed(*self._server_closed, close_policy(self._server_closed[0]))
        try:
            await self._ws.send_frame(payload, _TEXT)
        except (aiohttp.ClientError, OSError) as exc:
            raise self._lost(exc) from None

    async def close(self, code: int) -> None:
        """Close with `code`; never raises (the connection may already be gone)."""
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._ws.close(code=code)
        except Exception:  # closing a broken socket must not mask the real error
            pass
        finally:
            await self._session.close()  # drops the socket if the close handshake did not

    def abort(self) -> None:
        """Drop the TCP connection without a close frame.

        Closing the session is the public way to drop its socket (TLS without close_notify);
        it is a coroutine, so it runs as a task: the socket goes at the loop's next step.
        """
        if self._session.closed:
            return
        task = asyncio.get_running_loop().create_task(self._session.close())
        _aborting.add(task)
        task.add_done_callback(_aborting.discard)

    async def _on_close(self, code: int, reason: str) -> ServerClosed:
        """Answer the server's close frame with its code (the close handshake), then report it."""
        code = code or NO_STATUS_RCVD
        self._server_closed = (code, reason)
        if code not in _UNSENDABLE_CODES:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self._ws.close(code=code)  # returns once sent: the server closed first
            except Exception:  # the server may already have dropped the connection
                pass
        return ServerClosed(code, reason, close_policy(code))

    def _refused(self, error: PayloadTooLarge) -> PayloadTooLarge:
        self._log.error(
            "gateway payload over the size limit; closing the connection", error=str(error)
        )
        return error

    def _lost(self, cause: object) -> TransportError:
        if self._server_closed is not None:
            return ServerClosed(*self._server_closed, close_policy(self._server_closed[0]))
        detail = cause if cause is not None else self._ws.exception()
        if detail is None:
            return TransportError("connection lost: no close frame received")
        return TransportError(f"connection lost: {detail!r}")
