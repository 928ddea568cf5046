"""AMQP 0-9-1 frame encoding for the publish hot path, and an incremental frame reader.

pamqp builds the rare control frames (handshake, declares, close). The frames sent once per
message (basic.publish, content header, body) are packed here with ``struct`` directly: pamqp's
object model costs several microseconds per message, which is most of a relay's CPU budget.
"""

from __future__ import annotations

import datetime
import struct
from collections.abc import Mapping
from typing import Any

from pamqp import encode as pamqp_encode

__all__ = [
    "FRAME_BODY",
    "FRAME_END",
    "FRAME_HEADER",
    "FRAME_HEARTBEAT",
    "FRAME_METHOD",
    "HEARTBEAT_FRAME",
    "PROTOCOL_HEADER",
    "PropertiesTemplate",
    "encode_content",
    "encode_properties",
    "encode_publish_method",
    "encode_table",
]

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8
FRAME_END = 0xCE
HEARTBEAT_FRAME = b"\x08\x00\x00\x00\x00\x00\x00\xce"

_BASIC_CLASS = 60
_BASIC_PUBLISH = 40

_frame_head = struct.Struct(">BHI")
_content_head = struct.Struct(">BHIHHQH")  # frame head + class, weight, body size, flags
_u8 = struct.Struct(">B")
_u32 = struct.Struct(">I")
_i64 = struct.Struct(">q")
_u64 = struct.Struct(">Q")
_f64 = struct.Struct(">d")

# Basic property flags (AMQP 0-9-1, section 1.8.2): one bit per present property, in this order.
_FLAG_CONTENT_TYPE = 1 << 15
_FLAG_HEADERS = 1 << 13
_FLAG_DELIVERY_MODE = 1 << 12
_FLAG_MESSAGE_ID = 1 << 7
_FLAG_TIMESTAMP = 1 << 6
_FLAG_TYPE = 1 << 5

_EMPTY_TABLE = b"\x00\x00\x00\x00"


def _shortstr(value: str, what: str) -> bytes:
    raw = value.encode()
    if len(raw) > 255:
        raise ValueError(f"{what} is {len(raw)} bytes; AMQP allows at most 255 (shortstr)")
    return _u8.pack(len(raw)) + raw


def encode_publish_method(channel: int, exchange: str, routing_key: str, mandatory: bool) -> bytes:
    """The whole basic.publish method frame; callers cache it per (exchange, key, mandatory)."""
    payload = b"".join(
        (
            struct.pack(">HHH", _BASIC_CLASS, _BASIC_PUBLISH, 0),  # class, method, reserved-1
            _shortstr(exchange, "exchange name"),
            _shortstr(routing_key, "routing key"),
            b"\x01" if mandatory else b"\x00",  # bits: mandatory, immediate
        )
    )
    return _frame_head.pack(FRAME_METHOD, channel, len(payload)) + payload + b"\xce"


_LENGTH_BYTE = [bytes((length,)) for length in range(256)]

# Header names and the few content types / message types repeat on every message: keep their
# encoded forms (bounded, in case a caller uses unbounded distinct values).
_CACHE_LIMIT = 4096
_str_keys: dict[str, bytes] = {}
_int_keys: dict[str, bytes] = {}
_short_strings: dict[str, bytes] = {}


def _cached(cache: dict[str, bytes], value: str, suffix: bytes, what: str) -> bytes:
    encoded = _shortstr(value, what) + suffix
    if len(cache) < _CACHE_LIMIT:
        cache[value] = encoded
    return encoded


def encode_table(table: Mapping[str, Any]) -> bytes:
    """A field table (length included) for the usual header values: str, int, bool, float, bytes.

    Integers go out as signed 64-bit (``l``), which every AMQP client decodes; anything more
    exotic (nested tables, lists, datetimes, decimals) is handed to pamqp's general encoder.
    """
    if not table:
        return _EMPTY_TABLE
    items = _encode_items(table)
    return _u32.pack(len(items)) + items


def _encode_items(table: Mapping[str, Any]) -> bytes:
    """The table's fields without the length prefix (so two encoded parts can be joined)."""
    parts: list[bytes] = []
    for key, value in table.items():
        kind = type(value)
        if kind is str:
            raw = value.encode()
            parts += (
                _str_keys.get(key) or _cached(_str_keys, key, b"S", f"header name {key!r}"),
                _u32.pack(len(raw)),
                raw,
            )
        elif kind is int:
            if not -(2**63) <= value < 2**63:
                raise ValueError(f"header {key!r}: integer {value} does not fit in 64 bits")
            parts += (
                _int_keys.get(key) or _cached(_int_keys, key, b"l", f"header name {key!r}"),
                _i64.pack(value),
            )
        elif kind is bool:
            parts += (_shortstr(key, f"header name {key!r}"), b"t\x01" if value else b"t\x00")
        elif kind is float:
            parts += (_shortstr(key, f"header name {key!r}"), b"d", _f64.pack(value))
        elif kind is bytes:
            parts += (_shortstr(key, f"header name {key!r}"), b"x", _u32.pack(len(value)), value)
        elif value is None:
            parts += (_shortstr(key, f"header name {key!r}"), b"V")
        else:
            return _encode_table_generic(table)[4:]
    return b"".join(parts)


def _encode_table_generic(table: Mapping[str, Any]) -> bytes:
    try:
        return bytes(pamqp_encode.field_table(dict(table)))
    except TypeError as error:
        raise ValueError(f"headers cannot be encoded as an AMQP table: {error}") from None


def _timestamp_seconds(value: datetime.datetime | float) -> int:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return int(value.timestamp())
    return int(value)


def _id_and_timestamp(
    message_id: str | None, timestamp: datetime.datetime | float | None
) -> tuple[int, bytes]:
    """Flags and encoding of message_id and timestamp (adjacent in the property list)."""
    flags = 0
    message_id_part = timestamp_part = b""
    if message_id is not None:
        flags = _FLAG_MESSAGE_ID
        raw = message_id.encode()
        if len(raw) > 255:
            raise ValueError(f"message_id is {len(raw)} bytes; AMQP allows at most 255")
        message_id_part = _LENGTH_BYTE[len(raw)] + raw
    if timestamp is not None:
        flags |= _FLAG_TIMESTAMP
        timestamp_part = _u64.pack(
            int(timestamp)
            if type(timestamp) is float or type(timestamp) is int
            else _timestamp_seconds(timestamp)
        )
    return flags, message_id_part + timestamp_part


def encode_properties(
    content_type: str | None,
    headers: Mapping[str, Any] | None,
    persistent: bool,
    message_id: str | None,
    timestamp: datetime.datetime | float | None,
    type_: str | None,
) -> tuple[int, bytes]:
    """Property flags and the encoded property list, in the order the flags define."""
    flags = _FLAG_DELIVERY_MODE
    content_type_part = headers_part = type_part = b""
    if content_type is not None:
        flags |= _FLAG_CONTENT_TYPE
        content_type_part = _short_strings.get(content_type) or _cached(
            _short_strings, content_type, b"", "content_type"
        )
    if headers:
        flags |= _FLAG_HEADERS
        headers_part = encode_table(headers)
    id_flags, id_and_time = _id_and_timestamp(message_id, timestamp)
    flags |= id_flags
    if type_ is not None:
        flags |= _FLAG_TYPE
        type_part = _short_strings.get(type_) or _cached(_short_strings, type_, b"", "type")
    return flags, b"".join(
        (
            content_type_part,
            headers_part,
            b"\x02" if persistent else b"\x01",
            id_and_time,
            type_part,
        )
    )


class PropertiesTemplate:
    """Properties of a stream of similar messages, with the parts they share encoded once.

    A relay publishes every event of one kind with the same content type, delivery mode, type
    and constant headers (its shard id); only a few headers, the message id and the timestamp
    change. ``encode`` returns exactly what :func:`encode_properties` returns for the same
    values, with the constant headers first (in their given order), then the per-message ones.
    """

    __slots__ = ("_delivery_mode", "_fixed_headers", "_flags", "_head", "_tail")

    def __init__(
        self,
        *,
        content_type: str | None,
        headers: Mapping[str, Any] | None,
        persistent: bool,
        type_: str | None,
    ) -> None:
        flags = _FLAG_DELIVERY_MODE
        self._head = b""
        self._tail = b""
        if content_type is not None:
            flags |= _FLAG_CONTENT_TYPE
            self._head = _shortstr(content_type, "content_type")
        if type_ is not None:
            flags |= _FLAG_TYPE
            self._tail = _shortstr(type_, "type")
        self._flags = flags
        self._fixed_headers = _encode_items(headers) if headers else b""
        self._delivery_mode = b"\x02" if persistent else b"\x01"

    def encode(
        self,
        headers: Mapping[str, Any] | None,
        message_id: str | None,
        timestamp: datetime.datetime | float | None,
    ) -> tuple[int, bytes]:
        """Property flags and the encoded property list for one message."""
        flags = self._flags
        items = self._fixed_headers
        if headers:
            items += _encode_items(headers)
        table = b""
        if items:
            flags |= _FLAG_HEADERS
            table = _u32.pack(len(items)) + items
        id_flags, id_and_time = _id_and_timestamp(message_id, timestamp)
        return flags | id_flags, b"".join(
            (self._head, table, self._delivery_mode, id_and_time, self._tail)
        )


def encode_content(
    channel: int, flags: int, properties: bytes, body: bytes, max_body_frame: int
) -> bytes:
    """Content header frame plus as many body frames as ``frame_max`` requires."""
    try:
        return _encode_content(channel, flags, properties, body, max_body_frame)
    except TypeError:
        raise TypeError(
            f"body must be bytes (e.g. the JSON as sent), got {type(body).__name__}"
        ) from None


def _encode_content(
    channel: int, flags: int, properties: bytes, body: bytes, max_body_frame: int
) -> bytes:
    size = len(body)
    head = _content_head.pack(
        FRAME_HEADER, channel, 14 + len(properties), _BASIC_CLASS, 0, size, flags
    )
    if size <= max_body_frame:
        if not size:
            return head + properties + b"\xce"
        return b"".join(
            (head, properties, b"\xce", _frame_head.pack(FRAME_BODY, channel, size), body, b"\xce")
        )
    parts = [head, properties, b"\xce"]
    view = memoryview(body)
    for start in range(0, size, max_body_frame):
        chunk = view[start : start + max_body_frame]
        parts.append(_frame_head.pack(FRAME_BODY, channel, len(chunk)))
        parts.append(chunk.tobytes())
        parts.append(b"\xce")
    return b"".join(parts)
