"""Websocket frames and gateway transport compression, written without per-message awaits.

The simulator writes server frames straight to the transport: a frame is built and written in
one synchronous step, so frames from different tasks never interleave, and a flood can batch
thousands of frames into a single `transport.write`.
"""

from __future__ import annotations

import struct
import zlib
from typing import Final, Protocol

import zstandard

__all__ = [
    "COMPRESSIONS",
    "PayloadEncoder",
    "PlainEncoder",
    "ZlibStreamEncoder",
    "ZstdStreamEncoder",
    "encoder_for",
    "frame",
]

TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
_LEN2: Final = struct.Struct("!BBH").pack
_LEN8: Final = struct.Struct("!BBQ").pack
COMPRESSIONS: Final = ("zlib-stream", "zstd-stream")


def frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked, final websocket frame (servers never mask)."""
    length = len(payload)
    if length < 126:
        return bytes((0x80 | opcode, length)) + payload
    if length < 65536:
        return _LEN2(0x80 | opcode, 126, length) + payload
    return _LEN8(0x80 | opcode, 127, length) + payload


class PayloadEncoder(Protocol):
    """Turns one JSON payload into one complete websocket frame."""

    name: str

    def encode(self, payload: bytes) -> bytes:
        """The frame bytes for `payload`; stateful encoders must see every payload in order."""
        ...


class PlainEncoder:
    """No transport compression: text frames."""

    name = "none"

    def encode(self, payload: bytes) -> bytes:
        """A text frame."""
        return frame(TEXT, payload)


class ZlibStreamEncoder:
    """zlib-stream: one deflate context per connection, each payload ends with Z_SYNC_FLUSH."""

    name = "zlib-stream"

    def __init__(self, level: int = 1) -> None:
        self._deflate = zlib.compressobj(level)

    def encode(self, payload: bytes) -> bytes:
        """A binary frame whose payload ends with 00 00 FF FF."""
        deflate = self._deflate
        return frame(BINARY, deflate.compress(payload) + deflate.flush(zlib.Z_SYNC_FLUSH))


class ZstdStreamEncoder:
    """zstd-stream: one zstd frame for the connection, flushed (never ended) per payload."""

    name = "zstd-stream"

    def __init__(self, level: int = 3) -> None:
        self._stream = zstandard.ZstdCompressor(level=level).compressobj()

    def encode(self, payload: bytes) -> bytes:
        """A binary frame holding one flushed zstd block run."""
        stream = self._stream
        data = stream.compress(payload) + stream.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        return frame(BINARY, data)


def encoder_for(compress: str | None, *, zlib_level: int = 1) -> PayloadEncoder:
    """The encoder for a `compress` query value; callers validate it against COMPRESSIONS."""
    if compress == "zlib-stream":
        return ZlibStreamEncoder(zlib_level)
    if compress == "zstd-stream":
        return ZstdStreamEncoder()
    return PlainEncoder()
