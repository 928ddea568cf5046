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
    """The properties of one delivered message (AMQP 0-9-1 ``basic`` class), all optional.

    Absent ones read as the class defaults (None): a delivery sets only the few it carries.
    """

    content_type: str | None = None
    content_encoding: str | None = None
    headers: dict[str, Any] | None = None
    delivery_mode: int | None = None
    priority: int | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    expiration: str | None = None
    message_id: str | None = None
    timestamp: datetime.datetime | None = None
    type: str | None = None
    user_id: str | None = None
    app_id: str | None = None


# Consecutive messages mostly carry the same second: convert each distinct one once.
_last_timestamp: tuple[int, datetime.datetime | None] = (-1, None)


def _timestamp(seconds: int) -> datetime.datetime:
    global _last_timestamp
    last, value = _last_timestamp
    if seconds == last and value is not None:
        return value
    as_float = seconds / 1000.0 if seconds > 0xFFFFFFFF else float(seconds)  # as pamqp: ms
    value = datetime.datetime.fromtimestamp(as_float, tz=_UTC)
    _last_timestamp = (seconds, value)
    return value


def decode_properties(buf: bytes | bytearray, pos: int, flags: int) -> BasicProperties:
    """The properties whose ``flags`` are set, read from ``buf`` at ``pos`` (after the flags)."""
    props = BasicProperties()
    if flags & 0x8000:
        end = pos + 1 + buf[pos]
        props.content_type = buf[pos + 1 : end].decode()
        pos = end
    if flags & 0x4000:
        end = pos + 1 + buf[pos]
        props.content_encoding = buf[pos + 1 : end].decode()
        pos = end
    if flags & 0x2000:
        end = pos + 4 + _u32.unpack_from(buf, pos)[0]
        props.headers = decode_table(buf, pos + 4, end)
        pos = end
    if flags & 0x1000:
        props.delivery_mode = buf[pos]
        pos += 1
    if flags & 0x0800:
        props.priority = buf[pos]
        pos += 1
    if flags & 0x0400:
        end = pos + 1 + buf[pos]
        props.correlation_id = buf[pos + 1 : end].decode()
        pos = end
    if flags & 0x0200:
        end = pos + 1 + buf[pos]
        props.reply_to = buf[pos + 1 : end].decode()
        pos = end
    if flags & 0x0100:
        end = pos + 1 + buf[pos]
        props.expiration = buf[pos + 1 : end].decode()
        pos = end
    if flags & 0x0080:
        end = pos + 1 + buf[pos]
        props.message_id = buf[pos + 1 : end].decode()
        pos = end
    if flags & 0x0040:
        props.timestamp = _timestamp(_u64.unpack_from(buf, pos)[0])
        pos += 8
    if flags & 0x0020:
        end = pos + 1 + buf[pos]
        props.type = buf[pos + 1 : end].decode()
        pos = end
    if flags & 0x0010:
        end = pos + 1 + buf[pos]
        props.user_id = buf[pos + 1 : end].decode()
        pos = end
    if flags & 0x0008:
        end = pos + 1 + buf[pos]
        props.app_id = buf[pos + 1 : end].decode()
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
