"""Decode a delivery's content properties straight from the received bytes.

pamqp's ``ContentHeader``/``Basic.Properties`` build a 14-attribute object and decode every
field through generic helpers: several microseconds per message, a large part of a no-op worker's
budget. Here the flags are walked once and each present property is sliced out in place; header
tables of the usual scalar types are decoded inline, anything exotic falls back to pamqp.
"""

from __future__ import annotations

import datetime
import struct
from typing import Any

from pamqp import decode as pamqp_decode

__all__ = ["BasicProperties", "decode_properties", "decode_table"]

_u16 = struct.Struct(">H")
_u32 = struct.Struct(">I")
_u64 = struct.Struct(">Q")
_i8 = struct.Struct(">b")
_i16 = struct.Struct(">h")
_i32 = struct.Struct(">i")
_i64 = struct.Struct(">q")
_f32 = struct.Struct(">f")
_f64 = struct.Struct(">d")

_UTC = datetime.UTC


class BasicProperties:
    """The properties of one delivered message (AMQP 0-9-1 ``basic`` class), all optional."""

    __slots__ = (
        "app_id",
        "content_encoding",
        "content_type",
        "correlation_id",
        "delivery_mode",
        "expiration",
        "headers",
        "message_id",
        "priority",
        "reply_to",
        "timestamp",
        "type",
        "user_id",
    )

    def __init__(self) -> None:
        self.content_type: str | None = None
        self.content_encoding: str | None = None
        self.headers: dict[str, Any] | None = None
        self.delivery_mode: int | None = None
        self.priority: int | None = None
        self.correlation_id: str | None = None
        self.reply_to: str | None = None
        self.expiration: str | None = None
        self.message_id: str | None = None
        self.timestamp: datetime.datetime | None = None
        self.type: str | None = None
        self.user_id: str | None = None
        self.app_id: str | None = None


def _shortstr(buf: bytes | bytearray, pos: int) -> tuple[str, int]:
    end = pos + 1 + buf[pos]
    return buf[pos + 1 : end].decode(), end


def _timestamp(seconds: float) -> datetime.datetime:
    if seconds > 0xFFFFFFFF:  # as pamqp: past 2106, assume milliseconds
        seconds /= 1000.0
    return datetime.datetime.fromtimestamp(seconds, tz=_UTC)


def decode_properties(buf: bytes | bytearray, pos: int, flags: int) -> BasicProperties:
    """The properties whose ``flags`` are set, read from ``buf`` at ``pos`` (after the flags)."""
    props = BasicProperties()
    if flags & 0x8000:
        props.content_type, pos = _shortstr(buf, pos)
    if flags & 0x4000:
        props.content_encoding, pos = _shortstr(buf, pos)
    if flags & 0x2000:
        size = _u32.unpack_from(buf, pos)[0]
        end = pos + 4 + size
        props.headers = decode_table(buf, pos + 4, end)
        pos = end
    if flags & 0x1000:
        props.delivery_mode = buf[pos]
        pos += 1
    if flags & 0x0800:
        props.priority = buf[pos]
        pos += 1
    if flags & 0x0400:
        props.correlation_id, pos = _shortstr(buf, pos)
    if flags & 0x0200:
        props.reply_to, pos = _shortstr(buf, pos)
    if flags & 0x0100:
        props.expiration, pos = _shortstr(buf, pos)
    if flags & 0x0080:
        props.message_id, pos = _shortstr(buf, pos)
    if flags & 0x0040:
        props.timestamp = _timestamp(_u64.unpack_from(buf, pos)[0])
        pos += 8
    if flags & 0x0020:
        props.type, pos = _shortstr(buf, pos)
    if flags & 0x0010:
        props.user_id, pos = _shortstr(buf, pos)
    if flags & 0x0008:
        props.app_id, pos = _shortstr(buf, pos)
    return props


def decode_table(buf: bytes | bytearray, pos: int, end: int) -> dict[str, Any]:
    """A field table's fields between ``pos`` and ``end`` (after its length prefix)."""
    table: dict[str, Any] = {}
    start = pos
    while pos < end:
        key_end = pos + 1 + buf[pos]
        key = buf[pos + 1 : key_end].decode()
        kind = buf[key_end]
        pos = key_end + 1
        if kind == 0x53:  # S: long string
            size = _u32.unpack_from(buf, pos)[0]
            value: Any = buf[pos + 4 : pos + 4 + size].decode()
            pos += 4 + size
        elif kind == 0x6C:  # l: int64
            value = _i64.unpack_from(buf, pos)[0]
            pos += 8
        elif kind == 0x49:  # I: int32
            value = _i32.unpack_from(buf, pos)[0]
            pos += 4
        elif kind == 0x74:  # t: bool
            value = bool(buf[pos])
            pos += 1
        elif kind == 0x62:  # b: int8
            value = _i8.unpack_from(buf, pos)[0]
            pos += 1
        elif kind == 0x42:  # B: uint8
            value = buf[pos]
            pos += 1
        elif kind == 0x73:  # s: int16 (RabbitMQ)
            value = _i16.unpack_from(buf, pos)[0]
            pos += 2
        elif kind == 0x75:  # u: uint16
            value = _u16.unpack_from(buf, pos)[0]
            pos += 2
        elif kind == 0x69:  # i: uint32
            value = _u32.unpack_from(buf, pos)[0]
            pos += 4
        elif kind == 0x64:  # d: double
            value = _f64.unpack_from(buf, pos)[0]
            pos += 8
        elif kind == 0x66:  # f: float
            value = _f32.unpack_from(buf, pos)[0]
            pos += 4
        elif kind == 0x78:  # x: byte array
            size = _u32.unpack_from(buf, pos)[0]
            value = bytes(buf[pos + 4 : pos + 4 + size])
            pos += 4 + size
        elif kind == 0x56:  # V: void
            value = None
        else:  # nested tables, arrays, decimals, timestamps: pamqp decodes the whole table
            whole = bytes(_u32.pack(end - start)) + bytes(buf[start:end])
            return pamqp_decode.field_table(whole)[1]
        table[key] = value
    return table
