"""The websocket under one shard: connection, transport decompression and error translation.

The protocol (opcodes, sessions) lives in `shard.py`; this module only moves payload bytes.
Every failure leaves here as a `TransportError` (or `ServerClosed` with the close policy), so the
shard's reconnect loop branches on our types, not on the websocket library's.
"""

from __future__ import annotations

import zlib
from types import ModuleType
from typing import Final, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from spectacles.models import close_policy

from .config import Compression
from .errors import ServerClosed, TransportError

__all__ = ["GatewayTransport", "build_gateway_url"]


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
# Discord payloads (GUILD_CREATE of a large guild) can be many megabytes; never refuse them.
MAX_MESSAGE_SIZE: Final = None
# Frames the library buffers before it stops reading the TCP socket (then TCP pushes back).
MAX_QUEUE: Final = 256
OPEN_TIMEOUT: Final = 10.0
CLOSE_TIMEOUT: Final = 2.0


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


class GatewayTransport:
    """One open websocket to the gateway, yielding whole decompressed payloads."""

    def __init__(self, ws: ClientConnection, compress: Compression) -> None:
        self._ws = ws
        self._decompressor = _decompressor(compress)

    @classmethod
    async def connect(cls, url: str, compress: Compression) -> GatewayTransport:
        """Open a websocket to `url` (query parameters added here)."""
        try:
            ws = await websockets.connect(
                build_gateway_url(url, compress),
                max_size=MAX_MESSAGE_SIZE,
                max_queue=MAX_QUEUE,
                compression=None,  # transport compression is Discord's own, not permessage-deflate
                open_timeout=OPEN_TIMEOUT,
                close_timeout=CLOSE_TIMEOUT,
                ping_interval=None,  # Discord's heartbeats are the liveness check
                user_agent_header="DiscordBot (https://github.com/spec-tacles, 0.1) spectacles",
            )
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            raise TransportError(f"cannot connect to the gateway: {exc!r}") from exc
        return cls(ws, compress)

    async def receive(self) -> bytes:
        """The next whole payload (hot path: one await per websocket frame)."""
        ws = self._ws
        decompressor = self._decompressor
        try:
            while True:
                frame = await ws.recv(decode=False)
                data = decompressor.feed(frame)
                if data is not None:
                    return data
        except ConnectionClosed as exc:
            raise self._closed(exc) from None

    async def send(self, payload: bytes) -> None:
        """Send one payload as a text frame (the client never compresses)."""
        try:
            await self._ws.send(payload, text=True)
        except ConnectionClosed as exc:
            raise self._closed(exc) from None

    async def close(self, code: int) -> None:
        """Close with `code`; never raises (the connection may already be gone)."""
        try:
            await self._ws.close(code=code, reason="")
        except Exception:  # closing a broken socket must not mask the real error
            self._ws.transport.abort()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame."""
        self._ws.transport.abort()

    @staticmethod
    def _closed(exc: ConnectionClosed) -> TransportError:
        if exc.rcvd is not None:
            return ServerClosed(exc.rcvd.code, exc.rcvd.reason, close_policy(exc.rcvd.code))
        return TransportError(f"connection lost: {exc}")
