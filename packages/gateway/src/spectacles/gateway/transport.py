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

One `ClientSession` per connection, closed with it: a shard reconnects rarely, and a session of
its own means no pool, cookie jar or DNS cache shared between shards that could outlive a failure.
"""

from __future__ import annotations

import asyncio
import urllib.request
import zlib
from types import ModuleType
from typing import Final, Literal, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
from aiohttp import ClientWebSocketResponse, WSMsgType

from spectacles.models import close_policy

from .config import Compression
from .errors import ServerClosed, TransportError

__all__ = ["GatewayTransport", "build_gateway_url", "env_proxy"]


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
# Discord payloads (GUILD_CREATE of a large guild) can be many megabytes; never refuse them
# (aiohttp: 0 is no limit).
MAX_MESSAGE_SIZE: Final = 0
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
# Session closes started by `abort()`, referenced until done (the loop holds tasks weakly).
_aborting: set[asyncio.Task[None]] = set()


class _Decompressor(Protocol):
    def feed(self, frame: bytes) -> bytes | None:
        """Bytes of one whole payload, or None while a payload is still incomplete."""


class _Plain:
    def feed(self, frame: bytes) -> bytes | None:
        return frame


class _ZlibStream:
    """One inflate context for the whole connection; frames buffered up to the sync-flush."""

    def __init__(self) -> None:
        self._decompress = _inflate.decompressobj().decompress
        self._buffer = bytearray()

    def feed(self, frame: bytes) -> bytes | None:
        try:
            if not self._buffer and frame.endswith(ZLIB_SUFFIX):
                data: bytes = self._decompress(frame)  # fast path: a payload in one frame
                return data
            self._buffer += frame
            if not self._buffer.endswith(ZLIB_SUFFIX):
                return None
            data = self._decompress(self._buffer)
        except _INFLATE_ERRORS as exc:
            raise TransportError(f"corrupt compressed payload: {exc}") from exc
        self._buffer.clear()
        return data


class _ZstdStream:
    """One zstd stream for the connection; each websocket message is one flushed payload."""

    def __init__(self) -> None:
        import zstandard

        self._decompressor = zstandard.ZstdDecompressor().decompressobj()
        self._error: type[Exception] = zstandard.ZstdError

    def feed(self, frame: bytes) -> bytes | None:
        try:
            data: bytes = self._decompressor.decompress(frame)
        except self._error as exc:
            raise TransportError(f"corrupt compressed payload: {exc}") from exc
        return data


def _decompressor(compress: Compression) -> _Decompressor:
    if compress == "zlib-stream":
        return _ZlibStream()
    if compress == "zstd-stream":
        return _ZstdStream()
    return _Plain()


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
    ) -> None:
        self._session = session
        self._ws = ws
        self._decompressor = _decompressor(compress)
        self._server_closed: tuple[int, str] | None = None

    @classmethod
    async def connect(cls, url: str, compress: Compression) -> GatewayTransport:
        """Open a websocket to `url` (query parameters added here)."""
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
                    max_msg_size=MAX_MESSAGE_SIZE,
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
        return cls(session, ws, compress)

    async def receive(self) -> bytes:
        """The next whole payload (hot path: one await per websocket frame)."""
        receive = self._ws.receive
        feed = self._decompressor.feed
        while True:
            message = await receive()
            kind = message.type
            if kind is _BINARY or kind is _TEXT:
                data = feed(message.data)
                if data is not None:
                    return data
            elif kind is _CLOSE:
                raise await self._on_close(message.data, message.extra or "")
            else:  # CLOSED (connection lost), ERROR (protocol error) or CLOSING
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

    def _lost(self, cause: object) -> TransportError:
        if self._server_closed is not None:
            return ServerClosed(*self._server_closed, close_policy(self._server_closed[0]))
        detail = cause if cause is not None else self._ws.exception()
        if detail is None:
            return TransportError("connection lost: no close frame received")
        return TransportError(f"connection lost: {detail!r}")
